"""The identity endpoint: tokens for the Function app's managed identity.

`ManagedIdentityCredential` (and so `DefaultAzureCredential`) finds an App Service identity through
`IDENTITY_ENDPOINT` and `IDENTITY_HEADER` and asks `GET {endpoint}?api-version=2019-08-01&resource=R`
with the `X-IDENTITY-HEADER` secret. The lab answers exactly that, issuing an opaque token bound to the
app's identity and to audience R; each emulated service then accepts it only for its own audience.
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
