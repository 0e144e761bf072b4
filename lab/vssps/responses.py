"""`{vssps}/{org}/_apis/tokens/pats` on the wire, as the PAT Lifecycle API 7.1-preview.1 answers.

Order of checks, as on vssps.dev.azure.com: the caller must be authenticated (401 otherwise), the
`api-version` must be 7.1-preview.1 (400), service principals and managed identities are refused
("Service principals are not allowed to perform this action.", 403), and so is any credential that is
not a user's Entra token, e.g. a PAT ("The requested operation is not allowed.", 403). Then each
operation answers 200 with a `PatTokenResult` whose `patTokenError` says what went wrong, if anything.
The token value appears in the create response only.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.core.tokens import DEVOPS_AUDIENCE, Principal
from lab.devops.api_version import ResourceVersions, negotiate_api_version
from lab.devops.errors import (
    AdoError,
    InvalidAccess,
    InvalidArgumentValue,
    OrganizationNotFound,
    SessionTokenNotFound,
    Unauthorized,
    ado_headers,
)
from lab.vssps.models import (
    DEFAULT_PAGE_SIZE,
    DISPLAY_FILTER_OPTIONS,
    MAX_PAGE_SIZE,
    SORT_BY_OPTIONS,
    PatLifecycleBackend,
    PatResult,
    decode_continuation,
    parse_authorization_id,
)

if TYPE_CHECKING:
    from lab.devops.pats import PatRecord
    from lab.devops.service import DevOpsService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Tokens/Pats exists only as 7.1-preview.1 for the lab (see lab/docs/devops.md, Differences).
PATS_VERSIONS = ResourceVersions(
    min_version=7.1, max_version=7.1, released_version=0.0, resource_version=1, version_required=True
)
# .NET's round-trip format has 7 fractional digits; Azure DevOps trims trailing zeros.
_DOTNET_FRACTION_DIGITS = 7


def ado_datetime(moment: datetime) -> str:
    """`2020-11-23T04:04:38.5233333Z`, the way Azure DevOps serialises a DateTime."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".ljust(_DOTNET_FRACTION_DIGITS, "0").rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def ado_errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (AdoError, Unauthorized) as exc:
            return exc.response()

    return wrapped


class PatsResponses:
    def __init__(self, *, devops: DevOpsService, backend: PatLifecycleBackend, tenant_id: str) -> None:
        self.devops = devops
        self.backend = backend
        self.tenant_id = tenant_id

    # --- the checks every operation makes -----------------------------------------------------------
    def _authorize(self, request: web.Request) -> tuple[Principal, str]:
        """(the user, the api-version) or the error vssps answers, in vssps' order."""
        org = request.match_info["org"]
        if org.lower() != self.devops.org.lower():
            raise OrganizationNotFound(
                f"The organization '{org}' does not exist or you do not have permissions to access it."
            )
        principal, by_pat = self._authenticate(request)
        api_version = negotiate_api_version(request, PATS_VERSIONS)
        if principal.kind != "user":
            raise InvalidAccess("Service principals are not allowed to perform this action.")
        if by_pat:
            raise InvalidAccess("The requested operation is not allowed.")
        return principal, api_version

    def _authenticate(self, request: web.Request) -> tuple[Principal, bool]:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer":
            principal = self.devops.lab.tokens.authenticate(header, DEVOPS_AUDIENCE)
            if principal is not None and principal.object_id in self.devops.members:
                return principal, False
            if principal is not None and principal.kind != "user":
                return principal, False  # refused below with the service-principal message
        elif scheme.lower() == "basic":
            try:
                token = base64.b64decode(credential.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                token = ""
            # Any live PAT of this organization authenticates (whatever its scope); the API then refuses it.
            record = self.devops.pats.find(token) if token else None
            if (
                record is not None
                and record.status(self.devops.lab.clock.now()) == "active"
                and (record.org is None or record.org.lower() == self.devops.org.lower())
            ):
                return record.owner, True
        raise Unauthorized(
            "TF400813: Resource not available for anonymous access. Client authentication required.",
            host=request.host,
            tenant_id=self.tenant_id,
        )

    # --- serialisation ------------------------------------------------------------------------------
    def _pat_token(self, record: PatRecord, token: str | None = None) -> dict[str, Any]:
        return {
            "displayName": record.display_name,
            "validTo": ado_datetime(record.valid_to),
            "scope": record.scope,
            "targetAccounts": None if record.org is None else [self.devops.org_id],
            "validFrom": ado_datetime(record.valid_from),
            "authorizationId": record.authorization_id,
            "token": token,
        }

    def _result(self, result: PatResult, api_version: str) -> web.Response:
        body = {
            "patToken": None if result.record is None else self._pat_token(result.record, result.token),
            "patTokenError": result.error,
        }
        return web.Response(text=json.dumps(body), headers=ado_headers(api_version))

    # --- operations ---------------------------------------------------------------------------------
    async def create_pat(self, request: web.Request) -> web.Response:
        principal, api_version = self._authorize(request)
        body = await _json_object(request)
        result = self.backend.create_pat(
            principal,
            display_name=body.get("displayName"),
            scope=body.get("scope"),
            valid_to=body.get("validTo"),
            all_orgs=bool(body.get("allOrgs", False)),
        )
        return self._result(result, api_version)

    async def get_or_list_pats(self, request: web.Request) -> web.Response:
        principal, api_version = self._authorize(request)
        if "authorizationId" in request.query:
            return self._result(
                self.backend.get_pat(principal, request.query["authorizationId"]), api_version
            )
        display_filter = DISPLAY_FILTER_OPTIONS.get(
            request.query.get("displayFilterOption", "active").lower()
        )
        sort_by = SORT_BY_OPTIONS.get(request.query.get("sortByOption", "displayName").lower())
        if display_filter is None:
            raise InvalidArgumentValue(
                f"The value '{request.query['displayFilterOption']}' is not valid for displayFilterOption."
            )
        if sort_by is None:
            raise InvalidArgumentValue(
                f"The value '{request.query['sortByOption']}' is not valid for sortByOption."
            )
        ascending_text = request.query.get("isSortAscending", "true").lower()
        if ascending_text not in ("true", "false"):
            raise InvalidArgumentValue(f"The value '{ascending_text}' is not valid for isSortAscending.")
        try:
            top = int(request.query.get("$top", str(DEFAULT_PAGE_SIZE)))
        except ValueError as exc:
            raise InvalidArgumentValue(f"The value '{request.query['$top']}' is not valid for $top.") from exc
        if top < 1:
            raise InvalidArgumentValue(f"The value '{top}' is not valid for $top.")
        start = 0
        if request.query.get("continuationToken"):
            decoded = decode_continuation(request.query["continuationToken"])
            if decoded is None:
                raise InvalidArgumentValue("The continuation token is not valid.")
            start = decoded
        page = self.backend.list_pats(
            principal,
            display_filter=display_filter,
            sort_by=sort_by,
            ascending=ascending_text == "true",
            start=start,
            top=min(top, MAX_PAGE_SIZE),
        )
        body = {
            "continuationToken": page.continuation_token,
            "patTokens": [self._pat_token(record) for record in page.records],
        }
        return web.Response(text=json.dumps(body), headers=ado_headers(api_version))

    async def update_pat(self, request: web.Request) -> web.Response:
        principal, api_version = self._authorize(request)
        body = await _json_object(request)
        result = self.backend.update_pat(
            principal,
            authorization_id=body.get("authorizationId"),
            display_name=body.get("displayName"),
            scope=body.get("scope"),
            valid_to=body.get("validTo"),
            all_orgs=body.get("allOrgs"),
        )
        return self._result(result, api_version)

    async def revoke_pat(self, request: web.Request) -> web.Response:
        principal, _ = self._authorize(request)
        authorization_id = parse_authorization_id(request.query.get("authorizationId"))
        if authorization_id is None:
            raise InvalidArgumentValue("The authorizationId query parameter must be a GUID.")
        if not self.backend.revoke_pat(principal, authorization_id):
            raise SessionTokenNotFound(
                f"The personal access token with authorization id {authorization_id} was not found."
            )
        return web.Response(
            status=204, headers={k: v for k, v in ado_headers().items() if k != "Content-Type"}
        )


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError as exc:
        raise InvalidArgumentValue(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidArgumentValue("Value cannot be null.\r\nParameter name: patTokenRequest")
    return body
