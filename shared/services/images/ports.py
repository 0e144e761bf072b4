"""The ports of the image checks: what the verdict and follow-up need from the outside world.

Each is the smallest interface the logic needs, so unit tests use in-memory fakes and the adapters
(`shared.adapters.repo_reader`, `.registry`, `.image_store`, the fleet reader) are the only code
that knows Azure DevOps, ACR, Table/Queue storage or ARM. Every method is keyword-only I/O that
raises the app's own errors (`shared.errors`), never an SDK's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict

from shared.services.images import FOLLOW_UP_QUEUE
from shared.services.images.model import CheckId, CheckRecord, CommitId, PanelReport, split_check_id

__all__ = ["FOLLOW_UP_QUEUE"]  # re-exported: the follow-up queue's name, with the message format below


@dataclass(frozen=True)
class RepoFile:
    """A file (blob) in a commit: repo-relative path without a leading `/`, and its Git object id."""

    path: str
    object_id: str


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


@dataclass(frozen=True)
class StoredCheck:
    record: CheckRecord
    etag: str


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


class FollowUpMessage(TypedDict):
    """The follow-up queue's message: which check, and which attempt this delivery is."""

    checkId: str
    attempt: int


def parse_follow_up_message(body: str) -> FollowUpMessage:
    """A follow-up message as the queue trigger receives it; `ValueError` when it is not one."""
    raw = json.loads(body)
    if not isinstance(raw, dict):
        raise ValueError("a follow-up message is a JSON object")
    check_id, attempt = raw.get("checkId"), raw.get("attempt")
    if not isinstance(check_id, str) or split_check_id(check_id) is None:
        raise ValueError("checkId is missing or malformed")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise ValueError("attempt must be a positive integer")
    return {"checkId": check_id, "attempt": attempt}


class FollowUpQueue(Protocol):
    def schedule(self, *, check_id: CheckId, attempt: int, delay_s: float) -> None:
        """Deliver a follow-up message for `check_id` after `delay_s` seconds."""
        ...


class PanelReports(Protocol):
    """What every panel reports (ARM connectedClusters and their Flux configuration)."""

    def panel_reports(self) -> Sequence[PanelReport]: ...


class Notifier(Protocol):
    """The team's Teams/Slack webhook (`shared.adapters.notifier`, shared with credential warnings)."""

    def notify(self, *, title: str, text: str, level: str, facts: dict[str, str]) -> None: ...
