"""The backend of the lab's Azure DevOps: one organization, one project, one real Git repository.

The repository is a bare repo on disk (`lab.state_dir/git/`), served over smart HTTP by git's own
`git http-backend` and read and written here with dulwich, in process. Both sides speak plain Git, so a
commit pushed by `git` shows up in the REST API at once, and a commit made here (the control API,
the image-automation simulator) is what the next `git fetch` receives. Each read opens the repository
afresh: `git receive-pack` may have added a pack since the last call, and a fresh object store sees it.
Method names follow the Git REST operations they serve (`get_items`, `get_commits`, `get_refs`).
"""

from __future__ import annotations

import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from dulwich.diff_tree import tree_changes
from dulwich.errors import NotTreeError
from dulwich.index import commit_tree
from dulwich.object_store import iter_tree_contents
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo
from dulwich.walk import Walker

RecursionLevel = Literal["none", "oneLevel", "oneLevelPlusNestedEmptyFolders", "full"]
RECURSION_LEVELS: dict[str, RecursionLevel] = {
    "none": "none",
    "onelevel": "oneLevel",
    "onelevelplusnestedemptyfolders": "oneLevelPlusNestedEmptyFolders",
    "full": "full",
}
ChangeType = Literal["add", "edit", "delete"]

DEFAULT_BRANCH = "main"
_FILE_MODE = 0o100644
# A ref update races `git receive-pack`; a commit retries on top of the new head this many times.
_REF_UPDATE_ATTEMPTS = 5
_AUTHOR_RE = re.compile(r"^\s*(?P<name>[^<]*?)\s*<(?P<email>[^>]*)>\s*$")
_SHA_RE = re.compile(r"^[0-9a-fA-F]{40}$")


class UnresolvableVersion(LookupError):
    """A branch, tag or commit that does not exist in the repository."""


@dataclass(frozen=True)
class GitItem:
    """A file or folder at one commit; `path` is absolute in ADO's style (`/kubernetes/x.yaml`)."""

    path: str
    object_id: str
    is_folder: bool


@dataclass(frozen=True)
class GitChange:
    change_type: ChangeType
    path: str


@dataclass(frozen=True)
class GitCommitInfo:
    commit_id: str
    tree_id: str
    parents: tuple[str, ...]
    message: str
    author_name: str
    author_email: str
    author_time: datetime
    committer_name: str
    committer_email: str
    commit_time: datetime
    changes: tuple[GitChange, ...]


def split_author(author: str) -> tuple[str, str]:
    """`Name <email>` or a bare name (then a lab e-mail is made up from it)."""
    match = _AUTHOR_RE.match(author)
    if match:
        return match.group("name") or match.group("email"), match.group("email")
    name = author.strip() or "fluxfleet lab"
    return name, re.sub(r"[^a-z0-9.]+", ".", name.lower()).strip(".") + "@lab.invalid"


def normalise_path(path: str | None) -> str:
    """ADO item paths are absolute with `/`; the repository's are relative. `/a/b/` -> `a/b`."""
    return "/".join(part for part in (path or "").replace("\\", "/").split("/") if part)


def ado_path(relative: str) -> str:
    return "/" + relative


class GitRepositoryBackend:
    """One bare repository; every method is synchronous and cheap (small GitOps repositories)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # --- lifecycle ----------------------------------------------------------------------------------
    def seed(self, files: dict[str, bytes], *, message: str, author: str, when: datetime) -> str:
        """Recreate the repository with one commit on `main` holding `files`; returns its sha."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repo = Repo.init_bare(str(self.path), mkdir=True, default_branch=DEFAULT_BRANCH.encode())
        try:
            config = repo.get_config()
            # Azure DevOps keeps pushes it accepted; no auto-gc surprises in a test's timing either.
            config.set((b"receive",), b"autogc", False)
            config.set((b"http",), b"receivepack", True)
            config.write_to_path()
            repo.refs.set_symbolic_ref(Ref(b"HEAD"), _branch_ref(DEFAULT_BRANCH))
            blobs = []
            for path, data in sorted(files.items()):
                blob = Blob.from_string(data)
                repo.object_store.add_object(blob)
                blobs.append((normalise_path(path).encode(), blob.id, _FILE_MODE))
            tree_id = commit_tree(repo.object_store, blobs)
            commit = _new_commit(tree_id, [], message=message, author=author, when=when)
            repo.object_store.add_object(commit)
            repo.refs[_branch_ref(DEFAULT_BRANCH)] = commit.id
            return commit.id.decode()
        finally:
            repo.close()

    @contextmanager
    def _open(self) -> Iterator[Repo]:
        repo = Repo(str(self.path))
        try:
            yield repo
        finally:
            repo.close()

    # --- refs and versions --------------------------------------------------------------------------
    def get_refs(self) -> dict[str, str]:
        """Every ref but HEAD, name -> sha (annotated tags are not peeled)."""
        with self._open() as repo:
            refs = repo.refs.as_dict()
        return {name.decode(): sha.decode() for name, sha in sorted(refs.items()) if name != b"HEAD"}

    def default_branch(self) -> str:
        with self._open() as repo:
            target = repo.refs.get_symrefs().get(Ref(b"HEAD"), _branch_ref(DEFAULT_BRANCH))
        return target.decode()

    def head_commit(self, branch: str = DEFAULT_BRANCH) -> str:
        return self.resolve_commit(branch, "branch")

    def resolve_commit(self, version: str | None, version_type: str = "branch") -> str:
        """A branch / tag / commit to a commit sha; `UnresolvableVersion` when there is none."""
        kind = (version_type or "branch").lower()
        sha: ObjectID | None = None
        with self._open() as repo:
            refs = repo.refs.as_dict()
            if not version:
                sha = refs.get(repo.refs.get_symrefs().get(Ref(b"HEAD"), _branch_ref(DEFAULT_BRANCH)))
            elif kind == "branch":
                sha = refs.get(_branch_ref(version.removeprefix("refs/heads/")))
            elif kind == "tag":
                tag = Ref(b"refs/tags/" + version.removeprefix("refs/tags/").encode())
                sha = repo.get_peeled(tag) if tag in refs else None  # an annotated tag names its commit
            elif kind == "commit" and _SHA_RE.match(version):
                candidate = ObjectID(version.lower().encode())
                if candidate in repo.object_store and isinstance(repo[candidate], Commit):
                    sha = candidate
        if sha is None:
            raise UnresolvableVersion(version or "HEAD")
        return sha.decode()

    # --- items --------------------------------------------------------------------------------------
    def read_blob(self, path: str, commit_id: str) -> bytes | None:
        with self._open() as repo:
            found = _lookup(repo, commit_id, normalise_path(path))
            if found is None or stat.S_ISDIR(found[0]):
                return None
            blob = repo[found[1]]
            assert isinstance(blob, Blob)
            return blob.data

    def get_item(self, path: str, commit_id: str) -> GitItem | None:
        relative = normalise_path(path)
        with self._open() as repo:
            found = _lookup(repo, commit_id, relative)
        if found is None:
            return None
        return GitItem(ado_path(relative), found[1].decode(), stat.S_ISDIR(found[0]))

    def get_items(self, path: str, commit_id: str, recursion: RecursionLevel) -> list[GitItem] | None:
        """The item at `path` and, by recursion level, what is below it; None if there is no such item."""
        relative = normalise_path(path)
        with self._open() as repo:
            found = _lookup(repo, commit_id, relative)
            if found is None:
                return None
            root = GitItem(ado_path(relative), found[1].decode(), stat.S_ISDIR(found[0]))
            if not root.is_folder or recursion == "none":
                return [root]
            items = [root]
            self._walk(repo, found[1], relative, items, recurse=recursion == "full")
        return items

    def _walk(
        self, repo: Repo, tree_id: ObjectID, prefix: str, into: list[GitItem], *, recurse: bool
    ) -> None:
        tree = repo[tree_id]
        assert isinstance(tree, Tree)
        for entry in sorted(tree.items(), key=lambda e: e.path):
            child = f"{prefix}/{entry.path.decode()}" if prefix else entry.path.decode()
            is_folder = stat.S_ISDIR(entry.mode)
            into.append(GitItem(ado_path(child), entry.sha.decode(), is_folder))
            if is_folder and recurse:
                self._walk(repo, entry.sha, child, into, recurse=True)

    # --- history ------------------------------------------------------------------------------------
    def get_commits(self, commit_id: str, *, item_path: str | None = None) -> Iterator[GitCommitInfo]:
        """Commits reachable from `commit_id`, newest first; with `item_path`, only those touching it."""
        relative = normalise_path(item_path)
        paths = [relative.encode()] if relative else None
        with self._open() as repo:
            walker = Walker(repo.object_store, [ObjectID(commit_id.encode())], paths=paths)
            for entry in walker:
                yield _commit_info(repo, entry.commit)

    def get_commit(self, commit_id: str) -> GitCommitInfo | None:
        with self._open() as repo:
            if not _SHA_RE.match(commit_id) or ObjectID(commit_id.lower().encode()) not in repo.object_store:
                return None
            commit = repo[ObjectID(commit_id.lower().encode())]
            return _commit_info(repo, commit) if isinstance(commit, Commit) else None

    # --- writes -------------------------------------------------------------------------------------
    def commit_files(
        self,
        files: dict[str, bytes | None],
        *,
        message: str,
        author: str,
        when: datetime,
        branch: str = DEFAULT_BRANCH,
    ) -> str:
        """Commit `files` (None deletes) on top of `branch`; returns the new commit's sha."""
        ref = _branch_ref(branch)
        for _ in range(_REF_UPDATE_ATTEMPTS):
            with self._open() as repo:
                parent = repo.refs.as_dict().get(ref)
                entries: dict[bytes, tuple[ObjectID, int]] = {}
                if parent is not None:
                    parent_commit = repo[parent]
                    assert isinstance(parent_commit, Commit)
                    for entry in iter_tree_contents(repo.object_store, parent_commit.tree):
                        entries[entry.path] = (entry.sha, entry.mode)
                for path, data in files.items():
                    key = normalise_path(path).encode()
                    if not key:
                        raise ValueError("a file path must not be empty")
                    if data is None:
                        for existing in [p for p in entries if p == key or p.startswith(key + b"/")]:
                            del entries[existing]
                        continue
                    blob = Blob.from_string(data)
                    repo.object_store.add_object(blob)
                    entries[key] = (blob.id, _FILE_MODE)
                tree_id = commit_tree(
                    repo.object_store, [(p, sha, mode) for p, (sha, mode) in entries.items()]
                )
                commit = _new_commit(
                    tree_id, [parent] if parent else [], message=message, author=author, when=when
                )
                repo.object_store.add_object(commit)
                if repo.refs.set_if_equals(ref, parent, commit.id):
                    return commit.id.decode()
        raise RuntimeError(f"could not update {ref.decode()}: it kept moving under concurrent pushes")


def _branch_ref(branch: str) -> Ref:
    return Ref(b"refs/heads/" + branch.encode())


def _lookup(repo: Repo, commit_id: str, relative: str) -> tuple[int, ObjectID] | None:
    commit = repo[ObjectID(commit_id.encode())]
    assert isinstance(commit, Commit)
    if not relative:
        return stat.S_IFDIR, commit.tree
    tree = repo[commit.tree]
    assert isinstance(tree, Tree)
    try:
        return tree.lookup_path(repo.__getitem__, relative.encode())
    except (KeyError, NotTreeError):
        return None


def _new_commit(
    tree_id: ObjectID, parents: list[ObjectID], *, message: str, author: str, when: datetime
) -> Commit:
    name, email = split_author(author)
    signature = f"{name} <{email}>".encode()
    timestamp = int(when.timestamp())
    commit = Commit()
    commit.tree = tree_id
    commit.parents = parents
    commit.author = commit.committer = signature
    commit.author_time = commit.commit_time = timestamp
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.encode() if message.endswith("\n") else (message + "\n").encode()
    return commit


def _commit_info(repo: Repo, commit: Commit) -> GitCommitInfo:
    parent_tree = None
    if commit.parents:
        parent = repo[commit.parents[0]]
        assert isinstance(parent, Commit)
        parent_tree = parent.tree
    changes: list[GitChange] = []
    for change in tree_changes(repo.object_store, parent_tree, commit.tree):
        if change.type == "add" and change.new is not None:
            changes.append(GitChange("add", ado_path(change.new.path.decode())))
        elif change.type == "delete" and change.old is not None:
            changes.append(GitChange("delete", ado_path(change.old.path.decode())))
        elif change.new is not None:
            changes.append(GitChange("edit", ado_path(change.new.path.decode())))
    author_name, author_email = split_author(commit.author.decode(errors="replace"))
    committer_name, committer_email = split_author(commit.committer.decode(errors="replace"))
    return GitCommitInfo(
        commit_id=commit.id.decode(),
        tree_id=commit.tree.decode(),
        parents=tuple(p.decode() for p in commit.parents),
        message=commit.message.decode(errors="replace").rstrip("\n"),
        author_name=author_name,
        author_email=author_email,
        author_time=datetime.fromtimestamp(commit.author_time, UTC),
        committer_name=committer_name,
        committer_email=committer_email,
        commit_time=datetime.fromtimestamp(commit.commit_time, UTC),
        changes=tuple(sorted(changes, key=lambda c: c.path)),
    )
