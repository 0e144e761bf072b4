"""The `devops` lab service: dev.azure.com for one organization, project and Git repository.

It owns the real repository (seeded from the project's `kubernetes/` folder with the lab registry's
address in place of `ipcplatformacr.azurecr.io`), the organization's PAT store shared with `vssps`,
the organization's members (the operator user and the Function app's managed identity), and two PATs
the lab itself must hand out: the fleet's initial PAT (every panel starts with it) and the image
automation's write PAT. Other services use the Python API below; tests use the control routes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from aiohttp import web

from lab.core.clock import iso
from lab.core.service import LabService, json_response, read_json
from lab.devops.auth import DevOpsAuthenticator
from lab.devops.githttp import GitHttpBackend
from lab.devops.models import DEFAULT_BRANCH, GitRepositoryBackend, UnresolvableVersion
from lab.devops.pats import PatRecord, PatStore, scope_is_known
from lab.devops.responses import DevOpsResponses
from lab.devops.routes import add_devops_routes
from lab.identity.entra import operator_principal

if TYPE_CHECKING:
    from lab.core.tokens import Principal
    from lab.server import Lab

ORG = "ipc-org"
PROJECT = "IPC-Platform-Engineering"
REPOSITORY = "IPC-Platform-Engineering"
REGISTRY_PLACEHOLDER = "ipcplatformacr.azurecr.io"
SEED_AUTHOR = "fluxfleet lab <lab@fluxfleet.invalid>"
# The fleet's PAT outlives any test that does not advance the clock, and is young enough that a
# near-expiry warning (the app warns weeks ahead) can be reached with one clock jump.
INITIAL_FLEET_PAT_DAYS = 60
# The image automation's PAT is not what the tests rotate; it just must not expire during a run.
AUTOMATION_PAT_DAYS = 365
# A PAT minted through the control API without `days` lives as long as one made in the portal by default.
DEFAULT_CONTROL_PAT_DAYS = 30
_README = """# IPC-Platform-Engineering

The GitOps source of truth for the IPC edge fleet, as served by the fluxfleet lab.
Every panel's Flux configuration `ipc-platform-config` syncs `./kubernetes/workloads` from `main`.
"""


def _stable_id(kind: str, name: str) -> str:
    """Ids that stay the same across lab runs, so docs and fixtures can name them."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://fluxfleet.lab/{kind}/{name.lower()}"))


class DevOpsService(LabService):
    name = "devops"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.org = ORG
        self.project = PROJECT
        self.repository = REPOSITORY
        self.branch = DEFAULT_BRANCH
        self.org_id = _stable_id("org", ORG)
        self.project_id = _stable_id("project", PROJECT)
        self.repository_id = _stable_id("repository", REPOSITORY)
        self.repository_dir_name = f"{REPOSITORY}.git"
        self.created_at = lab.clock.now()
        self.pats = PatStore(lab.clock)
        self.operator: Principal = operator_principal(lab.tenant_id)
        self.members: dict[str, Principal] = {}
        git_root = lab.state_dir / "git"
        self.backend = GitRepositoryBackend(git_root / self.repository_dir_name)
        self.git_http = GitHttpBackend(git_root, home=lab.state_dir / "git-home")
        self.auth = DevOpsAuthenticator(
            org=ORG,
            pats=self.pats,
            tokens=lab.tokens,
            clock=lab.clock,
            tenant_id=lab.tenant_id,
            members=self.members,
        )
        self.responses = DevOpsResponses(self)
        self.initial_fleet_pat = ""
        self.automation_pat = ""
        self.initial_fleet_pat_record: PatRecord | None = None
        self.automation_pat_record: PatRecord | None = None

    # --- wiring -------------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        add_devops_routes(app, self.responses)

    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_get("/_lab/devops/commits", self._control_commits)
        app.router.add_post("/_lab/devops/files", self._control_files)
        app.router.add_post("/_lab/devops/pats", self._control_mint_pat)
        app.router.add_post("/_lab/devops/pats/{authorizationId}/revoke", self._control_revoke_pat)

    async def start(self) -> None:
        (self.lab.state_dir / "git-home").mkdir(parents=True, exist_ok=True)
        self.reset()

    def reset(self) -> None:
        self.members.clear()
        self.members[self.operator.object_id] = self.operator
        if "identity" in self.lab.services:
            identity: Principal = self.lab.service("identity").app_identity
            self.members[identity.object_id] = identity
        self.backend.seed(
            self._seed_files(),
            message="Seed the GitOps repository from kubernetes/",
            author=SEED_AUTHOR,
            when=self.lab.clock.now(),
        )
        self.git_http.invalidate()
        self.pats.reset()
        now = self.lab.clock.now()
        self.initial_fleet_pat, self.initial_fleet_pat_record = self.pats.mint(
            self.operator,
            "vso.code",
            now + timedelta(days=INITIAL_FLEET_PAT_DAYS),
            "flux-gitops (fleet)",
            ORG,
        )
        self.automation_pat, self.automation_pat_record = self.pats.mint(
            self.operator,
            "vso.code_write",
            now + timedelta(days=AUTOMATION_PAT_DAYS),
            "flux-image-automation",
            ORG,
        )

    def _seed_files(self) -> dict[str, bytes]:
        files = {"README.md": _README.encode()}
        source = self.lab.repo_root / "kubernetes"
        registry = self._registry_login_server().encode()
        if source.is_dir():
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                relative = path.relative_to(self.lab.repo_root).as_posix()
                files[relative] = path.read_bytes().replace(REGISTRY_PLACEHOLDER.encode(), registry)
        return files

    def _registry_login_server(self) -> str:
        """`host:port` of the lab ACR (bound before any service starts), or the placeholder without one."""
        if "acr" not in self.lab.services:
            return REGISTRY_PLACEHOLDER
        return urlparse(self.lab.endpoint("acr")).netloc

    # --- the Python API other services use ----------------------------------------------------------
    @property
    def org_url(self) -> str:
        return f"{self.endpoint}/{self.org}"

    @property
    def git_url(self) -> str:
        return f"{self.endpoint}/{self.org}/{self.project}/_git/{self.repository}"

    def head_commit(self, branch: str = DEFAULT_BRANCH) -> str:
        """The sha `branch` points at; `UnresolvableVersion` (a LookupError) for a missing branch."""
        return self.backend.head_commit(branch)

    def read_file(self, path: str, ref: str = DEFAULT_BRANCH) -> str | None:
        """A file's text at a branch or commit sha; None if the file does not exist there."""
        try:
            commit_id = self.backend.resolve_commit(ref, "branch")
        except UnresolvableVersion:
            commit_id = self.backend.resolve_commit(ref, "commit")
        data = self.backend.read_blob(path, commit_id)
        return None if data is None else data.decode("utf-8", errors="replace")

    def commit_files(self, files: dict[str, str | None], message: str, author: str) -> str:
        """Commit text files on `main` (None deletes); returns the new commit's sha."""
        sha = self.backend.commit_files(
            {p: None if t is None else t.encode() for p, t in files.items()},
            message=message,
            author=author,
            when=self.lab.clock.now(),
        )
        self.git_http.invalidate()
        return sha

    def can_push(self, token: str) -> bool:
        """Whether a PAT value may push to the repository now: active, this organization, a write scope.

        Ground truth asks this of every panel's held credential (`credential_can_push`), so tests can
        assert that no factory panel holds a credential that can push. The value is only hashed.
        """
        return self.pats.check(token, "vso.code_write", self.org) is not None

    def repository_size(self) -> int:
        path: Path = self.backend.path
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    # --- lab.json and state -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "endpoints": {"devops": self.endpoint},
            "git_url": self.git_url,
            "devops": {
                "org": self.org,
                "project": self.project,
                "repository": self.repository,
                "org_url": self.org_url,
                "branch": self.branch,
            },
            "env": {
                "FLUXFLEET_GIT_URL": self.git_url,
                "FLUXFLEET_GIT_HTTPS_USER": "git",
                "FLUXFLEET_GIT_BRANCH": self.branch,
                "FLUXFLEET_DEVOPS_ORG_URL": self.org_url,
                "FLUXFLEET_DEVOPS_PROJECT": self.project,
                "FLUXFLEET_DEVOPS_REPOSITORY": self.repository,
            },
        }

    def ground_truth(self) -> dict[str, Any]:
        return {
            "devops": {"head_commit": self.backend.head_commit(self.branch), "refs": self.backend.get_refs()},
            "pats": [
                {
                    "authorizationId": r.authorization_id,
                    "displayName": r.display_name,
                    "scope": r.scope,
                    "validTo": iso(r.valid_to),
                    "revoked": r.revoked,
                    "fingerprint": r.fingerprint,
                }
                for r in sorted(self.pats.list(), key=lambda r: r.valid_from)
            ],
        }

    # --- control routes -----------------------------------------------------------------------------
    async def _control_commits(self, request: web.Request) -> web.Response:
        branch = request.query.get("branch", self.branch)
        try:
            top = int(request.query.get("top", "20"))
            head = self.backend.head_commit(branch)
        except ValueError:
            return json_response({"error": "top must be an integer"}, status=400)
        except UnresolvableVersion:
            return json_response({"error": f"no branch {branch!r}"}, status=404)
        commits: list[dict[str, object]] = []
        for commit in self.backend.get_commits(head):
            if len(commits) >= top:
                break
            commits.append(
                {
                    "sha": commit.commit_id,
                    "message": commit.message,
                    "author": f"{commit.author_name} <{commit.author_email}>",
                    "time": iso(commit.author_time),
                    "changed_paths": [c.path.lstrip("/") for c in commit.changes],
                }
            )
        return json_response({"branch": branch, "commits": commits})

    async def _control_files(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        files = body.get("files")
        if (
            not isinstance(files, dict)
            or not files
            or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in files.items())
        ):
            return json_response(
                {"error": "files must be a non-empty object of path -> text or null"}, status=400
            )
        message = body.get("message") or "Change files through the lab control API"
        author = body.get("author") or SEED_AUTHOR
        if not isinstance(message, str) or not isinstance(author, str):
            return json_response({"error": "message and author must be strings"}, status=400)
        try:
            sha = self.commit_files(files, message, author)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response({"sha": sha, "branch": self.branch}, status=201)

    async def _control_mint_pat(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        scope = body.get("scope", "vso.code")
        days = body.get("days", DEFAULT_CONTROL_PAT_DAYS)
        if not isinstance(scope, str) or not scope_is_known(scope):
            return json_response({"error": f"unknown scope {scope!r}"}, status=400)
        if not isinstance(days, (int, float)) or isinstance(days, bool):
            return json_response({"error": "days must be a number"}, status=400)
        display_name = body.get("display_name") or f"lab-{scope}"
        org = None if body.get("all_orgs") else self.org
        valid_to: datetime = self.lab.clock.now() + timedelta(days=float(days))
        token, record = self.pats.mint(self.operator, scope, valid_to, str(display_name), org)
        return json_response(
            {"token": token, "authorizationId": record.authorization_id, "validTo": iso(record.valid_to)},
            status=201,
        )

    async def _control_revoke_pat(self, request: web.Request) -> web.Response:
        record = self.pats.revoke(request.match_info["authorizationId"])
        if record is None:
            return json_response({"error": "no such PAT"}, status=404)
        return json_response({"authorizationId": record.authorization_id, "revoked": True})
