"""The registry's state: repositories, their manifests and the tags that point at them (after moto).

ACR keeps manifests (content-addressed by digest) and tags (mutable names pointing at a digest); pushing a tag
that exists moves it. The backend's method names follow the ACR data-plane operation ids
(GetRepositories, GetProperties, GetTags, GetTagProperties, GetManifests, GetManifestProperties).
The lab has one registry (`ipcplatformacr`), so one backend holds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TypeVar

from lab.acr.errors import ManifestUnknown, NameUnknown, TagUnknown, Unsupported
from lab.core.clock import LabClock

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
# A Docker v2 manifest listing a handful of layers is 0.5-2 KB; the lab derives a stable size in that range
# from the digest so events and properties agree across calls.
_MANIFEST_MIN_BYTES = 500
_MANIFEST_SPREAD_BYTES = 1500
# The images are small Python/Go services: 20-80 MB, again derived from the digest.
_IMAGE_MIN_BYTES = 20_000_000
_IMAGE_SPREAD_BYTES = 60_000_000

TagOrder = Literal["", "timedesc", "timeasc"]


def digest_of(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def manifest_size(digest: str) -> int:
    return _MANIFEST_MIN_BYTES + int(digest[-4:], 16) % _MANIFEST_SPREAD_BYTES


def image_size(digest: str) -> int:
    return _IMAGE_MIN_BYTES + int(digest[-12:-4], 16) % _IMAGE_SPREAD_BYTES


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    size: int  # bytes of the manifest document itself (what ImagePushed reports)
    image_size: int  # bytes of the image's layers (what manifest properties report as imageSize)
    created: datetime
    updated: datetime
    architecture: str = "amd64"
    os: str = "linux"


@dataclass(frozen=True)
class Tag:
    name: str
    digest: str
    created: datetime
    updated: datetime


@dataclass
class Repository:
    name: str
    created: datetime
    updated: datetime
    tags: dict[str, Tag] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)

    def tags_of(self, digest: str) -> list[str]:
        return sorted(tag.name for tag in self.tags.values() if tag.digest == digest)


class _Timed(Protocol):
    @property
    def updated(self) -> datetime: ...


Timed = TypeVar("Timed", bound=_Timed)


def _ordered(items: list[Timed], order: TagOrder) -> list[Timed]:
    """ACR's `orderby`: by last update, newest or oldest first; without it, the caller's (name) order."""
    if order == "timedesc":
        return sorted(items, key=lambda item: item.updated, reverse=True)
    if order == "timeasc":
        return sorted(items, key=lambda item: item.updated)
    return items


def parse_order(raw: str | None) -> TagOrder:
    if raw is None or raw == "":
        return ""
    if raw == "timedesc":
        return "timedesc"
    if raw == "timeasc":
        return "timeasc"
    raise Unsupported(f"orderby {raw!r} is not supported; use timedesc or timeasc")


class RegistryBackend:
    """One registry. Pushes may come from other simulators' threads, so state changes hold a lock."""

    def __init__(self, *, clock: LabClock) -> None:
        self.clock = clock
        self.repositories: dict[str, Repository] = {}
        self._lock = threading.RLock()

    def _repository(self, name: str) -> Repository:
        repository = self.repositories.get(name)
        if repository is None:
            raise NameUnknown.repository(name)
        return repository

    # --- operations (ACR operation ids) --------------------------------------------------------------
    def get_repositories(self) -> list[str]:
        with self._lock:
            return sorted(self.repositories)

    def get_properties(self, name: str) -> Repository:
        with self._lock:
            return self._repository(name)

    def get_tags(self, name: str, *, order: TagOrder = "", digest: str | None = None) -> list[Tag]:
        """Tags by name (ACR's default order), or by last update with `order`."""
        with self._lock:
            tags = sorted(self._repository(name).tags.values(), key=lambda tag: tag.name)
        if digest is not None:
            tags = [tag for tag in tags if tag.digest == digest]
        return _ordered(tags, order)

    def get_tag_properties(self, name: str, tag: str) -> Tag:
        with self._lock:
            found = self._repository(name).tags.get(tag)
        if found is None:
            raise TagUnknown.tag(tag)
        return found

    def get_manifests(self, name: str, *, order: TagOrder = "") -> list[Manifest]:
        with self._lock:
            manifests = sorted(self._repository(name).manifests.values(), key=lambda m: m.digest)
        return _ordered(manifests, order)

    def get_manifest_properties(self, name: str, digest: str) -> Manifest:
        with self._lock:
            found = self._repository(name).manifests.get(digest)
        if found is None:
            raise ManifestUnknown.reference(digest)
        return found

    def tags_of(self, name: str, digest: str) -> list[str]:
        with self._lock:
            return self._repository(name).tags_of(digest)

    # --- pushes (the lab's stand-in for `docker push`) ----------------------------------------------------
    def push(
        self, repository: str, tag: str, *, digest: str | None = None, at: datetime | None = None
    ) -> tuple[Tag, Manifest]:
        """Upload a manifest (new digest unless given) and point `tag` at it, creating the repository."""
        moment = at or self.clock.now()
        digest = digest or digest_of(f"{repository}:{tag}:{uuid.uuid4()}")
        with self._lock:
            return self._push(repository, tag, digest, moment)

    def _push(self, repository: str, tag: str, digest: str, moment: datetime) -> tuple[Tag, Manifest]:
        repo = self.repositories.get(repository)
        if repo is None:
            repo = Repository(repository, created=moment, updated=moment)
            self.repositories[repository] = repo
        manifest = repo.manifests.get(digest)
        if manifest is None:
            manifest = Manifest(
                digest=digest,
                media_type=DOCKER_MANIFEST_V2,
                size=manifest_size(digest),
                image_size=image_size(digest),
                created=moment,
                updated=moment,
            )
            repo.manifests[digest] = manifest
        previous = repo.tags.get(tag)
        if previous is None:
            new_tag = Tag(name=tag, digest=digest, created=moment, updated=moment)
        else:
            new_tag = dataclasses.replace(previous, digest=digest, updated=moment)
        repo.tags[tag] = new_tag
        repo.updated = max(repo.updated, moment)
        return new_tag, manifest

    def reset(self) -> None:
        with self._lock:
            self.repositories.clear()
