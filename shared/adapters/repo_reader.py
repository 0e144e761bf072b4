"""The GitOps repository through the Azure DevOps Git REST API (`azure-devops` GitClient).

The Function app reads the repository with its own Entra identity (a managed identity that is a
member of the organization), never with the panels' PAT: a bearer token for Azure DevOps'
resource id `499b84ac-1321-427f-aa17-267ca6975798`. The `azure-devops` SDK takes that token as a
static value (`BasicTokenAuthentication`), so the connection is rebuilt when the token is within
`TOKEN_REFRESH_MARGIN_S` of its expiry (Entra tokens live about an hour).

The SDK (msrest) reports errors without their HTTP status, so a response hook keeps the last status
of each thread's request and `_map_error` turns the SDK's exceptions into the app's own
(`shared.errors`): 401 → Unauthorized, 404 → NotFound, 429/5xx and connection failures → transient.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from shared.errors import (
    FluxfleetError,
    Forbidden,
    NotFound,
    PermanentError,
    Throttled,
    TransientError,
    Unauthorized,
    safe_text,
)
from shared.models.images import CommitId, RepoFile

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger("fluxfleet.adapters.repo_reader")

# Azure DevOps' Entra resource id; `/.default` asks for the permissions the identity was granted.
DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
# Rebuild the connection this long before the token expires, so no request carries a stale token.
TOKEN_REFRESH_MARGIN_S = 300
# Connect and read timeouts (seconds) for each REST call: a hung call must not eat a function's time.
REQUEST_TIMEOUT_S = 30
_HTTP_STATUS_NOT_FOUND = 404
_HTTP_STATUS_UNAUTHORIZED = 401
_HTTP_STATUS_FORBIDDEN = 403
_HTTP_STATUS_THROTTLED = 429
_HTTP_STATUS_SERVER_ERROR = 500

T = TypeVar("T")


class DevOpsRepoReader:
    """A `RepoReader` over one Azure DevOps repository; safe to share between threads."""

    def __init__(
        self,
        *,
        org_url: str,
        project: str,
        repository: str,
        credential: TokenCredential,
        scope: str = DEVOPS_SCOPE,
    ) -> None:
        self._org_url = org_url.rstrip("/")
        self._project = project
        self._repository = repository
        self._credential = credential
        self._scope = scope
        self._lock = threading.Lock()
        self._client: Any = None
        self._expires_on = 0.0
        self._status = threading.local()

    # --- RepoReader -------------------------------------------------------------------------------
    def head_commit(self, *, branch: str) -> CommitId:
        refs = self._call(
            f"GET refs heads/{branch}",
            lambda git: git.get_refs(self._repository, project=self._project, filter=f"heads/{branch}"),
        )
        wanted = f"refs/heads/{branch}"
        for ref in refs or ():
            if ref.name == wanted and ref.object_id:
                return CommitId(str(ref.object_id))
        raise NotFound(f"branch {branch} does not exist in {self._repository}")

    def list_files(self, *, commit: CommitId) -> Sequence[RepoFile]:
        from azure.devops.v7_1.git.models import GitVersionDescriptor

        version = GitVersionDescriptor(version=commit, version_type="commit")
        items = self._call(
            f"GET items at {commit[:12]}",
            lambda git: git.get_items(
                self._repository,
                project=self._project,
                scope_path="/",
                recursion_level="Full",
                version_descriptor=version,
            ),
        )
        return [
            RepoFile(path=str(item.path).lstrip("/"), object_id=str(item.object_id))
            for item in items or ()
            if not item.is_folder and (item.git_object_type or "blob").lower() == "blob"
        ]

    def read_file(self, *, path: str, commit: CommitId) -> str:
        from azure.devops.v7_1.git.models import GitVersionDescriptor

        version = GitVersionDescriptor(version=commit, version_type="commit")
        chunks = self._call(
            f"GET item {path} at {commit[:12]}",
            lambda git: b"".join(
                git.get_item_content(
                    self._repository,
                    "/" + path.lstrip("/"),
                    project=self._project,
                    version_descriptor=version,
                )
            ),
        )
        return bytes(chunks).decode("utf-8", errors="replace")

    def recent_commits(self, *, branch: str, top: int, path: str | None = None) -> Sequence[CommitId]:
        from azure.devops.v7_1.git.models import GitQueryCommitsCriteria, GitVersionDescriptor

        criteria = GitQueryCommitsCriteria(
            item_version=GitVersionDescriptor(version=branch, version_type="branch"),
            item_path="/" + path.lstrip("/") if path else None,
            top=top,
        )
        commits = self._call(
            f"GET commits of {branch}",
            lambda git: git.get_commits(self._repository, criteria, project=self._project, top=top),
        )
        return [CommitId(str(commit.commit_id)) for commit in commits or ()]

    # --- plumbing ---------------------------------------------------------------------------------
    def _git(self) -> Any:
        with self._lock:
            if self._client is None or time.time() > self._expires_on - TOKEN_REFRESH_MARGIN_S:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        from azure.devops.connection import Connection
        from msrest.authentication import BasicTokenAuthentication

        try:
            token = self._credential.get_token(self._scope)
        except Exception as exc:
            from shared.errors import from_azure_error

            raise from_azure_error(exc, what="get an Azure DevOps token") from exc
        self._expires_on = float(token.expires_on)
        connection = Connection(
            base_url=self._org_url, creds=BasicTokenAuthentication({"access_token": token.token})
        )
        git = self._resolve(connection.clients_v7_1.get_git_client, "discover the Git API")
        git.config.connection.timeout = REQUEST_TIMEOUT_S
        git.config.hooks.append(self._remember_status)
        return git

    def _remember_status(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._status.value = getattr(response, "status_code", None)

    def _call(self, what: str, operation: Callable[[Any], T]) -> T:
        git = self._git()
        return self._resolve(lambda: operation(git), what)

    def _resolve(self, operation: Callable[[], T], what: str) -> T:
        self._status.value = None
        try:
            return operation()
        except FluxfleetError:
            raise
        except Exception as exc:
            raise self._map_error(exc, what) from exc

    def _map_error(self, exc: Exception, what: str) -> FluxfleetError:
        from azure.devops.exceptions import AzureDevOpsAuthenticationError, AzureDevOpsServiceError

        status = getattr(self._status, "value", None)
        detail = f"Azure DevOps {what}: {safe_text(getattr(exc, 'message', None) or exc)}"
        type_key = str(getattr(exc, "type_key", "") or "")
        if isinstance(exc, AzureDevOpsAuthenticationError) or status == _HTTP_STATUS_UNAUTHORIZED:
            with self._lock:
                self._client = None  # a revoked or expired token: get a fresh one next time
            return Unauthorized(detail)
        if status == _HTTP_STATUS_FORBIDDEN:
            return Forbidden(detail)
        if status == _HTTP_STATUS_NOT_FOUND or "NotFound" in type_key:
            return NotFound(detail)
        if status == _HTTP_STATUS_THROTTLED:
            return Throttled(detail)
        if status is not None and status >= _HTTP_STATUS_SERVER_ERROR:
            return TransientError(detail)
        if isinstance(exc, AzureDevOpsServiceError) or status is not None:
            return PermanentError(detail)
        # No HTTP answer at all (msrest's ClientRequestError wraps connection errors and timeouts).
        return TransientError(detail)
