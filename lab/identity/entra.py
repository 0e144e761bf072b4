"""The operator's user identity: enough of a Microsoft Entra v2.0 authority for a user token.

Azure DevOps PATs can be minted and revoked only with a *user's* Entra token (managed identities and
service principals are refused), so the app's `pat mint` / `pat revoke-superseded` commands run as the
operator. In the lab the operator is `operator@contoso.example` with a password made up per lab, and
azure-identity's `UsernamePasswordCredential` (MSAL's resource-owner password flow) signs in against
this authority: OpenID discovery, then `grant_type=password` and `grant_type=refresh_token` at the
token endpoint. Access tokens are the lab's opaque tokens (`lab.core.tokens`), bound to the operator
and to the requested resource, so every emulated service authenticates them as it does the managed
identity's. The ID token is a well-formed but unsigned JWT: MSAL and azure-identity only read its claims.

MSAL sends its user-realm discovery to `https://<authority hostname>/common/userrealm/...` without the
authority's port, which no lab listener can answer; for the `adfs` tenant alias MSAL skips that call.
So the lab publishes the operator's `tenant_id` as `adfs` (documented in lab/docs/devops.md) while
the tokens still carry the lab's real tenant id (`tid`). Any other tenant path is served too.

The routes need HTTPS (MSAL refuses an http authority) and are therefore added to the `vssps`
listener, which is HTTPS and, like login.microsoftonline.com, is a host of its own apart from the
identity endpoint.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.core.tokens import TOKEN_LIFETIME_S, Principal, normalise_audience

if TYPE_CHECKING:
    from lab.server import Lab

OPERATOR_OBJECT_ID = "0f1eef1e-0000-4000-8000-0000000b0001"
OPERATOR_USERNAME = "operator@contoso.example"
OPERATOR_DISPLAY_NAME = "IPC Platform Operator"
# Azure CLI's public client id: what an operator's `az login` (and so the app's CLI) signs in with.
OPERATOR_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
# The tenant alias MSAL does no user-realm discovery for (see the module docstring).
AUTHORITY_TENANT = "adfs"
# Entra's refresh tokens for public clients live 90 days (sliding); the lab clock judges them.
_REFRESH_TOKEN_LIFETIME_S = 90 * 24 * 3600
# The OpenID scopes MSAL always adds; they name no resource.
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})


def operator_principal(tenant_id: str) -> Principal:
    return Principal(object_id=OPERATOR_OBJECT_ID, kind="user", name=OPERATOR_USERNAME, tenant_id=tenant_id)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class EntraError(Exception):
    """An OAuth error as Entra's token endpoint words it (`AADSTS<n>: ...`)."""

    def __init__(self, error: str, code: int, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.code = code
        self.description = description
        self.status = status

    def response(self, authority: str) -> web.Response:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        timestamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        return web.json_response(
            {
                "error": self.error,
                "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
                "error_codes": [self.code],
                "timestamp": timestamp,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri": f"{authority}/error?code={self.code}",
            },
            status=self.status,
        )


class EntraAuthority:
    """The operator's directory: one user, one public client, password and refresh-token grants."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.operator = operator_principal(lab.tenant_id)
        self.password = secrets.token_urlsafe(18)
        self._refresh_tokens: dict[str, tuple[Principal, str, float]] = {}
        self._lock = threading.Lock()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_get("/adfs/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        app.router.add_get("/common/userrealm/{username}", self.user_realm)

    def describe(self, authority: str) -> dict[str, Any]:
        return {
            "operator": {
                "username": OPERATOR_USERNAME,
                "password": self.password,
                "client_id": OPERATOR_CLIENT_ID,
                "authority": authority,
                "tenant_id": AUTHORITY_TENANT,
                "home_tenant_id": self.lab.tenant_id,
                "object_id": OPERATOR_OBJECT_ID,
            }
        }

    # --- routes -------------------------------------------------------------------------------------
    def _tenant(self, request: web.Request) -> str:
        tenant = request.match_info.get("tenant", AUTHORITY_TENANT)
        if tenant.lower() not in (self.lab.tenant_id, AUTHORITY_TENANT, "organizations", "common"):
            raise EntraError(
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you "
                "have the correct tenant ID and are signing into the correct cloud.",
            )
        return tenant

    async def openid_configuration(self, request: web.Request) -> web.Response:
        authority = f"https://{request.host}"
        try:
            tenant = self._tenant(request)
        except EntraError as exc:
            return exc.response(authority)
        base = f"{authority}/{tenant}"
        issuer = (
            f"{authority}/{AUTHORITY_TENANT}"
            if tenant == AUTHORITY_TENANT
            else f"{authority}/{self.lab.tenant_id}/v2.0"
        )
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": issuer,
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "name",
                    "oid",
                    "tid",
                    "preferred_username",
                    "ver",
                ],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    async def user_realm(self, request: web.Request) -> web.Response:
        """What Entra says of a cloud-only user (reachable by clients that keep the port)."""
        return web.json_response(
            {
                "ver": "1.0",
                "account_type": "Managed",
                "domain_name": "contoso.example",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_audience_urn": "urn:federation:MicrosoftOnline",
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        authority = f"https://{request.host}"
        try:
            tenant = self._tenant(request)
            form = await request.post()
            fields = {key: str(value) for key, value in form.items()}
            return web.json_response(self._grant(fields, authority=authority, tenant=tenant))
        except EntraError as exc:
            return exc.response(authority)

    # --- grants -------------------------------------------------------------------------------------
    def _grant(self, form: dict[str, str], *, authority: str, tenant: str) -> dict[str, Any]:
        client_id = form.get("client_id", "")
        if client_id != OPERATOR_CLIENT_ID:
            raise EntraError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.lab.tenant_id}'.",
            )
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            principal = self._check_password(form.get("username", ""), form.get("password", ""))
        elif grant_type == "refresh_token":
            principal = self._redeem_refresh_token(form.get("refresh_token", ""), client_id)
        else:
            raise EntraError(
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        scopes = form.get("scope", "").split()
        resources = {
            normalise_audience(s.rsplit("/", 1)[0] if s.endswith(("/.default", "/user_impersonation")) else s)
            for s in scopes
            if s not in _OIDC_SCOPES
        }
        if len(resources) != 1:
            raise EntraError(
                "invalid_scope",
                70011,
                "The provided request must include exactly one resource "
                f"scope; got '{form.get('scope', '')}'.",
            )
        audience = resources.pop()
        access_token, expires_on = self.lab.tokens.issue(principal, audience)
        expires_in = max(0, expires_on - int(time.time()))
        response: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(s for s in scopes if s not in _OIDC_SCOPES),
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
            "refresh_token": self._issue_refresh_token(principal, client_id),
            "id_token": self._id_token(principal, client_id, authority=authority, tenant=tenant),
        }
        if form.get("client_info") == "1":
            response["client_info"] = _b64url(
                json.dumps({"uid": principal.object_id, "utid": principal.tenant_id}).encode()
            )
        return response

    def _check_password(self, username: str, password: str) -> Principal:
        if username.lower() != OPERATOR_USERNAME:
            raise EntraError(
                "invalid_grant",
                50034,
                f"The user account {{EUII Hidden}} does not exist in the "
                f"{self.lab.tenant_id} directory. To sign into this application, the account must "
                "be added to the directory.",
            )
        if not secrets.compare_digest(password, self.password):
            raise EntraError(
                "invalid_grant", 50126, "Error validating credentials due to invalid username or password."
            )
        return self.operator

    def _issue_refresh_token(self, principal: Principal, client_id: str) -> str:
        token = "lab-rt." + secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens[token] = (
                principal,
                client_id,
                self.lab.clock.timestamp() + _REFRESH_TOKEN_LIFETIME_S,
            )
        return token

    def _redeem_refresh_token(self, token: str, client_id: str) -> Principal:
        with self._lock:
            grant = self._refresh_tokens.get(token)
        if grant is None or grant[1] != client_id:
            raise EntraError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        if grant[2] < self.lab.clock.timestamp():
            raise EntraError("invalid_grant", 700082, "The refresh token has expired due to inactivity.")
        return grant[0]

    def _id_token(self, principal: Principal, client_id: str, *, authority: str, tenant: str) -> str:
        now = int(time.time())
        issuer = (
            f"{authority}/{AUTHORITY_TENANT}"
            if tenant == AUTHORITY_TENANT
            else f"{authority}/{principal.tenant_id}/v2.0"
        )
        claims = {
            "aud": client_id,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_S,
            "name": OPERATOR_DISPLAY_NAME,
            "oid": principal.object_id,
            "preferred_username": principal.name,
            "sub": principal.object_id,
            "tid": principal.tenant_id,
            "ver": "2.0",
        }
        header = {"typ": "JWT", "alg": "none"}
        return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}."
