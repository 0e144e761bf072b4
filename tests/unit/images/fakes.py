"""In-memory fakes of the image checks' ports, and the GitOps repository content to start from.

The fakes keep the behaviour the service relies on (a Git history with commits, an insert-only
store that only one caller wins, ETag-checked updates) and nothing else; they never imitate an SDK.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shared.config import Settings
from shared.container import Container, set_container
from shared.errors import Conflict, NotFound
from shared.models.images import CheckId, CheckRecord, CommitId, PanelReport
from shared.services.images.ports import RepoFile, StoredCheck
from shared.services.images.service import ImageCheckConfig, ImageChecks
from tests.unit.fakes import RecordingNotifier

REPO_ROOT = Path(__file__).resolve().parents[3]
LOGIN_SERVER = "ipcplatformacr.azurecr.io"
GATEWAY_IMAGE = f"{LOGIN_SERVER}/ipc/opcua-gateway"
GATEWAY_DEPLOYMENT = "kubernetes/workloads/opcua-gateway/deployment.yaml"
POLICIES = "kubernetes/flux-system/image-automation/image-policies.yaml"
REPOSITORIES = "kubernetes/flux-system/image-automation/image-repositories.yaml"
AUTOMATION = "kubernetes/flux-system/image-automation/image-update-automation.yaml"
T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


def seed_files() -> dict[str, str]:
    """The project's own `kubernetes/` folder, as the lab seeds its Git repository."""
    root = REPO_ROOT / "kubernetes"
    return {
        path.relative_to(REPO_ROOT).as_posix(): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@dataclass
class FakeRepo:
    """A linear Git history on one branch; every commit is a full tree."""

    branch: str = "main"
    commits: list[tuple[CommitId, dict[str, str]]] = field(default_factory=list)
    reads: int = 0

    def commit(self, files: dict[str, str | None]) -> CommitId:
        tree = dict(self.commits[-1][1]) if self.commits else {}
        for path, text in files.items():
            if text is None:
                tree.pop(path, None)
            else:
                tree[path] = text
        sha = CommitId(hashlib.sha1(f"{len(self.commits)}{sorted(tree.items())}".encode()).hexdigest())  # noqa: S324
        self.commits.append((sha, tree))
        return sha

    def tree(self, commit: CommitId) -> dict[str, str]:
        for sha, tree in self.commits:
            if sha == commit:
                return tree
        raise NotFound(f"no commit {commit}")

    @property
    def head(self) -> CommitId:
        return self.commits[-1][0]

    def head_commit(self, *, branch: str) -> CommitId:
        return self.head

    def list_files(self, *, commit: CommitId) -> Sequence[RepoFile]:
        return [
            RepoFile(path, hashlib.sha1(text.encode()).hexdigest())  # noqa: S324 - Git object ids are SHA-1
            for path, text in self.tree(commit).items()
        ]

    def read_file(self, *, path: str, commit: CommitId) -> str:
        self.reads += 1
        tree = self.tree(commit)
        if path not in tree:
            raise NotFound(f"{path} not in {commit}")
        return tree[path]

    def recent_commits(self, *, branch: str, top: int, path: str | None = None) -> Sequence[CommitId]:
        result: list[CommitId] = []
        previous: dict[str, str] = {}
        touching: list[CommitId] = []
        for sha, tree in self.commits:
            if path is None or tree.get(path) != previous.get(path):
                touching.append(sha)
            previous = tree
        result = list(reversed(touching))
        return result[:top]


@dataclass
class FakeRegistry:
    tags: dict[str, list[str]] = field(default_factory=dict)
    calls: int = 0

    def list_tags(self, *, repository: str) -> Sequence[str]:
        self.calls += 1
        if repository not in self.tags:
            raise NotFound(f"repository {repository} not found")
        return list(self.tags[repository])


@dataclass
class FakeStore:
    checks: dict[CheckId, tuple[CheckRecord, str]] = field(default_factory=dict)
    etags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def create_check(self, *, record: CheckRecord, image: str) -> StoredCheck | None:
        if record.id in self.checks:
            return self.get_check(check_id=record.id)
        self.checks[record.id] = (record, str(next(self.etags)))
        return None

    def delete_check(self, *, check_id: CheckId) -> None:
        self.checks.pop(check_id, None)

    def get_check(self, *, check_id: CheckId) -> StoredCheck | None:
        if check_id not in self.checks:
            return None
        record, etag = self.checks[check_id]
        return StoredCheck(record, etag)

    def update_check(self, *, record: CheckRecord, image: str, etag: str) -> None:
        if self.checks[record.id][1] != etag:
            raise Conflict("etag mismatch")
        self.checks[record.id] = (record, str(next(self.etags)))

    def list_checks(self, *, image: str, tag: str | None, limit: int) -> Sequence[CheckRecord]:
        found = [record for record, _ in self.checks.values() if tag is None or record.verdict.ref.tag == tag]
        return sorted(found, key=lambda record: record.created_at, reverse=True)[:limit]


@dataclass
class FakeQueue:
    messages: list[tuple[CheckId, int, float]] = field(default_factory=list)

    def schedule(self, *, check_id: CheckId, attempt: int, delay_s: float) -> None:
        self.messages.append((check_id, attempt, delay_s))


@dataclass
class FakePanels:
    reports: list[PanelReport] = field(default_factory=list)
    runners: list[str] = field(default_factory=list)

    def panel_reports(self) -> Sequence[PanelReport]:
        return list(self.reports)

    def runner_names(self) -> Sequence[str]:
        return list(self.runners)


@dataclass
class HandlerWorld:
    """The image checks over fakes, installed in the worker's container (for handler tests)."""

    repo: FakeRepo
    registry: FakeRegistry
    store: FakeStore
    queue: FakeQueue
    notifier: RecordingNotifier
    service: ImageChecks


@contextlib.contextmanager
def handler_world() -> Iterator[HandlerWorld]:
    settings = Settings.from_env({"FLUXFLEET_ACR_LOGIN_SERVER": LOGIN_SERVER})
    repo = FakeRepo()
    repo.commit(dict(seed_files()))
    registry = FakeRegistry({"ipc/opcua-gateway": ["v1.0.0", "v1.4.2"]})
    store, queue, notifier = FakeStore(), FakeQueue(), RecordingNotifier()
    with ThreadPoolExecutor(max_workers=4) as executor:
        service = ImageChecks(
            reader=repo,
            registry=registry,
            store=store,
            follow_ups=queue,
            panels=FakePanels(),
            notifier=notifier,
            config=ImageCheckConfig(login_server=LOGIN_SERVER),
            executor=executor,
        )
        set_container(Container(settings, images=service))
        try:
            yield HandlerWorld(repo, registry, store, queue, notifier, service)
        finally:
            set_container(None)
