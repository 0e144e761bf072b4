"""The ACR data plane on the wire, as `azure-containerregistry` 1.2.0 calls it.

Token endpoints (`/oauth2/exchange`, `/oauth2/token`, form-encoded) and the `/acr/v1/...` metadata API.
Every metadata request needs an ACR access token carrying the route's scope; without one the answer is 401
with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`, which is what makes the SDK run the token
exchange. Lists page with `n`/`last` and a `Link: <...>; rel="next"` header (Docker registry style).
Shapes follow azure-rest-api-specs' `Azure.ContainerRegistry/stable/2021-07-01` examples.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypedDict, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import web

from lab.acr.errors import AcrError, AuthenticationError, Unauthorized, Unsupported
from lab.acr.models import Manifest, Repository, Tag, TagOrder, parse_order
from lab.acr.tokens import TokenClaims, parse_scopes

if TYPE_CHECKING:
    from lab.acr.service import AcrService

# ACR serves this many entries per page when `n` is not given.
DEFAULT_PAGE_SIZE = 100
# Everything in a lab registry is readable, writable, listable and deletable (no locks are modelled).
CHANGEABLE_ATTRIBUTES = {
    "deleteEnabled": True,
    "writeEnabled": True,
    "readEnabled": True,
    "listEnabled": True,
}
DOCKER_CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"


# --- wire shapes ------------------------------------------------------------------------------------
class TagWire(TypedDict):
    name: str
    digest: str
    createdTime: str
    lastUpdateTime: str
    signed: bool
    changeableAttributes: dict[str, bool]


class ManifestWire(TypedDict):
    digest: str
    imageSize: int
    createdTime: str
    lastUpdateTime: str
    architecture: str
    os: str
    mediaType: str
    configMediaType: str
    tags: list[str]
    changeableAttributes: dict[str, bool]


class RepositoryWire(TypedDict):
    registry: str
    imageName: str
    createdTime: str
    lastUpdateTime: str
    manifestCount: int
    tagCount: int
    changeableAttributes: dict[str, bool]


def acr_time(moment: datetime) -> str:
    """ACR's timestamps: UTC with 7 fractional digits (.NET ticks) and `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def tag_wire(tag: Tag) -> TagWire:
    return {
        "name": tag.name,
        "digest": tag.digest,
        "createdTime": acr_time(tag.created),
        "lastUpdateTime": acr_time(tag.updated),
        "signed": False,
        "changeableAttributes": dict(CHANGEABLE_ATTRIBUTES),
    }


def manifest_wire(manifest: Manifest, tags: list[str]) -> ManifestWire:
    return {
        "digest": manifest.digest,
        "imageSize": manifest.image_size,
        "createdTime": acr_time(manifest.created),
        "lastUpdateTime": acr_time(manifest.updated),
        "architecture": manifest.architecture,
        "os": manifest.os,
        "mediaType": manifest.media_type,
        "configMediaType": DOCKER_CONFIG_MEDIA_TYPE,
        "tags": tags,
        "changeableAttributes": dict(CHANGEABLE_ATTRIBUTES),
    }


def repository_wire(repository: Repository, *, registry: str) -> RepositoryWire:
    return {
        "registry": registry,
        "imageName": repository.name,
        "createdTime": acr_time(repository.created),
        "lastUpdateTime": acr_time(repository.updated),
        "manifestCount": len(repository.manifests),
        "tagCount": len(repository.tags),
        "changeableAttributes": dict(CHANGEABLE_ATTRIBUTES),
    }


Item = TypeVar("Item")


def page(
    items: Sequence[Item], request: web.Request, *, key: Callable[[Item], str], order: TagOrder = ""
) -> tuple[Sequence[Item], dict[str, str]]:
    """Docker-style paging: `n` per page, continue after the entry named `last`; `Link` to the next page."""
    raw_size = request.query.get("n")
    try:
        size = DEFAULT_PAGE_SIZE if raw_size is None else int(raw_size)
    except ValueError as exc:
        raise Unsupported(f"invalid page size n={raw_size!r}") from exc
    if size < 1:
        raise Unsupported("page size n must be positive")
    last = request.query.get("last")
    start = 0
    if last:
        keys = [key(item) for item in items]
        if last in keys:
            start = keys.index(last) + 1
        elif not order:  # by name, `last` need not exist any more: continue after it lexically
            start = sum(1 for k in keys if k <= last)
        else:  # by time, a vanished `last` has no place: the listing ends (never restarts, never loops)
            start = len(items)
    chunk = items[start : start + size]
    if start + size >= len(items):
        return chunk, {}
    query = urlencode({"last": key(chunk[-1]), "n": str(size), "orderby": order}, quote_via=quote, safe="/")
    return chunk, {"Link": f'<{request.path}?{query}>; rel="next"'}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The headers ACR's front end (openresty) puts on every registry answer, error or not, as recorded
# responses show them: CORS exposure of the registry headers, HSTS and nosniff.
_EXPOSED_HEADERS = ("Docker-Content-Digest", "WWW-Authenticate", "Link", "X-Ms-Correlation-Request-Id")
_SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
}
# The token endpoints report the caller's remaining request rate instead. The lab does not throttle, so the
# value is constant, of the size recorded responses show (about 166.5 calls per second left).
_RATE_LIMIT_HEADER = "x-ms-ratelimit-remaining-calls-per-second"
_RATE_LIMIT_REMAINING = "166.666667"


def handles_errors(handler: Handler) -> Handler:
    """Registry routes: render ACR errors and add the front end's headers to every answer."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except AcrError as error:
            response = error.response()
        for name in _EXPOSED_HEADERS:
            response.headers.add("Access-Control-Expose-Headers", name)
        response.headers.setdefault("Docker-Distribution-Api-Version", "registry/2.0")
        response.headers.update(_SECURITY_HEADERS)
        return response

    return wrapped


def handles_token_errors(handler: Handler) -> Handler:
    """Token routes (`/oauth2/...`): ACR errors, and the rate-limit header instead of the registry ones."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except AcrError as error:
            response = error.response()
        response.headers[_RATE_LIMIT_HEADER] = _RATE_LIMIT_REMAINING
        response.headers["Strict-Transport-Security"] = _SECURITY_HEADERS["Strict-Transport-Security"]
        return response

    return wrapped


def json_ok(body: object, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body),
        content_type="application/json",
        headers={"X-Ms-Correlation-Request-Id": str(uuid.uuid4()), **(headers or {})},
    )


class RegistryResponses:
    def __init__(self, service: AcrService) -> None:
        self.service = service
        self.backend = service.backend

    # --- token endpoints ---------------------------------------------------------------------------------
    async def exchange(self, request: web.Request) -> web.StreamResponse:
        """POST /oauth2/exchange: an Entra access token for an ACR refresh token."""
        form = await request.post()
        grant_type = str(form.get("grant_type", ""))
        if grant_type != "access_token":
            raise Unsupported(f"grant_type {grant_type!r} is not supported; use access_token")
        if str(form.get("service", "")) != self.service.login_server:
            raise AuthenticationError(f"service must be {self.service.login_server}")
        principal = self.service.entra_principal(str(form.get("access_token", "")))
        token = self.service.issuer.issue_refresh_token(
            subject=principal.object_id, tenant=self.service.tenant
        )
        return json_ok({"refresh_token": token})

    async def token(self, request: web.Request) -> web.StreamResponse:
        """POST /oauth2/token: a refresh token and a scope for an access token with what the caller may do."""
        form = await request.post()
        grant_type = str(form.get("grant_type", ""))
        if grant_type != "refresh_token":  # `password` with no credentials is anonymous pull: disabled
            raise AuthenticationError(
                "anonymous pull is disabled on this registry; authenticate with a token"
            )
        if str(form.get("service", "")) != self.service.login_server:
            raise AuthenticationError(f"service must be {self.service.login_server}")
        claims = self.service.issuer.verify(str(form.get("refresh_token", "")), "refresh")
        if claims is None:
            raise AuthenticationError("the refresh token is invalid or has expired")
        granted = self.service.grant(claims.subject, parse_scopes(str(form.get("scope", ""))))
        token = self.service.issuer.issue_access_token(
            subject=claims.subject, tenant=claims.tenant, access=granted
        )
        return json_ok({"access_token": token})

    # --- metadata API ---------------------------------------------------------------------------------
    def _require(self, request: web.Request, type_: str, name: str, action: str) -> TokenClaims:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        claims = self.service.issuer.verify(token.strip(), "access") if scheme.lower() == "bearer" else None
        if claims is None or not claims.allows(type_, name, action):
            raise Unauthorized.challenge(
                realm=f"{self.service.endpoint}/oauth2/token",
                service=self.service.login_server,
                scope=f"{type_}:{name}:{action}",
                detail=[{"Type": type_, "Name": name, "Action": action}],
            )
        return claims

    async def get_repositories(self, request: web.Request) -> web.StreamResponse:
        self._require(request, "registry", "catalog", "*")
        names, headers = page(self.backend.get_repositories(), request, key=lambda name: name)
        return json_ok({"repositories": list(names)}, headers=headers)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """`/acr/v1/{repository}[/_tags[/{tag}] | /_manifests[/{digest}]]` (repository names contain `/`)."""
        segments = request.match_info["tail"].split("/")
        split = next((i for i, segment in enumerate(segments) if segment.startswith("_")), len(segments))
        repository, operation, rest = (
            "/".join(segments[:split]),
            segments[split : split + 1],
            segments[split + 1 :],
        )
        if not repository or len(rest) > 1:
            raise web.HTTPNotFound()
        self._require(request, "repository", repository, "metadata_read")
        reference = rest[0] if rest else None
        if not operation:
            return self._repository_properties(repository)
        if operation == ["_tags"]:
            return (
                self._tag_properties(repository, reference) if reference else self._tags(request, repository)
            )
        if operation == ["_manifests"]:
            if reference:
                return self._manifest_properties(repository, reference)
            return self._manifests(request, repository)
        raise web.HTTPNotFound()

    def _repository_properties(self, repository: str) -> web.Response:
        found = self.backend.get_properties(repository)
        return json_ok(repository_wire(found, registry=self.service.login_server))

    def _tags(self, request: web.Request, repository: str) -> web.Response:
        order = parse_order(request.query.get("orderby"))
        tags = self.backend.get_tags(repository, order=order, digest=request.query.get("digest"))
        chunk, headers = page(tags, request, key=lambda tag: tag.name, order=order)
        body = {
            "registry": self.service.login_server,
            "imageName": repository,
            "tags": [tag_wire(tag) for tag in chunk],
        }
        return json_ok(body, headers=headers)

    def _tag_properties(self, repository: str, tag: str) -> web.Response:
        found = self.backend.get_tag_properties(repository, tag)
        return json_ok(
            {"registry": self.service.login_server, "imageName": repository, "tag": tag_wire(found)}
        )

    def _manifests(self, request: web.Request, repository: str) -> web.Response:
        order = parse_order(request.query.get("orderby"))
        manifests = self.backend.get_manifests(repository, order=order)
        chunk, headers = page(manifests, request, key=lambda manifest: manifest.digest, order=order)
        body = {
            "registry": self.service.login_server,
            "imageName": repository,
            "manifests": [manifest_wire(m, self.backend.tags_of(repository, m.digest)) for m in chunk],
        }
        return json_ok(body, headers=headers)

    def _manifest_properties(self, repository: str, digest: str) -> web.Response:
        found = self.backend.get_manifest_properties(repository, digest)
        body = {
            "registry": self.service.login_server,
            "imageName": repository,
            "manifest": manifest_wire(found, self.backend.tags_of(repository, digest)),
        }
        return json_ok(body)
