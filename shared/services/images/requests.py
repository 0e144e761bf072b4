"""Requests of the images HTTP API, validated into typed values (4xx problems naming the field).

`POST /api/images/check` takes `{"image": "<registry>/<repository>", "tag": "<tag>"}`, the same
pair a push event carries. A pipeline often knows only the repository, so an image without a
registry host (no `.` or `:` in its first element, the rule Docker and Flux use) is taken to live in
the configured registry. Tags follow the Docker/OCI grammar, so a typo never reaches the registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidInput
from shared.models.images import ImageRef

# OCI distribution spec: a tag is `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
# Repository path components (lower-case, separators `.`, `_`, `__`, `-`), with an optional host[:port].
_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
# Docker's reference grammar caps a repository name (with its registry) at 255 characters.
_MAX_IMAGE = 255
# How much of a rejected value a problem document quotes back: enough to recognise it.
_ECHO = 80


@dataclass(frozen=True)
class ChecksQuery:
    """`GET /api/images/checks?image=&tag=` (the `limit` is the HTTP intake's, like every route's)."""

    image: str
    tag: str | None


def _has_host(image: str) -> bool:
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first)


def parse_image(value: object, *, default_registry: str | None, field: str = "image") -> str:
    """`host/repository` from what a caller wrote; `InvalidInput` naming `field` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "is required: <registry>/<repository>, e.g. myacr.azurecr.io/ipc/app")
    image = value.strip()
    if len(image) > _MAX_IMAGE:
        raise InvalidInput(field, f"is longer than {_MAX_IMAGE} characters")
    if "@" in image or image.rsplit("/", 1)[-1].count(":"):
        raise InvalidInput(field, "must not carry a tag or digest; put the tag in `tag`")
    if not _has_host(image):
        if not default_registry:
            raise InvalidInput(field, "names no registry and none is configured (FLUXFLEET_ACR_LOGIN_SERVER)")
        image = f"{default_registry}/{image}"
    host, _, repository = image.partition("/")
    if not _REPOSITORY.match(repository):
        raise InvalidInput(field, f"'{repository[:_ECHO]}' is not a valid repository name")
    return f"{host.lower()}/{repository}"


def parse_tag(value: object, *, field: str = "tag") -> str:
    if not isinstance(value, str) or not _TAG.match(value):
        raise InvalidInput(field, "must be a tag: letters, digits, '_', '.', '-'; at most 128 characters")
    return value


def parse_check_request(body: Mapping[str, Any], *, default_registry: str | None) -> ImageRef:
    unknown = sorted(set(body) - {"image", "tag"})
    if unknown:
        raise InvalidInput(unknown[0], "is not a field of an image check (fields: image, tag)")
    return ImageRef(
        parse_image(body.get("image"), default_registry=default_registry), parse_tag(body.get("tag"))
    )


def parse_checks_query(params: Mapping[str, str], *, default_registry: str | None) -> ChecksQuery:
    image = parse_image(params.get("image"), default_registry=default_registry)
    tag = parse_tag(params["tag"]) if params.get("tag") else None
    return ChecksQuery(image=image, tag=tag)
