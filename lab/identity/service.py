"""The identity endpoint: tokens for the Function app's managed identity.

`ManagedIdentityCredential` (and so `DefaultAzureCredential`) finds an App Service identity through
`IDENTITY_ENDPOINT` and `IDENTITY_HEADER` and asks `GET {endpoint}?api-version=2019-08-01&resource=R`
with the `X-IDENTITY-HEADER` secret. The lab answers exactly that, issuing an opaque token bound to the
app's identity and to audience R; each emulated service then accepts it only for its own audience.

A request that names a user-assigned identity (`client_id`, `mi_res_id`, `object_id` or
`principal_id`, which MSAL sends when `AZURE_CLIENT_ID` or `identity_config` is set) must name the app's
own (system-assigned) identity by its client or object id: anything else gets App Service's 400 "No User
Assigned or Delegated Managed Identity found", the classic failure of a stray `AZURE_CLIENT_ID` in the
app settings.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lab.core.service import LabService, json_response
from lab.core.tokens import Principal

# Stable ids, so the lab's audit trail and docs can name them.
APP_IDENTITY = Principal(
    object_id="0f1eef1e-0000-4000-8000-00000000a001",
    kind="managedIdentity",
    name="fluxfleet-func",
    tenant_id="",  # filled from the lab's tenant
)
APP_CLIENT_ID = "0f1eef1e-0000-4000-8000-00000000c001"
# The query parameters that select a user-assigned identity on App Service's endpoint (MSAL's names plus
# `principal_id`, which App Service documents as an alias of `object_id`).
_IDENTITY_SELECTORS = ("client_id", "mi_res_id", "object_id", "principal_id")


class IdentityService(LabService):
    name = "identity"
    scheme = "http"  # App Service's identity endpoint is plain http on localhost

    def __init__(self, lab: Any) -> None:
        super().__init__(lab)
        self.app_identity = Principal(
            object_id=APP_IDENTITY.object_id,
            kind=APP_IDENTITY.kind,
            name=APP_IDENTITY.name,
            tenant_id=lab.tenant_id,
        )

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/msi/token", self.get_token)

    async def get_token(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != self.lab.identity_header:
            return json_response(
                {"statusCode": 401, "message": "Unauthorized: missing or wrong X-IDENTITY-HEADER."},
                status=401,
            )
        if request.query.get("api-version") != "2019-08-01":
            return json_response(
                {"statusCode": 400, "message": "api-version 2019-08-01 is required."}, status=400
            )
        resource = request.query.get("resource")
        if not resource:
            return json_response({"statusCode": 400, "message": "resource is required."}, status=400)
        if not self._selects_app_identity(request):
            return json_response(
                {
                    "statusCode": 400,
                    "message": "No User Assigned or Delegated Managed Identity found for specified "
                    "ClientId/ResourceId/PrincipalId.",
                },
                status=400,
            )
        token, expires_on = self.lab.tokens.issue(self.app_identity, resource)
        return json_response(
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": APP_CLIENT_ID,
            }
        )

    def _selects_app_identity(self, request: web.Request) -> bool:
        """True when no selector is given, or every given selector names the app's own identity."""
        own = {
            "client_id": APP_CLIENT_ID.lower(),
            "object_id": self.app_identity.object_id.lower(),
            "principal_id": self.app_identity.object_id.lower(),
        }
        for name in _IDENTITY_SELECTORS:
            value = request.query.get(name)
            if value is None:
                continue
            # `mi_res_id` names a user-assigned identity resource, and the app has none: never a match.
            if name == "mi_res_id" or value.lower() != own[name]:
                return False
        return True

    def describe(self) -> dict[str, Any]:
        url = f"{self.endpoint}/msi/token"
        return {
            "endpoints": {"identity": url},
            "app_identity": {
                "object_id": self.app_identity.object_id,
                "client_id": APP_CLIENT_ID,
                "name": self.app_identity.name,
            },
            "env": {"IDENTITY_ENDPOINT": url, "IDENTITY_HEADER": self.lab.identity_header},
        }
