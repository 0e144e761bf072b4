"""A real Git fetch over smart HTTP, the way Flux's source-controller does one on every sync.

The agent's honesty rests on this module: a panel's credential is judged by the lab's Git server,
not by the simulator. Each fetch performs ref discovery (`GET info/refs?service=git-upload-pack`
with the panel's Basic or Bearer credential) and, when the branch moved, a real upload-pack request
for the new commit, using dulwich's HTTP client (no hand-written protocol). The commit's files (read
from the fetched objects) come back with the result, because the agent builds the kustomizations
from them (`lab.fleet.apply`); they are kept per commit, so a panel that already holds a revision
needs only ref discovery, and a revision recorded without its files (the seed sync after a reset) is
fetched for real at the next sync.

Dulwich is blocking, so fetches run on a small dedicated thread pool. It is dedicated rather than the
loop's default executor on purpose: the Git server answering these requests lives in the same
process and may itself need the default executor; agents waiting on it from that executor could
starve it.

`Fetcher` is the port the agents depend on, so unit tests of the agent state machine can pass a fake.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import urllib3
from dulwich.client import HTTPUnauthorized, Urllib3HttpGitClient
from dulwich.errors import GitProtocolError, NotGitRepository
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import MemoryRepo

from lab.fleet.kustomize import RepoTree

# Fetches in flight at once: enough to keep a 10,000-panel fleet's ~33 syncs/s flowing at
# time-scale 1 without letting the agents crowd the lab's one event loop.
DEFAULT_FETCH_CONCURRENCY = 8
# source-controller's default `timeout` for a Git operation is 60 s; the lab's server is local, so a
# quarter of that is already generous and keeps a wedged fetch from holding a slot for long.
FETCH_TIMEOUT_S = 15.0
# What the agent sends as User-Agent, so the Git server's logs tell agent traffic from the app's.
AGENT_USER_AGENT = "go-git/5.x (fluxfleet lab Flux agent)"
# Flux's Git client (go-git) speaks only protocol v0/v1: ref discovery is the one `info/refs` GET
# (no v2 `ls-refs` POST), which is also what lets the Git server answer it from its cache.
GIT_PROTOCOL_VERSION = 0
# Flux reports the default branch as `master` when a GitRepository names no ref.
DEFAULT_BRANCH = "master"
# Commits whose files the fetcher keeps (a GitOps repository is tens of kilobytes): enough for every
# revision a test or the demo moves through, bounded so a long image-automation run cannot grow it.
TREE_CACHE_REVISIONS = 256
# Git's file modes (tree entries): what is a folder, and what a regular file whose blob kustomize reads.
_MODE_TYPE_MASK = 0o170000
_MODE_DIRECTORY = 0o040000
_MODE_REGULAR_FILE = 0o100000


@dataclass(frozen=True)
class GitCredentials:
    """Basic (httpsUser + PAT) or Bearer (workload identity); the secret never leaves this value."""

    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None

    def __repr__(self) -> str:  # never let a PAT reach a log line through a repr
        return f"GitCredentials(username={self.username!r}, password=***, bearer_token=***)"


@dataclass(frozen=True)
class FetchRequest:
    url: str
    credentials: GitCredentials
    branch: str | None = DEFAULT_BRANCH
    tag: str | None = None
    have_revision: str | None = None  # what the panel already holds: no pack is fetched for it


@dataclass(frozen=True)
class FetchResult:
    ok: bool
    revision: str | None = None
    error: str | None = None  # Flux's wording, never a secret
    auth_failed: bool = False
    tree_dirs: frozenset[str] | None = None  # directories at `revision`; None when not known
    tree: RepoTree | None = None  # the files at `revision` (what kustomize builds); None when not known


class Fetcher(Protocol):
    async def fetch(self, request: FetchRequest) -> FetchResult: ...


def redact_url(url: str) -> str:
    """The URL as Flux prints it: without any userinfo."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def clone_error(url: str, reason: str) -> str:
    """source-controller's message when checkout fails (GitOperationFailed)."""
    return f"failed to checkout and determine revision: unable to clone '{redact_url(url)}': {reason}"


def normalise_path(path: str) -> str:
    """A kustomization path as a tree path: `./kubernetes/workloads/` -> `kubernetes/workloads`."""
    cleaned = path.strip().removeprefix("./").strip("/")
    return "" if cleaned in ("", ".") else cleaned


class _BearerHttpGitClient(Urllib3HttpGitClient):
    """Dulwich's HTTP client with `Authorization: Bearer`, as Flux sends for `provider: Azure`."""

    def __init__(self, base_url: str, *, bearer_token: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._bearer_token = bearer_token

    def _http_request(
        self, url: str, headers: dict[str, str] | None = None, data: Any = None, raise_for_status: bool = True
    ) -> Any:
        merged = dict(headers or {})
        merged["Authorization"] = f"Bearer {self._bearer_token}"
        return super()._http_request(url, merged, data, raise_for_status)


class DulwichFetcher:
    """Fetches with dulwich's smart-HTTP client on a dedicated, bounded thread pool."""

    def __init__(self, *, ca_bundle: Path, concurrency: int = DEFAULT_FETCH_CONCURRENCY) -> None:
        self._semaphore = asyncio.Semaphore(concurrency)
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="lab-agent-fetch")
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=concurrency,
            ca_certs=str(ca_bundle),
            cert_reqs="CERT_REQUIRED",
            headers={"User-Agent": AGENT_USER_AGENT},
            timeout=urllib3.Timeout(total=FETCH_TIMEOUT_S),
            retries=False,
        )
        # A commit's tree never changes, so its files are read once per revision and shared by every
        # panel that fetched that revision (content addressed: same sha, same files).
        self._trees: OrderedDict[bytes, RepoTree] = OrderedDict()
        self._tree_lock = threading.Lock()

    async def fetch(self, request: FetchRequest) -> FetchResult:
        async with self._semaphore:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._fetch_blocking, request)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._pool.clear()

    # --- blocking part ----------------------------------------------------------------------------
    def _client(self, request: FetchRequest) -> Urllib3HttpGitClient:
        base_url = redact_url(request.url).rstrip("/") + "/"
        creds = request.credentials
        if creds.bearer_token is not None:
            return _BearerHttpGitClient(base_url, bearer_token=creds.bearer_token, pool_manager=self._pool)
        if creds.username is None and creds.password is None:
            return Urllib3HttpGitClient(base_url, pool_manager=self._pool)
        return Urllib3HttpGitClient(
            base_url, pool_manager=self._pool, username=creds.username or "git", password=creds.password or ""
        )

    def _fetch_blocking(self, request: FetchRequest) -> FetchResult:
        ref_name = (
            f"refs/tags/{request.tag}" if request.tag else f"refs/heads/{request.branch or DEFAULT_BRANCH}"
        )
        try:
            client = self._client(request)
            refs = client.get_refs("", protocol_version=GIT_PROTOCOL_VERSION).refs
            wanted = _resolve(refs, ref_name.encode())
            if wanted is None:
                return FetchResult(
                    ok=False, error=clone_error(request.url, f'couldn\'t find remote ref "{ref_name}"')
                )
            revision = wanted.decode()
            known = self._known_tree(wanted)
            if revision == request.have_revision and known is not None:
                # Nothing new: the panel holds this revision's artifact (ref discovery was the sync).
                return FetchResult(ok=True, revision=revision, tree_dirs=known.dirs, tree=known)
            # A new revision, or one the seed sync recorded without its files: a real upload-pack.
            target = MemoryRepo()

            def want_revision(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
                return [ObjectID(wanted)]

            client.fetch("", target, determine_wants=want_revision, protocol_version=GIT_PROTOCOL_VERSION)
            tree = self._tree_of(target, wanted)
            return FetchResult(ok=True, revision=revision, tree_dirs=tree.dirs, tree=tree)
        except HTTPUnauthorized:
            return FetchResult(
                ok=False, auth_failed=True, error=clone_error(request.url, "authentication required")
            )
        except NotGitRepository:
            return FetchResult(ok=False, error=clone_error(request.url, "repository not found"))
        except (GitProtocolError, urllib3.exceptions.HTTPError, OSError, KeyError, ValueError) as exc:
            return FetchResult(ok=False, error=clone_error(request.url, _describe(exc)))

    def _known_tree(self, commit_id: bytes) -> RepoTree | None:
        with self._tree_lock:
            tree = self._trees.get(commit_id)
            if tree is not None:
                self._trees.move_to_end(commit_id)
            return tree

    def _tree_of(self, repo: MemoryRepo, commit_id: bytes) -> RepoTree:
        known = self._known_tree(commit_id)
        if known is not None:
            return known
        commit = repo[commit_id]
        assert isinstance(commit, Commit)
        dirs: set[str] = set()
        files: dict[str, bytes] = {}
        _collect(repo, commit.tree, "", dirs, files)
        tree = RepoTree(revision=commit_id.decode(), files=files, dirs=frozenset(dirs))
        with self._tree_lock:
            self._trees[commit_id] = tree
            while len(self._trees) > TREE_CACHE_REVISIONS:
                self._trees.popitem(last=False)
        return tree


def _resolve(refs: Mapping[Any, Any], ref_name: bytes) -> bytes | None:
    """The commit a ref points at (peeled for annotated tags)."""
    peeled = refs.get(ref_name + b"^{}")
    value = peeled if peeled is not None else refs.get(ref_name)
    return bytes(value) if value is not None else None


def _collect(repo: MemoryRepo, tree_id: bytes, prefix: str, dirs: set[str], files: dict[str, bytes]) -> None:
    """Every folder and regular file below a tree (symlinks and submodules are not followed)."""
    tree = repo[tree_id]
    assert isinstance(tree, Tree)
    for entry in tree.items():
        path = f"{prefix}{entry.path.decode()}"
        kind = entry.mode & _MODE_TYPE_MASK
        if kind == _MODE_DIRECTORY:
            dirs.add(path)
            _collect(repo, entry.sha, path + "/", dirs, files)
        elif kind == _MODE_REGULAR_FILE:
            blob = repo[entry.sha]
            if isinstance(blob, Blob):
                files[path] = blob.data


def _describe(exc: BaseException) -> str:
    """A short, secret-free reason in the style of go-git's errors."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        text = str(exc.reason)
    if "unexpected http resp 403" in text:
        return "authorization failed"  # go-git's words for a 403 (e.g. a PAT without Code (read))
    if "Connection refused" in text:
        return "connection refused"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "x509: certificate signed by unknown authority"
    return text.splitlines()[0][:300]
