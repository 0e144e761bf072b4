"""Azure DevOps PAT lifecycle API (`vssps/_apis/tokens/pats`, 7.1-preview.1) for the operator CLI only.

Microsoft does not let service principals or managed identities create or revoke PATs, so this client
runs with a *person's* Entra token (`az login` or an interactive sign-in) and is never part of the
Functions app. `azure-devops` has no client for this API, hence a plain azure-core pipeline: bearer
token policy for the Azure DevOps resource, retries, and timeouts.

The API reports most errors inside an HTTP 200 body (`patTokenError`), so every answer is checked and
turned into a `PatApiError` whose message says what to do. The token minted by `create` is returned
to the caller once, as `MintedPat.token`, which has no repr; nothing here logs a body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from shared.errors import (
    FluxfleetError,
    Forbidden,
    NotFound,
    PermanentError,
    TransientError,
    Unauthorized,
    from_azure_error,
    safe_text,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline import Pipeline
    from azure.core.rest import HttpResponse

API_VERSION = "7.1-preview.1"
# The Azure DevOps resource (application id) in Entra; the same in every cloud and tenant.
DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
# The API pages lists at up to 100 tokens.
LIST_PAGE_SIZE = 100
# Operator commands are interactive: a few retries of 429/5xx with azure-core's backoff, then a clear error.
RETRY_TOTAL = 3
TIMEOUTS = {"connection_timeout": 10, "read_timeout": 60}


class PatTokenWire(TypedDict, total=False):
    authorizationId: str
    displayName: str
    scope: str
    targetAccounts: list[str] | None
    validFrom: str
    validTo: str
    token: str | None


class PatTokenResultWire(TypedDict, total=False):
    patToken: PatTokenWire
    patTokenError: str


# What each `patTokenError` means for the person running the CLI.
PAT_TOKEN_ERRORS: dict[str, str] = {
    "displayNameRequired": "a display name is required (--display-name)",
    "invalidDisplayName": "the display name is not accepted (characters or length)",
    "invalidValidTo": "the expiry is not accepted: it must be in the future and within the organization's "
    "maximum PAT lifetime (try fewer --days)",
    "invalidScope": "the scope is not a valid Azure DevOps scope (fluxfleet uses vso.code)",
    "userIdRequired": "the token does not identify a user: sign in as a person (az login), "
    "not as a service principal",
    "invalidUserId": "the signed-in user is not known to Azure DevOps",
    "invalidUserType": "this kind of identity cannot manage PATs (service principals and managed identities "
    "cannot; sign in as a person)",
    "accessDenied": "access denied: the signed-in user may not manage PATs in this organization",
    "failedToIssueAccessToken": "Azure DevOps could not issue the token; try again later",
    "invalidClient": "the client application is not accepted by Azure DevOps",
    "invalidClientType": "the client application type is not accepted by Azure DevOps",
    "invalidClientId": "the client application id is not accepted by Azure DevOps",
    "invalidTargetAccounts": "the organization is not one the user belongs to (--org)",
    "hostAuthorizationNotFound": "no authorization for this organization was found",
    "authorizationNotFound": "no PAT with this authorizationId exists for the signed-in user (already "
    "revoked, or minted by someone else)",
    "failedToUpdateAccessToken": "Azure DevOps could not update the token; try again later",
    "sourceNotSupported": "this source of request is not supported",
    "invalidSourceIP": "requests from this IP address are not allowed by the organization's policy",
    "invalidSource": "the request source is not valid",
    "duplicateHash": "Azure DevOps refused a duplicate token; try again",
    "sshPolicyDisabled": "SSH keys are disabled by policy",
    "invalidToken": "the token is not valid",
    "tokenNotFound": "the token was not found",
    "invalidAuthorizationId": "the authorizationId is not a valid id",
    "failedToReadTenantPolicy": "Azure DevOps could not read the tenant's PAT policy; try again later",
    "globalPatPolicyViolation": "the tenant's policy forbids PATs valid in all organizations (fluxfleet "
    "mints organization-scoped ones; check the policy)",
    "fullScopePatPolicyViolation": "the tenant's policy forbids full-scoped PATs",
    "patLifespanPolicyViolation": "the expiry exceeds the maximum PAT lifetime set by policy "
    "(try fewer --days)",
    "invalidTokenType": "the token type is not valid",
    "invalidAudience": "the token's audience is not valid",
    "invalidSubject": "the token's subject is not valid",
}


class PatApiError(PermanentError):
    status = 400
    code = "PatTokenError"

    def __init__(self, pat_token_error: str, *, action: str) -> None:
        meaning = PAT_TOKEN_ERRORS.get(pat_token_error, "an error this CLI does not know")
        super().__init__(f"{action}: {pat_token_error} — {meaning}", patTokenError=pat_token_error)
        self.pat_token_error = pat_token_error


@dataclass(frozen=True)
class PatToken:
    authorization_id: str
    display_name: str
    scope: str
    valid_from: datetime | None
    valid_to: datetime | None
    target_accounts: tuple[str, ...] | None


@dataclass(frozen=True)
class MintedPat:
    pat: PatToken
    token: str = field(repr=False)


class PatLifecycleClient:
    """The PAT lifecycle API of one organization, as the signed-in person."""

    def __init__(
        self,
        *,
        vssps_url: str,
        organization: str,
        credential: TokenCredential,
        pipeline: Pipeline[Any, Any] | None = None,
    ) -> None:
        self._base = f"{vssps_url.rstrip('/')}/{organization}/_apis/tokens/pats"
        self._pipeline = pipeline or build_pipeline(credential)

    def create(
        self, *, display_name: str, scope: str, valid_to: datetime, all_orgs: bool = False
    ) -> MintedPat:
        body = {
            "displayName": display_name,
            "scope": scope,
            "validTo": valid_to.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "allOrgs": all_orgs,
        }
        result = self._send("POST", "", body=body, action="create PAT")
        wire = result.get("patToken") or {}
        token = wire.get("token")
        if not token:
            raise FluxfleetError("create PAT: Azure DevOps answered without a token")
        return MintedPat(pat=_pat(wire), token=token)

    def get(self, authorization_id: str) -> PatToken:
        result = self._send("GET", f"&authorizationId={authorization_id}", action="get PAT")
        return _pat(result.get("patToken") or {})

    def list_active(self) -> list[PatToken]:
        tokens: list[PatToken] = []
        continuation = ""
        while True:
            query = f"&displayFilterOption=active&$top={LIST_PAGE_SIZE}"
            if continuation:
                query += f"&continuationToken={continuation}"
            page = self._send("GET", query, action="list PATs")
            tokens += [_pat(wire) for wire in page.get("patTokens") or []]
            continuation = str(page.get("continuationToken") or "")
            if not continuation:
                return tokens

    def revoke(self, authorization_id: str) -> None:
        self._send("DELETE", f"&authorizationId={authorization_id}", action=f"revoke PAT {authorization_id}")

    def _send(self, method: str, query: str, *, action: str, body: Any = None) -> dict[str, Any]:
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        url = f"{self._base}?api-version={API_VERSION}{query}"
        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        try:
            response: HttpResponse = self._pipeline.run(request).http_response
            response.read()
        except AzureError as exc:
            raise from_azure_error(exc, what=action) from exc
        if response.status_code >= 400:
            raise _status_error(response.status_code, f"{action}: {_error_message(response)}")
        if response.status_code == 204 or not response.content:
            return {}
        try:
            result: dict[str, Any] = response.json()
        except ValueError:
            raise FluxfleetError(
                f"{action}: Azure DevOps answered HTTP {response.status_code} without JSON"
            ) from None
        error = str(result.get("patTokenError") or "none")
        if error != "none":
            raise PatApiError(error, action=action)
        return result


def build_pipeline(credential: TokenCredential) -> Pipeline[Any, Any]:
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.policies import (
        BearerTokenCredentialPolicy,
        HeadersPolicy,
        RetryPolicy,
        UserAgentPolicy,
    )
    from azure.core.pipeline.transport import RequestsTransport

    return Pipeline(
        transport=RequestsTransport(**TIMEOUTS),
        policies=[
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy("fluxfleet-cli"),
            RetryPolicy(retry_total=RETRY_TOTAL),
            BearerTokenCredentialPolicy(credential, DEVOPS_SCOPE),
        ],
    )


def _pat(wire: PatTokenWire | dict[str, Any]) -> PatToken:
    targets = wire.get("targetAccounts")
    return PatToken(
        authorization_id=str(wire.get("authorizationId") or ""),
        display_name=str(wire.get("displayName") or ""),
        scope=str(wire.get("scope") or ""),
        valid_from=_time(wire.get("validFrom")),
        valid_to=_time(wire.get("validTo")),
        target_accounts=tuple(targets) if targets is not None else None,
    )


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _status_error(status: int, detail: str) -> FluxfleetError:
    """The app's error for an HTTP failure of this API (its bodies are `{"message": ...}`, not ARM's)."""
    if status in (401, 403):
        hint = " (sign in as a person who is a member of the organization)"
        return (Unauthorized if status == 401 else Forbidden)(detail + hint)
    if status == 404:
        return NotFound(detail)
    if status == 429 or status >= 500:
        return TransientError(detail)
    return PermanentError(detail)


def _error_message(response: HttpResponse) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    message = body.get("message") if isinstance(body, dict) else None
    return safe_text(message or f"HTTP {response.status_code}")
