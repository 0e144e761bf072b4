"""Azure DevOps' `api-version` rules, shared by the Git REST API and the PAT Lifecycle API.

Azure DevOps reads the version from the query (`?api-version=7.1-preview.1`) or from the `Accept`
header (`application/json;api-version=7.1-preview.1`, which is how the `azure-devops` SDK sends it),
and each resource declares a range: a minimum, a maximum, the highest *released* version (anything
above needs `-preview`) and a resource version (the `.N` after `-preview`). Like Azurite for Storage,
the lab is strict about these so a client that sends a wrong version fails here, not first in Azure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from lab.devops.errors import (
    VssInvalidApiVersion,
    VssInvalidPreviewVersion,
    VssVersionNotSpecified,
    VssVersionOutOfRange,
)

_VERSION_RE = re.compile(r"^(\d+(?:\.\d+)?)(-preview(?:\.(\d+))?)?$")


@dataclass(frozen=True)
class ResourceVersions:
    """A resource's supported versions, as its `ApiResourceLocation` advertises them."""

    min_version: float
    max_version: float
    released_version: float  # 0.0: the resource is preview-only
    resource_version: int
    version_required: bool = False  # True: a missing api-version is an error even on GET


def requested_api_version(request: web.Request) -> str | None:
    if "api-version" in request.query:
        return request.query["api-version"].strip()
    for part in request.headers.get("Accept", "").replace(",", ";").split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "api-version" and value.strip():
            return value.strip()
    return None


def negotiate_api_version(request: web.Request, versions: ResourceVersions) -> str:
    """The version a request is served at (for the response's Content-Type), or a 400 as ADO answers."""
    requested = requested_api_version(request)
    if requested is None:
        if versions.version_required or request.method not in ("GET", "HEAD", "OPTIONS"):
            raise VssVersionNotSpecified(
                f"No api-version was supplied for the {request.method} request. The version must be supplied "
                'either as part of the Accept header (e.g. "application/json; api-version=1.0") or as a '
                'query parameter (e.g. "?api-version=1.0").'
            )
        return _format(
            versions.max_version
            if versions.released_version >= versions.max_version
            else versions.released_version
        )
    match = _VERSION_RE.match(requested)
    if match is None:
        raise VssInvalidApiVersion(
            f"The api-version '{requested}' is not in a valid format. "
            "The expected format is a number with an optional -preview suffix, "
            'for example "7.1-preview.1".'
        )
    number = float(match.group(1))
    preview = match.group(2) is not None
    resource_version = int(match.group(3)) if match.group(3) else versions.resource_version
    if number > versions.max_version or (preview and resource_version > versions.resource_version):
        raise VssVersionOutOfRange(
            f"The requested REST API version of {requested} is out of range for this server. "
            f"The latest REST API version this server supports is {_format(versions.max_version)}."
        )
    if number < versions.min_version:
        raise VssVersionOutOfRange(
            f"The requested REST API version of {requested} is out of range for this server. "
            f"The earliest REST API version this server supports is {_format(versions.min_version)}."
        )
    if not preview and number > versions.released_version:
        raise VssInvalidPreviewVersion(
            f'The requested version "{match.group(1)}" of the resource is under preview. The -preview flag '
            "must be supplied in the api-version for such requests. For example: "
            f'"{match.group(1)}-preview"'
        )
    return f"{match.group(1)}-preview.{resource_version}" if preview else match.group(1)


def _format(number: float) -> str:
    return f"{number:.1f}"
