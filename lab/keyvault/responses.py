"""Key Vault secrets on the wire: parse each request, call the backend, serialise what Key Vault returns.

Every handler runs the same gate as Key Vault: bearer challenge (401 + `WWW-Authenticate` so the SDK's
challenge policy fetches a vault token), the api-version, then the caller's role for the data action.
Shapes follow the azure-rest-api-specs examples for 7.5 (SetSecret, GetSecretVersions, DeleteSecret, ...);
`nextLink` carries a `$skiptoken` as Key Vault's does.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from lab.keyvault.errors import BadParameter, KeyVaultError
from lab.keyvault.models import (
    RECOVERABLE_DAYS,
    RECOVERY_LEVEL,
    SecretAttributes,
    SecretPatch,
    SecretRecord,
    SecretVersion,
)

if TYPE_CHECKING:
    from lab.keyvault.service import KeyVaultService

# What azure-keyvault-secrets 4.12 can send: its default (2026-04-01), 2025-07-01 and the 7.x line.
SUPPORTED_API_VERSIONS = frozenset(
    {"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"}
)
# Key Vault's page size when `maxresults` is not given, and the largest it accepts.
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 25
# Headers Key Vault puts on every response, errors and the 401 challenge included (as recorded responses
# show them; the version and region values are what a 2025 vault in West Europe reports).
_SERVICE_HEADERS = {
    "x-ms-keyvault-service-version": "1.9.2145.1",
    "x-ms-keyvault-region": "westeurope",
    "Cache-Control": "no-cache",
    "Pragma": "no-cache",
    "Expires": "-1",
    "Strict-Transport-Security": "max-age=31536000;includeSubDomains",
    "X-Content-Type-Options": "nosniff",
}


def service_headers(request: web.Request) -> dict[str, str]:
    """Key Vault's per-response headers, with `x-ms-keyvault-network-info` naming the caller's address."""
    address = request.remote or "127.0.0.1"
    family = "InterNetworkV6" if ":" in address else "InterNetwork"
    connection = "Ipv6" if ":" in address else "Ipv4"
    return {
        **_SERVICE_HEADERS,
        "x-ms-keyvault-network-info": f"conn_type={connection};addr={address};act_addr_fam={family};",
    }


# Role-based data actions, as Azure RBAC names them for Key Vault secrets.
ACTION_GET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
ACTION_READ_METADATA = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
ACTION_SET = "Microsoft.KeyVault/vaults/secrets/setSecret/action"
ACTION_UPDATE = "Microsoft.KeyVault/vaults/secrets/update/action"
ACTION_DELETE = "Microsoft.KeyVault/vaults/secrets/delete"
ACTION_READ_DELETED = "Microsoft.KeyVault/vaults/deletedSecrets/read"
ACTION_RECOVER = "Microsoft.KeyVault/vaults/secrets/recover/action"
ACTION_PURGE = "Microsoft.KeyVault/vaults/secrets/purge/action"


# --- wire shapes ------------------------------------------------------------------------------------
class SecretAttributesWire(TypedDict, total=False):
    enabled: bool
    nbf: int
    exp: int
    created: int
    updated: int
    recoveryLevel: str
    recoverableDays: int


class SecretBundleWire(TypedDict, total=False):
    value: str
    id: str
    contentType: str
    attributes: SecretAttributesWire
    tags: dict[str, str]


class SecretItemWire(TypedDict, total=False):
    id: str
    contentType: str
    attributes: SecretAttributesWire
    tags: dict[str, str]


class DeletedSecretBundleWire(SecretBundleWire, total=False):
    recoveryId: str
    deletedDate: int
    scheduledPurgeDate: int


class SecretSetRequestWire(TypedDict, total=False):
    value: str
    contentType: str
    attributes: dict[str, Any]
    tags: dict[str, str]


class PageWire(TypedDict):
    value: Sequence[object]
    nextLink: str | None


# --- serialisers --------------------------------------------------------------------------------------
def attributes_wire(attributes: SecretAttributes) -> SecretAttributesWire:
    wire: SecretAttributesWire = {"enabled": attributes.enabled}
    if attributes.not_before is not None:
        wire["nbf"] = attributes.not_before
    if attributes.expires is not None:
        wire["exp"] = attributes.expires
    wire["created"] = attributes.created
    wire["updated"] = attributes.updated
    wire["recoveryLevel"] = RECOVERY_LEVEL
    wire["recoverableDays"] = RECOVERABLE_DAYS
    return wire


def bundle_wire(version: SecretVersion, *, vault_url: str, with_value: bool) -> SecretBundleWire:
    wire: SecretBundleWire = {}
    if with_value:
        wire["value"] = version.value
    wire["id"] = f"{vault_url}/secrets/{version.name}/{version.version}"
    if version.content_type is not None:
        wire["contentType"] = version.content_type
    wire["attributes"] = attributes_wire(version.attributes)
    if version.tags:
        wire["tags"] = dict(version.tags)
    return wire


def item_wire(version: SecretVersion, *, vault_url: str, versioned: bool) -> SecretItemWire:
    """A list entry: no value; GetSecrets ids name the secret, GetSecretVersions ids the version."""
    suffix = f"/{version.version}" if versioned else ""
    wire: SecretItemWire = {"id": f"{vault_url}/secrets/{version.name}{suffix}"}
    if version.content_type is not None:
        wire["contentType"] = version.content_type
    wire["attributes"] = attributes_wire(version.attributes)
    if version.tags:
        wire["tags"] = dict(version.tags)
    return wire


def deleted_wire(record: SecretRecord, *, vault_url: str, versioned: bool = True) -> DeletedSecretBundleWire:
    """A DeletedSecretBundle (versioned id) or, in GetDeletedSecrets, a DeletedSecretItem (id of the name)."""
    assert record.deletion is not None
    wire: DeletedSecretBundleWire = {
        "recoveryId": f"{vault_url}/deletedsecrets/{record.name}",
        "deletedDate": record.deletion.deleted_date,
        "scheduledPurgeDate": record.deletion.scheduled_purge_date,
        **bundle_wire(record.latest, vault_url=vault_url, with_value=False),
    }
    if not versioned:
        wire["id"] = f"{vault_url}/secrets/{record.name}"
    return wire


def _encode_skiptoken(offset: int) -> str:
    marker = json.dumps({"NextMarker": str(offset), "TargetLocation": 0}, separators=(",", ":"))
    return base64.urlsafe_b64encode(marker.encode()).decode().rstrip("=")


def _decode_skiptoken(token: str) -> int:
    try:
        marker = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(marker["NextMarker"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise BadParameter("The $skiptoken parameter is invalid.") from exc


Item = TypeVar("Item")


def page(items: Sequence[Item], request: web.Request, *, base_url: str) -> tuple[Sequence[Item], str | None]:
    """Key Vault paging: `maxresults` (1-25) per page, an opaque `$skiptoken` in `nextLink`."""
    raw_size = request.query.get("maxresults")
    try:
        size = DEFAULT_PAGE_SIZE if raw_size is None else int(raw_size)
    except ValueError as exc:
        raise BadParameter(f"Invalid maxresults value: {raw_size}") from exc
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadParameter(f"The value of maxresults must be between 1 and {MAX_PAGE_SIZE}.")
    token = request.query.get("$skiptoken")
    offset = _decode_skiptoken(token) if token else 0
    chunk = items[offset : offset + size]
    if offset + size >= len(items):
        return chunk, None
    query = {
        "api-version": request.query["api-version"],
        "$skiptoken": _encode_skiptoken(offset + size),
        "maxresults": str(size),
    }
    # Key Vault writes `$skiptoken` unescaped in its nextLinks (the SDK follows them verbatim).
    return chunk, f"{base_url}{request.path}?{urlencode(query, safe='$')}"


def json_ok(body: object, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={"x-ms-request-id": str(uuid.uuid4())},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def handles_errors(handler: Handler) -> Handler:
    """Render Key Vault errors, and stamp Key Vault's service headers on every answer, good or bad."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except KeyVaultError as error:
            response = error.response()
        response.headers.update(service_headers(request))
        return response

    return wrapped


# --- handlers -----------------------------------------------------------------------------------------
class SecretResponses:
    """The handlers for `/secrets` and `/deletedsecrets`, bound to the service's backend and access policy."""

    def __init__(self, service: KeyVaultService) -> None:
        self.service = service
        self.backend = service.backend

    @property
    def vault_url(self) -> str:
        return self.service.endpoint

    def _gate(self, request: web.Request, action: str, resource: str = "") -> None:
        principal = self.service.authenticate(request.headers.get("Authorization"))
        version = request.query.get("api-version")
        if not version:
            raise BadParameter("The request URI contains an invalid or missing api-version.")
        if version not in SUPPORTED_API_VERSIONS:
            raise BadParameter(
                f"The specified version ({version}) is not recognized. Consider using the latest supported "
                "version (2026-04-01)."
            )
        # RBAC judges a list on the vault itself and a secret operation on the secret (as Key Vault's
        # ForbiddenByRbac message names the resource).
        self.service.authorize(principal, action, resource=f"/secrets/{resource}" if resource else "")

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise BadParameter(f"The request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BadParameter("The request body must be a JSON object.")
        return body

    @staticmethod
    def _attributes(body: dict[str, Any]) -> dict[str, Any]:
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise BadParameter("Property 'attributes' must be an object.")
        for key in ("nbf", "exp"):
            if attributes.get(key) is not None and not isinstance(attributes[key], int):
                raise BadParameter(f"Property 'attributes.{key}' must be a Unix time in seconds.")
        if attributes.get("enabled") is not None and not isinstance(attributes["enabled"], bool):
            raise BadParameter("Property 'attributes.enabled' must be a boolean.")
        return attributes

    @staticmethod
    def _tags(body: dict[str, Any]) -> dict[str, str] | None:
        tags = body.get("tags")
        if tags is None:
            return None
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise BadParameter("Property 'tags' must be an object of strings.")
        return {str(k): v for k, v in tags.items()}

    async def set_secret(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._gate(request, ACTION_SET, name)
        body: SecretSetRequestWire = await self._body(request)  # type: ignore[assignment]
        value = body.get("value")
        if not isinstance(value, str):
            raise BadParameter("Property 'value' is required and must be a string.")
        attributes = self._attributes(dict(body))
        content_type = body.get("contentType")
        version = self.backend.set_secret(
            name,
            value=value,
            content_type=content_type if isinstance(content_type, str) else None,
            tags=self._tags(dict(body)),
            enabled=attributes.get("enabled", True) is not False,
            not_before=attributes.get("nbf"),
            expires=attributes.get("exp"),
        )
        return json_ok(bundle_wire(version, vault_url=self.vault_url, with_value=True))

    async def get_secret(self, request: web.Request) -> web.StreamResponse:
        name, version = request.match_info["name"], request.match_info.get("version", "")
        self._gate(request, ACTION_GET, name)
        found = self.backend.get_secret(name, version or None)
        return json_ok(bundle_wire(found, vault_url=self.vault_url, with_value=True))

    async def update_secret(self, request: web.Request) -> web.StreamResponse:
        name, version = request.match_info["name"], request.match_info.get("version", "")
        self._gate(request, ACTION_UPDATE, name)
        body = await self._body(request)
        attributes = self._attributes(body)
        content_type = body.get("contentType")
        patch = SecretPatch(
            content_type=content_type if isinstance(content_type, str) else None,
            tags=self._tags(body),
            enabled=attributes.get("enabled"),
            not_before=attributes.get("nbf"),
            expires=attributes.get("exp"),
        )
        updated = self.backend.update_secret(name, version or None, patch)
        self.service.secret_changed()
        return json_ok(bundle_wire(updated, vault_url=self.vault_url, with_value=False))

    async def get_secrets(self, request: web.Request) -> web.StreamResponse:
        self._gate(request, ACTION_READ_METADATA)
        items, next_link = page(self.backend.get_secrets(), request, base_url=self.vault_url)
        body: PageWire = {
            "value": [item_wire(v, vault_url=self.vault_url, versioned=False) for v in items],
            "nextLink": next_link,
        }
        return json_ok(body)

    async def get_secret_versions(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._gate(request, ACTION_READ_METADATA, name)
        items, next_link = page(self.backend.get_secret_versions(name), request, base_url=self.vault_url)
        body: PageWire = {
            "value": [item_wire(v, vault_url=self.vault_url, versioned=True) for v in items],
            "nextLink": next_link,
        }
        return json_ok(body)

    async def delete_secret(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._gate(request, ACTION_DELETE, name)
        record = self.backend.delete_secret(name)
        self.service.secret_changed()
        return json_ok(deleted_wire(record, vault_url=self.vault_url))

    async def get_deleted_secret(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._gate(request, ACTION_READ_DELETED, name)
        return json_ok(deleted_wire(self.backend.get_deleted_secret(name), vault_url=self.vault_url))

    async def get_deleted_secrets(self, request: web.Request) -> web.StreamResponse:
        self._gate(request, ACTION_READ_DELETED)
        records, next_link = page(self.backend.get_deleted_secrets(), request, base_url=self.vault_url)
        body: PageWire = {
            "value": [deleted_wire(r, vault_url=self.vault_url, versioned=False) for r in records],
            "nextLink": next_link,
        }
        return json_ok(body)

    async def purge_deleted_secret(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._gate(request, ACTION_PURGE, name)
        self.backend.purge_deleted_secret(name)
        return web.Response(status=204, headers={"x-ms-request-id": str(uuid.uuid4())})

    async def recover_deleted_secret(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._gate(request, ACTION_RECOVER, name)
        recovered = self.backend.recover_deleted_secret(name)
        self.service.secret_changed()
        return json_ok(bundle_wire(recovered, vault_url=self.vault_url, with_value=False))
