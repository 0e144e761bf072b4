"""The emulated Key Vault `kv-ipc-fluxfleet`: secrets data plane, challenge auth, RBAC-ish access, events.

The vault holds the fleet's Flux Git credential (`flux-gitops-pat`), seeded from the read-only PAT the
devops service mints for the factory panels, and the image-automation runner's write credential
(`flux-gitops-automation-pat`), each with `exp` = the PAT's validTo. The app reads them with
`SecretClient` exactly as in Azure: the SDK's challenge policy first sends a bare request, gets 401 +
`WWW-Authenticate`, fetches a token for `https://vault.azure.net` and retries. Secret changes and the lab
clock raise Key Vault's Event Grid events.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from lab.core.events import TopicEvent
from lab.core.service import LabService, json_response, read_json
from lab.core.tokens import KEYVAULT_AUDIENCE, Principal
from lab.identity.entra import OPERATOR_CLIENT_ID
from lab.identity.service import APP_CLIENT_ID
from lab.keyvault import responses as actions
from lab.keyvault.errors import Forbidden, Unauthorized
from lab.keyvault.events import NEW_VERSION, ExpiryWatcher, secret_event
from lab.keyvault.models import KeyVaultBackend, SecretVersion
from lab.keyvault.responses import SecretResponses
from lab.keyvault.routes import add_secret_routes

if TYPE_CHECKING:
    from lab.server import Lab

VAULT_NAME: Final = "kv-ipc-fluxfleet"
RESOURCE_GROUP: Final = "rg-ipc-platform"
PAT_SECRET_NAME: Final = "flux-gitops-pat"
PAT_SCOPE: Final = "vso.code"
# The runner's credential: the image-automation controller pushes its commits with it (issue 15).
AUTOMATION_PAT_SECRET_NAME: Final = "flux-gitops-automation-pat"
AUTOMATION_PAT_SCOPE: Final = "vso.code_write"

ROLE_SECRETS_OFFICER: Final = "Key Vault Secrets Officer"
ROLE_SECRETS_USER: Final = "Key Vault Secrets User"
ROLE_ACTIONS: Final[dict[str, frozenset[str]]] = {
    ROLE_SECRETS_OFFICER: frozenset(
        {
            actions.ACTION_GET,
            actions.ACTION_READ_METADATA,
            actions.ACTION_SET,
            actions.ACTION_UPDATE,
            actions.ACTION_DELETE,
            actions.ACTION_READ_DELETED,
            actions.ACTION_RECOVER,
            actions.ACTION_PURGE,
        }
    ),
    ROLE_SECRETS_USER: frozenset({actions.ACTION_GET, actions.ACTION_READ_METADATA}),
}


def _unix_seconds(moment: object) -> int:
    """A PAT record's validTo (datetime or ISO-8601 text) as Key Vault's `exp`."""
    if isinstance(moment, datetime):
        return int(moment.timestamp())
    if isinstance(moment, str):
        return int(datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp())
    raise TypeError(f"validTo must be a datetime or ISO-8601 text, not {type(moment).__name__}")


class KeyVaultService(LabService):
    name = "keyvault"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.vault_name = VAULT_NAME
        self.vault_id = (
            f"/subscriptions/{lab.subscriptions[0]}/resourceGroups/{RESOURCE_GROUP}"
            f"/providers/Microsoft.KeyVault/vaults/{VAULT_NAME}"
        )
        self.backend = KeyVaultBackend(clock=lab.clock, on_new_version=self._new_version_created)
        self.watcher = ExpiryWatcher(backend=self.backend, clock=lab.clock, raise_event=self._raise_event)
        # Azure RBAC on the vault: the Function app's identity and the operator (any user) are Secrets
        # Officers; the control API can change that to exercise 403 paths.
        self.role_assignments: dict[str, str | None] = {
            lab.service("identity").app_identity.object_id: ROLE_SECRETS_OFFICER,
        }
        self.user_role: str | None = ROLE_SECRETS_OFFICER

    @property
    def vault_url(self) -> str:
        return self.endpoint

    # --- wiring -----------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        add_secret_routes(app, SecretResponses(self))

    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_get("/_lab/keyvault/roleAssignments", self._list_role_assignments)
        app.router.add_put("/_lab/keyvault/roleAssignments/{objectId}", self._put_role_assignment)

    async def start(self) -> None:
        self._seed()
        self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()

    def reset(self) -> None:
        self._seed()
        self.role_assignments = {self.lab.service("identity").app_identity.object_id: ROLE_SECRETS_OFFICER}
        self.user_role = ROLE_SECRETS_OFFICER
        self.watcher.reset()

    def _seed(self) -> None:
        """Both PATs as the operator stored them: text/plain, exp = the PAT's validTo, its id in tags."""
        self.backend.reset()
        devops: Any = self.lab.service("devops")  # starts and resets before the vault (SERVICE_MODULES)
        for name, record, token, scope in (
            (PAT_SECRET_NAME, devops.initial_fleet_pat_record, devops.initial_fleet_pat, PAT_SCOPE),
            (
                AUTOMATION_PAT_SECRET_NAME,
                devops.automation_pat_record,
                devops.automation_pat,
                AUTOMATION_PAT_SCOPE,
            ),
        ):
            self.backend.set_secret(
                name,
                value=token,
                content_type="text/plain",
                tags={"authorizationId": str(record.authorization_id), "scope": scope},
                expires=_unix_seconds(record.valid_to),
                notify=False,
            )

    # --- events ------------------------------------------------------------------------------------
    def _raise_event(self, event_type: str, version: SecretVersion) -> None:
        self.lab.events.publish(self._event(event_type, version))

    def _event(self, event_type: str, version: SecretVersion) -> TopicEvent:
        return secret_event(
            event_type=event_type,
            version=version,
            vault_url=self.vault_url,
            vault_name=self.vault_name,
            vault_id=self.vault_id,
            at=self.lab.clock.now(),
        )

    def _new_version_created(self, version: SecretVersion) -> None:
        self._raise_event(NEW_VERSION, version)
        self.watcher.poke()

    def secret_changed(self) -> None:
        """An update, delete or recover may move the next NearExpiry/Expired moment."""
        self.watcher.poke()

    # --- access -------------------------------------------------------------------------------------
    def challenge(self) -> str:
        # Key Vault names its authority `login.windows.net` (recorded responses, 2019-2022); the SDK takes
        # only the tenant from the path, so the host is cosmetic but kept as Azure sends it.
        return (
            f'Bearer authorization="https://login.windows.net/{self.lab.tenant_id}", '
            f'resource="{KEYVAULT_AUDIENCE}"'
        )

    def authenticate(self, authorization: str | None) -> Principal:
        principal = self.lab.tokens.authenticate(authorization, KEYVAULT_AUDIENCE)
        if principal is not None:
            return principal
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized.missing_token(challenge=self.challenge())
        resolved = self.lab.tokens.resolve(token.strip())
        if resolved is not None:
            raise Unauthorized.wrong_audience(
                challenge=self.challenge(), expected=KEYVAULT_AUDIENCE, found=resolved[1]
            )
        raise Unauthorized.invalid_token(challenge=self.challenge())

    def role_of(self, principal: Principal) -> str | None:
        if principal.object_id in self.role_assignments:
            return self.role_assignments[principal.object_id]
        return self.user_role if principal.kind == "user" else None

    def authorize(self, principal: Principal, action: str, *, resource: str) -> None:
        role = self.role_of(principal)
        if role is None or action not in ROLE_ACTIONS[role]:
            raise Forbidden.by_rbac(
                object_id=principal.object_id,
                app_id=self._app_id(principal),
                tenant_id=self.lab.tenant_id,
                action=action,
                resource=f"{self.vault_id}{resource}",
                vault_name=self.vault_name,
            )

    def _app_id(self, principal: Principal) -> str | None:
        """The `appid` claim Key Vault would see: the app's managed identity or the operator's CLI client."""
        if principal.object_id == self.lab.service("identity").app_identity.object_id:
            return APP_CLIENT_ID
        if principal.kind == "user":
            return OPERATOR_CLIENT_ID
        return None

    async def _list_role_assignments(self, _: web.Request) -> web.Response:
        return json_response(
            {
                "roleAssignments": self.role_assignments,
                "userRole": self.user_role,
                "roles": sorted(ROLE_ACTIONS),
            }
        )

    async def _put_role_assignment(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        role = body.get("role")
        if role is not None and role not in ROLE_ACTIONS:
            return json_response({"error": f"role must be null or one of {sorted(ROLE_ACTIONS)}"}, status=400)
        object_id = request.match_info["objectId"]
        if object_id == "users":  # the role every user principal (the operator) gets
            self.user_role = role
        else:
            self.role_assignments[object_id] = role
        return json_response({"objectId": object_id, "role": role})

    # --- lab.json and ground truth -----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "keyvault": {"url": self.vault_url, "name": self.vault_name, "id": self.vault_id},
            "endpoints": {"keyvault": self.vault_url},
            "env": {
                "FLUXFLEET_KEYVAULT_URL": self.vault_url,
                # An IP host cannot be a subdomain of vault.azure.net; only the lab turns this check off.
                "FLUXFLEET_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
                "FLUXFLEET_PAT_SECRET_NAME": PAT_SECRET_NAME,
                "FLUXFLEET_AUTOMATION_PAT_SECRET_NAME": AUTOMATION_PAT_SECRET_NAME,
            },
        }

    def ground_truth(self) -> dict[str, Any]:
        """Every secret version's attributes and value fingerprint; never a value."""
        secrets_view: dict[str, Any] = {}
        for record in self.backend.records():
            secrets_view[record.name] = {
                "deleted": record.deletion is not None,
                "currentVersion": record.latest.version,
                "versions": [
                    {
                        "version": v.version,
                        "enabled": v.attributes.enabled,
                        "nbf": v.attributes.not_before,
                        "exp": v.attributes.expires,
                        "created": v.attributes.created,
                        "updated": v.attributes.updated,
                        "contentType": v.content_type,
                        "tags": dict(v.tags),
                        "fingerprint": v.fingerprint,
                    }
                    for v in record.versions
                ],
            }
        return {"keyvault": {"url": self.vault_url, "id": self.vault_id, "secrets": secrets_view}}
