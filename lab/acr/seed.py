"""What the registry holds at start: every workload image the GitOps content references, with a tag history.

The repo's manifests name images as `ipcplatformacr.azurecr.io/ipc/<name>:vX.Y.Z`. For each, the registry gets
a plausible release history up to exactly that version (so an ImagePolicy `>=1.0.0` selects what is deployed
and nothing is pending at start), plus `latest` on the newest. Digests are derived from `repo:tag`, so every
lab run seeds the same digests; creation times are spread a week apart into the past of the lab clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from lab.acr.models import RegistryBackend, digest_of

REGISTRY_PLACEHOLDER = "ipcplatformacr.azurecr.io"
# `<registry>/<repo>[:<tag>]`: repository path components and tags as the distribution spec defines them.
IMAGE_REFERENCE = re.compile(
    re.escape(REGISTRY_PLACEHOLDER)
    + r"/(?P<repository>ipc/[a-z0-9]+(?:[._-][a-z0-9]+)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
)
SEMVER_TAG = re.compile(r"^(?P<prefix>v?)(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)$")
# Used only when `kubernetes/` has no image references yet (the GitOps content is written separately).
DEFAULT_IMAGES: dict[str, str] = {
    "ipc/opcua-gateway": "v1.4.2",
    "ipc/health-monitor": "v1.0.7",
    "ipc/log-forwarder": "v1.2.0",
    "ipc/opcua-simulator": "v1.0.3",
}
# A weekly release cadence: consecutive seeded tags are this far apart, the newest this long ago.
RELEASE_INTERVAL = timedelta(days=7)
NEWEST_RELEASE_AGE = timedelta(days=1)
# The first version of every image; earlier minors get one patch release each, so semver ranges
# like `~1.2` and `>=1.0.0 <1.3.0` have something to choose between.
FIRST_VERSION = (1, 0, 0)
PATCHES_PER_EARLIER_MINOR = 1


@dataclass(frozen=True)
class Version:
    prefix: str
    major: int
    minor: int
    patch: int

    def tag(self) -> str:
        return f"{self.prefix}{self.major}.{self.minor}.{self.patch}"

    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


def parse_version(tag: str) -> Version | None:
    match = SEMVER_TAG.match(tag)
    if match is None:
        return None
    return Version(match["prefix"], int(match["major"]), int(match["minor"]), int(match["patch"]))


def discover_images(root: Path) -> dict[str, str | None]:
    """Repository → the highest semver tag referenced under `root` (None: referenced without a version)."""
    found: dict[str, str | None] = {}
    for path in sorted(root.rglob("*.yaml")) + sorted(root.rglob("*.yml")):
        for match in IMAGE_REFERENCE.finditer(path.read_text(errors="replace")):
            repository, tag = match["repository"], match["tag"]
            version = parse_version(tag) if tag else None
            known = found.get(repository)
            known_version = parse_version(known) if known else None
            if version is not None and (known_version is None or version.key() > known_version.key()):
                found[repository] = version.tag()
            else:
                found.setdefault(repository, None)
    return found


def tag_history(current: str) -> list[str]:
    """Release tags from the first version up to `current`, oldest first (non-semver: just `current`)."""
    target = parse_version(current)
    if target is None:
        return [current]
    versions: list[Version] = []
    first_major, first_minor, _ = FIRST_VERSION
    for major in range(min(first_major, target.major), target.major + 1):
        last_minor = target.minor if major == target.major else 1
        start_minor = first_minor if major == first_major else 0
        for minor in range(start_minor, last_minor + 1):
            last_patch = (
                target.patch
                if (major, minor) == (target.major, target.minor)
                else (PATCHES_PER_EARLIER_MINOR)
            )
            versions.extend(Version(target.prefix, major, minor, patch) for patch in range(last_patch + 1))
    return [v.tag() for v in versions if v.key() <= target.key()]


def seed_registry(backend: RegistryBackend, *, kubernetes_root: Path, now: datetime) -> None:
    images = discover_images(kubernetes_root) if kubernetes_root.is_dir() else {}
    if not images:
        images = dict(DEFAULT_IMAGES)
    for repository, current in sorted(images.items()):
        history = tag_history(current or "v1.0.0")
        for index, tag in enumerate(history):  # oldest first, as they were pushed
            at = now - NEWEST_RELEASE_AGE - (len(history) - 1 - index) * RELEASE_INTERVAL
            backend.push(repository, tag, digest=digest_of(f"{repository}:{tag}"), at=at)
        newest = history[-1]
        newest_at = now - NEWEST_RELEASE_AGE
        backend.push(repository, "latest", digest=digest_of(f"{repository}:{newest}"), at=newest_at)
