"""The ports of the image checks: what the verdict and follow-up need from the outside world.

Each is the smallest interface the logic needs, so unit tests use in-memory fakes and the adapters
(`shared.adapters.repo_reader`, `.registry`, `.image_store`, the fleet reader) are the only code
that knows Azure DevOps, ACR, Table/Queue storage or ARM. Every method is keyword-only I/O that
raises the app's own errors (`shared.errors`), never an SDK's. The values they exchange are in
`shared.models.images`; the notifier is the app's one `shared.ports.Notifier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.models.images import CheckId, CheckRecord, CommitId, PanelReport, RepoFile, StoredCheck


class RepoReader(Protocol):
    """The GitOps repository (Azure DevOps Git)."""

    def head_commit(self, *, branch: str) -> CommitId:
        """The commit `branch` points at now."""
        ...

    def list_files(self, *, commit: CommitId) -> Sequence[RepoFile]:
        """Every file (not folder) in the tree of `commit`."""
        ...

    def read_file(self, *, path: str, commit: CommitId) -> str:
        """The text of `path` at `commit`."""
        ...

    def recent_commits(self, *, branch: str, top: int, path: str | None = None) -> Sequence[CommitId]:
        """Up to `top` commits of `branch`'s history, newest first; only those touching `path` if given."""
        ...


class TagLister(Protocol):
    """The container registry (ACR)."""

    def list_tags(self, *, repository: str) -> Sequence[str]:
        """Every tag of `repository` (registry-relative, e.g. `ipc/opcua-gateway`)."""
        ...


class CheckStore(Protocol):
    """Checks (Table storage). A push check's id derives from its event id, so storing it is also
    what recognises a redelivered event: `create_check` is insert-only."""

    def create_check(self, *, record: CheckRecord, image: str) -> StoredCheck | None:
        """Insert a new check; None when stored, the existing check when one with that id exists."""
        ...

    def delete_check(self, *, check_id: CheckId) -> None:
        """Remove a check whose side effects failed, so the event's redelivery starts afresh."""
        ...

    def get_check(self, *, check_id: CheckId) -> StoredCheck | None: ...

    def update_check(self, *, record: CheckRecord, image: str, etag: str) -> None:
        """Replace a check only if unchanged since read; `Conflict` when another writer won."""
        ...

    def list_checks(self, *, image: str, tag: str | None, limit: int) -> Sequence[CheckRecord]:
        """Checks of an image (and tag), newest first."""
        ...


class FollowUpQueue(Protocol):
    def schedule(self, *, check_id: CheckId, attempt: int, delay_s: float) -> None:
        """Deliver a follow-up message for `check_id` after `delay_s` seconds."""
        ...


class PanelReports(Protocol):
    """What every factory panel reports (ARM connectedClusters and their Flux configuration)."""

    def panel_reports(self) -> Sequence[PanelReport]:
        """The factory panels only: the image-automation runner is where commits come from, not a
        panel the workloads roll out to."""
        ...

    def runner_names(self) -> Sequence[str]:
        """The image-automation runners by tag (there should be exactly one)."""
        ...
