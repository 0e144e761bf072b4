"""ARM's request pipeline and responses: authenticate, throttle, check the api-version, call the backend,
serialise the answer with ARM's headers.

The order is ARM's: a request without a valid token for ARM's audience is refused before anything
else (401 with ARM's `WWW-Authenticate` challenge); then the subscription/principal token bucket
decides (429 `SubscriptionRequestsThrottled` with `Retry-After`); then the api-version is checked
for the resource type (400 `NoRegisteredProviderFound`), then the resource. Every answer carries
`x-ms-request-id`, `x-ms-correlation-request-id`, `x-ms-routing-request-id` and the
`x-ms-ratelimit-remaining-subscription[-global]-*` counters.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from lab.arm import wire
from lab.arm.errors import (
    ARM_ALLOWED_AUDIENCES,
    ArmError,
    AuthenticationFailed,
    BadRequest,
    InvalidAuthenticationToken,
    InvalidAuthenticationTokenAudience,
    InvalidRequestContent,
    InvalidResourceType,
    MethodNotAllowed,
    MissingApiVersionParameter,
    NoRegisteredProviderFound,
    ResourceNotFound,
    SubscriptionRequestsThrottled,
)
from lab.arm.models import ArmBackend, ExtensionWrite, Operation, WriteResult
from lab.arm.routes import Route, match, subscription_of
from lab.arm.throttling import (
    OPERATION_WORD,
    Admission,
    Throttle,
    operation_kind,
    ratelimit_headers,
    retry_after_real_seconds,
)
from lab.core.clock import LabClock
from lab.core.tokens import Principal, TokenStore, normalise_audience
from lab.fleet.model import CONNECTED_CLUSTER_TYPE, LOCATION, Actor

# ARM pages lists of connectedClusters 100 at a time.
PAGE_SIZE = 100
# What the spec examples send as `x-ms-async-operation-timeout`: PT48H for writes, PT1H for a
# fluxConfigurations DELETE (DeleteFluxConfiguration.json, 2025-04-01).
ASYNC_OPERATION_TIMEOUT = "PT48H"
DELETE_OPERATION_TIMEOUT = "PT1H"
_ALLOWED_AUDIENCES = frozenset(normalise_audience(audience) for audience in ARM_ALLOWED_AUDIENCES)
_JSON = "application/json; charset=utf-8"
_API_VERSIONS = {
    "clusters_by_subscription": ("connectedClusters", wire.CLUSTER_API_VERSIONS),
    "clusters_by_group": ("connectedClusters", wire.CLUSTER_API_VERSIONS),
    "cluster": ("connectedClusters", wire.CLUSTER_API_VERSIONS),
    "flux_list": ("fluxConfigurations", wire.FLUX_API_VERSIONS),
    "flux": ("fluxConfigurations", wire.FLUX_API_VERSIONS),
    "flux_operation": ("fluxConfigurations/operations", wire.FLUX_API_VERSIONS),
    "extension_list": ("extensions", wire.EXTENSION_API_VERSIONS),
    "extension": ("extensions", wire.EXTENSION_API_VERSIONS),
    "extension_operation": ("extensions/operations", wire.EXTENSION_API_VERSIONS),
}


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] | None = None


def actor_of(principal: Principal) -> Actor:
    """Who `systemData` names: users by name, applications and identities by object id."""
    if principal.kind == "user":
        return Actor(name=principal.name, kind="User")
    if principal.kind == "managedIdentity":
        return Actor(name=principal.object_id, kind="ManagedIdentity")
    return Actor(name=principal.object_id, kind="Application")


class ArmResponses:
    def __init__(
        self,
        *,
        backend: ArmBackend,
        clock: LabClock,
        tokens: TokenStore,
        throttle: Throttle,
        tenant_id: str,
        endpoint: Callable[[], str],
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.tokens = tokens
        self.throttle = throttle
        self.tenant_id = tenant_id
        self._endpoint = endpoint

    # --- pipeline -----------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        headers = {
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": request.headers.get("x-ms-correlation-request-id") or request_id,
            "x-ms-routing-request-id": f"{LOCATION.upper()}:{self.clock.now():%Y%m%dT%H%M%SZ}:{request_id}",
        }
        try:
            principal = self._authenticate(request.headers.get("Authorization"))
            subscription = subscription_of(request.path)
            if subscription is not None:
                admission = self._admit(subscription, principal, request.method)
                headers.update(ratelimit_headers(admission))
            answer = await self._dispatch(request, principal)
        except ArmError as error:
            headers.update(error.headers)
            return web.Response(
                status=error.status,
                text=json.dumps(error.envelope()),
                headers=headers,
                content_type="application/json",
                charset="utf-8",
            )
        headers.update(answer.headers or {})
        if answer.body is None:
            return web.Response(status=answer.status, headers=headers)
        return web.Response(
            status=answer.status,
            text=json.dumps(answer.body),
            headers=headers,
            content_type="application/json",
            charset="utf-8",
        )

    def _authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthenticationFailed.missing_header()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed.malformed_header()
        resolved = self.tokens.resolve(token.strip())
        if resolved is None:
            raise InvalidAuthenticationToken()
        principal, audience = resolved
        if normalise_audience(audience) not in _ALLOWED_AUDIENCES:
            raise InvalidAuthenticationTokenAudience(audience)
        return principal

    def _admit(self, subscription: str, principal: Principal, method: str) -> Admission:
        kind = operation_kind(method)
        admission = self.throttle.admit(
            subscription=subscription, principal=principal.object_id, kind=kind, now=self.clock.elapsed()
        )
        if not admission.allowed:
            retry_after = retry_after_real_seconds(admission.retry_after_lab_s, self.clock.time_scale)
            error = SubscriptionRequestsThrottled(
                operation=OPERATION_WORD[kind],
                subscription=subscription,
                actor=principal.object_id,
                retry_after_s=retry_after,
            )
            error.headers.update(ratelimit_headers(admission))
            raise error
        return admission

    async def _dispatch(self, request: web.Request, principal: Principal) -> _Answer:
        route = match(request.path)
        api_version = request.query.get("api-version")
        if route is None:
            namespace, resource_type = _provider_and_type(request.path)
            raise InvalidResourceType(
                resource_type=resource_type, namespace=namespace, api_version=api_version or ""
            )
        resource_type, supported = _API_VERSIONS[route.kind]
        if not api_version:
            raise MissingApiVersionParameter()
        if api_version not in supported:
            raise NoRegisteredProviderFound(
                api_version=api_version, resource_type=resource_type, supported=supported, location=LOCATION
            )
        if (
            route.kind not in ("cluster", "clusters_by_group", "clusters_by_subscription")
            and route.cluster_type.lower() != CONNECTED_CLUSTER_TYPE.lower()
        ):
            raise ResourceNotFound(resource_type=route.cluster_type, name=route.cluster, group=route.group)
        method = request.method
        if route.kind == "flux" and method in ("PUT", "PATCH"):
            body = await _read_json(request)
            return self._write_flux(route, method, body, api_version, actor_of(principal))
        if route.kind == "extension" and method in ("PUT", "PATCH"):
            body = await _read_json(request)
            return self._write_extension(route, method, body, api_version, actor_of(principal))
        handler = self._readers.get((route.kind, method)) if method in ("GET", "DELETE") else None
        if handler is None:
            raise MethodNotAllowed(method)
        return handler(self, route, request, api_version)

    # --- connectedClusters --------------------------------------------------------------------------
    def _get_cluster(self, route: Route, _: web.Request, __: str) -> _Answer:
        panel = self.backend.connected_cluster_get(route.subscription, route.group, route.cluster)
        return _Answer(200, wire.render_connected_cluster(panel, self.clock.now(), self.tenant_id))

    def _list_clusters(self, route: Route, request: web.Request, api_version: str) -> _Answer:
        if route.kind == "clusters_by_group":
            panels = self.backend.connected_cluster_list_by_resource_group(route.subscription, route.group)
        else:
            panels = self.backend.connected_cluster_list_by_subscription(route.subscription)
        offset = _skip_token(request.query.get("$skiptoken"))
        page = panels[offset : offset + PAGE_SIZE]
        now = self.clock.now()
        next_link = None
        if offset + PAGE_SIZE < len(panels):
            token = base64.urlsafe_b64encode(str(offset + PAGE_SIZE).encode()).decode()
            next_link = f"{self._endpoint()}{request.path}?api-version={api_version}&$skiptoken={token}"
        return _Answer(
            200,
            wire.ListPageWire(
                value=[wire.render_connected_cluster(panel, now, self.tenant_id) for panel in page],
                nextLink=next_link,
            ),
        )

    # --- fluxConfigurations -------------------------------------------------------------------------
    def _get_flux(self, route: Route, _: web.Request, api_version: str) -> _Answer:
        panel, config = self.backend.flux_configurations_get(
            route.subscription, route.group, route.cluster, route.name
        )
        return _Answer(200, wire.render_flux_config(panel, config, api_version))

    def _list_flux(self, route: Route, _: web.Request, api_version: str) -> _Answer:
        panel, configs = self.backend.flux_configurations_list(route.subscription, route.group, route.cluster)
        return _Answer(
            200,
            wire.ListPageWire(
                value=[wire.render_flux_config(panel, config, api_version) for config in configs],
                nextLink=None,
            ),
        )

    def _write_flux(self, route: Route, method: str, body: object, api_version: str, actor: Actor) -> _Answer:
        args = (route.subscription, route.group, route.cluster, route.name)
        result: WriteResult
        if method == "PUT":
            spec, protected = wire.parse_put_body(body, api_version)
            result = self.backend.flux_configurations_create_or_update(
                *args, spec=spec, protected_settings=protected, actor=actor
            )
            status = 201 if result.created else 200
        else:
            _, current = self.backend.flux_configurations_get(*args)
            spec, new_protected = wire.apply_patch_body(
                current.spec, body, api_version, protected=current.protected_settings
            )
            result = self.backend.flux_configurations_update(
                *args, spec=spec, protected_settings=new_protected, actor=actor
            )
            status = 200 if result.operation is None else 202
        document = wire.render_flux_config(result.panel, result.config, api_version)
        headers = self._lro_headers(result.operation, api_version) if result.operation else None
        return _Answer(status, document, headers)

    def _delete_flux(self, route: Route, request: web.Request, api_version: str) -> _Answer:
        outcome = self.backend.flux_configurations_delete(
            route.subscription, route.group, route.cluster, route.name, force=_force_delete(request)
        )
        if outcome == "gone":
            return _Answer(204)
        if outcome == "forced":
            return _Answer(200)
        return _Answer(202, None, self._lro_headers(outcome, api_version))

    def _get_flux_operation(self, route: Route, _: web.Request, __: str) -> _Answer:
        operation = self.backend.flux_config_operation_status_get(
            route.subscription,
            route.group,
            route.cluster,
            route.name,
            route.operation_id,
        )
        return self._operation_answer(operation)

    def _operation_answer(self, operation: Operation) -> _Answer:
        """OperationStatusResult `{id, name, status, properties, error}`; a failure carries its error."""
        error = operation.error if operation.status == "Failed" else None
        body = wire.OperationStatusWire(
            id=_operation_path(operation),
            name=operation.id,
            status=operation.status,
            properties={},
            error=None if error is None else wire.ErrorDetailWire(code=error.code, message=error.message),
        )
        headers = None
        if operation.status == "Running":
            headers = {"Retry-After": str(self._retry_after(operation))}
        return _Answer(200, body, headers)

    def _lro_headers(self, operation: Operation, api_version: str) -> dict[str, str]:
        url = f"{self._endpoint()}{_operation_path(operation)}?api-version={api_version}"
        deleting_flux = operation.kind == "delete" and operation.resource_kind == "fluxConfigurations"
        return {
            "Azure-AsyncOperation": url,
            "Operation-Location": url,
            "Retry-After": str(self._retry_after(operation)),
            "x-ms-async-operation-timeout": DELETE_OPERATION_TIMEOUT
            if deleting_flux
            else ASYNC_OPERATION_TIMEOUT,
        }

    def _retry_after(self, operation: Operation) -> int:
        """Real seconds until the operation is done: what an honest ARM would suggest."""
        remaining = self.clock.real_seconds(self.backend.seconds_until_done(operation))
        return max(1, math.ceil(remaining))

    # --- extensions ---------------------------------------------------------------------------------
    def _get_extension(self, route: Route, _: web.Request, api_version: str) -> _Answer:
        panel, extension = self.backend.extensions_get(
            route.subscription, route.group, route.cluster, route.name
        )
        return _Answer(200, wire.render_extension(panel, extension, api_version, self.tenant_id))

    def _list_extensions(self, route: Route, _: web.Request, api_version: str) -> _Answer:
        panel, extensions = self.backend.extensions_list(route.subscription, route.group, route.cluster)
        return _Answer(
            200,
            wire.ListPageWire(
                value=[wire.render_extension(panel, ext, api_version, self.tenant_id) for ext in extensions],
                nextLink=None,
            ),
        )

    def _write_extension(
        self, route: Route, method: str, body: object, api_version: str, actor: Actor
    ) -> _Answer:
        """Extensions_Create (PUT: 201 new / 200 existing, always an LRO) and Extensions_Update (PATCH:
        202 with an LRO, 200 when nothing changes), as extensions.json 2025-03-01 declares them."""
        args = (route.subscription, route.group, route.cluster, route.name)
        result: ExtensionWrite
        if method == "PUT":
            spec, protected = wire.parse_extension_put(body, api_version)
            result = self.backend.extensions_create(
                *args, spec=spec, protected_settings=protected, actor=actor
            )
            status = 201 if result.created else 200
        else:
            _, current = self.backend.extensions_get(*args)
            spec, new_protected = wire.apply_extension_patch(current.spec, body, api_version)
            result = self.backend.extensions_update(
                *args, spec=spec, protected_settings=new_protected, actor=actor
            )
            status = 200 if result.operation is None else 202
        document = wire.render_extension(result.panel, result.extension, api_version, self.tenant_id)
        headers = self._lro_headers(result.operation, api_version) if result.operation else None
        return _Answer(status, document, headers)

    def _delete_extension(self, route: Route, request: web.Request, api_version: str) -> _Answer:
        outcome = self.backend.extensions_delete(
            route.subscription, route.group, route.cluster, route.name, force=_force_delete(request)
        )
        if outcome == "gone":
            return _Answer(204)
        if outcome == "forced":
            return _Answer(200)
        return _Answer(202, None, self._lro_headers(outcome, api_version))

    def _get_extension_operation(self, route: Route, _: web.Request, __: str) -> _Answer:
        operation = self.backend.operation_status_get(
            route.subscription, route.group, route.cluster, route.name, route.operation_id
        )
        return self._operation_answer(operation)

    _readers: ClassVar[dict[tuple[str, str], Callable[[ArmResponses, Route, web.Request, str], _Answer]]] = {
        ("clusters_by_subscription", "GET"): _list_clusters,
        ("clusters_by_group", "GET"): _list_clusters,
        ("cluster", "GET"): _get_cluster,
        ("flux_list", "GET"): _list_flux,
        ("flux", "GET"): _get_flux,
        ("flux", "DELETE"): _delete_flux,
        ("flux_operation", "GET"): _get_flux_operation,
        ("extension_list", "GET"): _list_extensions,
        ("extension", "GET"): _get_extension,
        ("extension", "DELETE"): _delete_extension,
        ("extension_operation", "GET"): _get_extension_operation,
    }


def _provider_and_type(path: str) -> tuple[str, str]:
    """The provider namespace and type a path asks for (after its last `providers/`), for messages."""
    parts = [part for part in path.split("/") if part]
    lower = [part.lower() for part in parts]
    if "providers" not in lower:
        return "Microsoft.Resources", parts[-1] if parts else ""
    at = len(lower) - 1 - lower[::-1].index("providers")
    rest = parts[at + 1 :]
    return (rest[0] if rest else ""), (rest[1] if len(rest) > 1 else "")


def _operation_path(operation: Operation) -> str:
    """The operation-status resource, as `FluxConfigOperationStatus_Get` / `OperationStatus_Get` name it."""
    if operation.resource_kind == "fluxConfigurations":
        resource = wire.flux_config_id(operation.panel, operation.resource.name)
    else:
        resource = wire.extension_id(operation.panel, operation.resource.name)
    return f"{resource}/operations/{operation.id}"


def _force_delete(request: web.Request) -> bool:
    """`forceDelete` as a boolean query parameter ("Delete the extension resource in Azure - not the
    normal asynchronous delete")."""
    return request.query.get("forceDelete", "").lower() == "true"


def _skip_token(value: str | None) -> int:
    if not value:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(value.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The skip token '{value}' is invalid.", target="$skiptoken") from exc
    if offset < 0:
        raise BadRequest(f"The skip token '{value}' is invalid.", target="$skiptoken")
    return offset


async def _read_json(request: web.Request) -> object:
    raw = await request.read()
    if not raw.strip():
        raise InvalidRequestContent("The request content is empty.")
    try:
        return json.loads(raw)
    except ValueError as exc:
        position = getattr(exc, "pos", 0)
        raise InvalidRequestContent(
            f"Unexpected character encountered while parsing value. Path '', line 1, position {position}.",
        ) from exc
