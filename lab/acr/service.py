"""The emulated registry `ipcplatformacr`: data plane for `azure-containerregistry`, pushes and ImagePushed.

The app lists tags to answer "will this image roll out?"; the image-automation simulator reads the same tags
through `list_tags`. Images are named by the lab's login server (`127.0.0.1:PORT`), which is what the lab's
Git repository uses in place of `ipcplatformacr.azurecr.io`. A push (control API or `push()`) moves a tag and
publishes `Microsoft.ContainerRegistry.ImagePushed` to the registry's system topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from lab.acr.errors import AcrError, AuthenticationError
from lab.acr.events import image_pushed
from lab.acr.models import RegistryBackend
from lab.acr.responses import RegistryResponses
from lab.acr.routes import add_registry_routes
from lab.acr.seed import seed_registry
from lab.acr.tokens import AcrTokenIssuer, ScopeGrant
from lab.core.events import TopicEvent
from lab.core.service import LabService, json_response, read_json
from lab.core.tokens import ACR_AUDIENCE, ARM_AUDIENCE, Principal, PrincipalKind, normalise_audience

if TYPE_CHECKING:
    from lab.server import Lab

REGISTRY_NAME: Final = "ipcplatformacr"
RESOURCE_GROUP: Final = "rg-ipc-platform"
# ACR accepts Entra tokens for its own audience and, as `az acr login` uses, for ARM's.
ACCEPTED_AUDIENCES: Final = frozenset({normalise_audience(ACR_AUDIENCE), normalise_audience(ARM_AUDIENCE)})

# Built-in ACR roles, as the actions a token may carry. `registry:catalog:*` (list repositories) comes
# with both: the lab does not model ACR's repository-scoped (ABAC) permissions.
ROLE_ACR_PULL: Final = "AcrPull"
ROLE_ACR_PUSH: Final = "AcrPush"
ROLE_ACTIONS: Final[dict[str, dict[str, frozenset[str]]]] = {
    ROLE_ACR_PULL: {"repository": frozenset({"pull", "metadata_read"}), "registry": frozenset({"*"})},
    ROLE_ACR_PUSH: {
        "repository": frozenset({"pull", "push", "metadata_read", "metadata_write"}),
        "registry": frozenset({"*"}),
    },
}


class AcrService(LabService):
    name = "acr"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.registry_name = REGISTRY_NAME
        self.registry_id = (
            f"/subscriptions/{lab.subscriptions[0]}/resourceGroups/{RESOURCE_GROUP}"
            f"/providers/Microsoft.ContainerRegistry/registries/{REGISTRY_NAME}"
        )
        self.tenant = lab.tenant_id
        self.backend = RegistryBackend(clock=lab.clock)
        self._issuer: AcrTokenIssuer | None = None
        self.role_assignments: dict[str, str | None] = self._default_roles()
        self.user_role: str | None = ROLE_ACR_PUSH  # the operator pushes
        # Refresh tokens carry only the object id; the kind (user or not) is remembered at the exchange.
        self._principal_kinds: dict[str, PrincipalKind] = {}

    def _default_roles(self) -> dict[str, str | None]:
        # The Function app's managed identity has AcrPull on the registry.
        return {self.lab.service("identity").app_identity.object_id: ROLE_ACR_PULL}

    @property
    def login_server(self) -> str:
        """`127.0.0.1:PORT`: the registry host in image names (known once the listener is bound)."""
        return urlsplit(self.endpoint).netloc

    @property
    def issuer(self) -> AcrTokenIssuer:
        if self._issuer is None:
            self._issuer = AcrTokenIssuer(service=self.login_server)
        return self._issuer

    # --- wiring -----------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        add_registry_routes(app, RegistryResponses(self))

    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_post("/_lab/acr/push", self._control_push)
        app.router.add_get("/_lab/acr/repositories", self._control_repositories)
        app.router.add_put("/_lab/acr/roleAssignments/{objectId}", self._control_role_assignment)

    async def start(self) -> None:
        self._seed()

    def reset(self) -> None:
        self._seed()
        self.role_assignments = self._default_roles()
        self.user_role = ROLE_ACR_PUSH

    def _seed(self) -> None:
        self.backend.reset()
        seed_registry(
            self.backend, kubernetes_root=self.lab.repo_root / "kubernetes", now=self.lab.clock.now()
        )

    # --- the Python contract other lab services use ----------------------------------------------------
    def list_tags(self, repository: str) -> list[str]:
        """Tag names of `repository` (by name), or [] if it does not exist."""
        if repository not in self.backend.get_repositories():
            return []
        return [tag.name for tag in self.backend.get_tags(repository)]

    def tag_digest(self, repository: str, tag: str) -> str | None:
        """The digest `repository:tag` points at, or None if either does not exist."""
        try:
            return self.backend.get_tag_properties(repository, tag).digest
        except AcrError:
            return None

    def push(self, repository: str, tag: str, digest: str | None = None) -> TopicEvent:
        """Push (or move) `repository:tag` and publish ImagePushed; returns the published event."""
        pushed_tag, manifest = self.backend.push(repository, tag, digest=digest)
        event = image_pushed(
            registry_id=self.registry_id,
            login_server=self.login_server,
            repository=repository,
            tag=pushed_tag,
            manifest=manifest,
            at=pushed_tag.updated,
        )
        self.lab.events.publish(event)
        return event

    # --- access -------------------------------------------------------------------------------------
    def entra_principal(self, access_token: str) -> Principal:
        """The principal behind the Entra token posted to /oauth2/exchange (ACR or ARM audience)."""
        resolved = self.lab.tokens.resolve(access_token) if access_token else None
        if resolved is None or resolved[1] not in ACCEPTED_AUDIENCES:
            raise AuthenticationError("the access token is invalid, expired or not issued for this registry")
        principal = resolved[0]
        self._principal_kinds[principal.object_id] = principal.kind
        return principal

    def role_of(self, object_id: str) -> str | None:
        if object_id in self.role_assignments:
            return self.role_assignments[object_id]
        return self.user_role if self._principal_kinds.get(object_id) == "user" else None

    def grant(self, subject: str, requested: Iterable[ScopeGrant]) -> list[ScopeGrant]:
        """What of `requested` the subject's role allows (ACR grants the intersection, possibly nothing)."""
        allowed = ROLE_ACTIONS.get(self.role_of(subject) or "", {})
        granted = []
        for scope in requested:
            permitted = allowed.get(scope.type, frozenset())
            actions = permitted if "*" in scope.actions else scope.actions & permitted
            if actions:
                granted.append(ScopeGrant(scope.type, scope.name, frozenset(actions)))
        return granted

    # --- control API -------------------------------------------------------------------------------
    async def _control_push(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        repository, tag, digest = body.get("repository"), body.get("tag"), body.get("digest")
        if not isinstance(repository, str) or not repository or not isinstance(tag, str) or not tag:
            return json_response({"error": "repository and tag are required strings"}, status=400)
        if digest is not None and not (isinstance(digest, str) and digest.startswith("sha256:")):
            return json_response({"error": "digest must be a sha256:<hex> string"}, status=400)
        event = self.push(repository, tag, digest)
        return json_response(
            {
                "eventId": event.id,
                "repository": repository,
                "tag": tag,
                "digest": event.data["target"]["digest"],
            },
            status=201,
        )

    async def _control_repositories(self, _: web.Request) -> web.Response:
        return json_response({"repositories": self._tags_by_repository()})

    async def _control_role_assignment(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        role = body.get("role")
        if role is not None and role not in ROLE_ACTIONS:
            return json_response({"error": f"role must be null or one of {sorted(ROLE_ACTIONS)}"}, status=400)
        object_id = request.match_info["objectId"]
        if object_id == "users":
            self.user_role = role
        else:
            self.role_assignments[object_id] = role
        return json_response({"objectId": object_id, "role": role})

    def _tags_by_repository(self) -> dict[str, dict[str, str]]:
        return {
            name: {tag.name: tag.digest for tag in self.backend.get_tags(name)}
            for name in self.backend.get_repositories()
        }

    # --- lab.json and ground truth -----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "acr_login_server": self.login_server,
            "acr": {
                "endpoint": self.endpoint,
                "login_server": self.login_server,
                "name": self.registry_name,
                "id": self.registry_id,
                "audience": ACR_AUDIENCE,
            },
            "endpoints": {"acr": self.endpoint},
            "env": {
                "FLUXFLEET_ACR_ENDPOINT": self.endpoint,
                "FLUXFLEET_ACR_LOGIN_SERVER": self.login_server,
                "FLUXFLEET_ACR_AUDIENCE": ACR_AUDIENCE,
            },
        }

    def ground_truth(self) -> dict[str, Any]:
        return {
            "acr": {
                "login_server": self.login_server,
                "id": self.registry_id,
                "repositories": self._tags_by_repository(),
            }
        }
