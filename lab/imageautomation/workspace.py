"""The simulated image-automation-controller's Git checkout: real clone, fetch, commit and push.

image-automation-controller clones the GitRepository, rewrites files, commits and pushes over the
network with the source's credential; the lab does the same with the `git` CLI against the lab's
smart-HTTP server and the automation's own PAT (`devops.automation_pat`, scope `vso.code_write`),
so a revoked PAT, a read-only PAT or a broken Git server fail here as they would on a cluster. Git
gets the credential the ordinary way — the server's 401 challenge, then a credential helper — with
the helper set through `GIT_CONFIG_*` and the PAT in the helper's environment, so it never appears
in a command line (`ps`), a URL or `.git/config`; errors are scrubbed of it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

# A Git operation against the local lab that takes longer than this is stuck, not slow.
GIT_TIMEOUT_S = 60.0
_FILE_NAMES_FLUX_READS = (".yaml", ".yml")
# A git credential helper (shell) answering `get` from the environment git passes to it.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get && '
    'printf "username=%s\\npassword=%s\\n" "$LAB_GIT_USERNAME" "$LAB_GIT_PASSWORD"; }; f'
)


class GitFailed(RuntimeError):
    """A git command failed; the message is git's own (stderr), without the credential."""


class Workspace:
    def __init__(self, *, path: Path, url: str, ca_bundle: Path, home: Path) -> None:
        self.path = path
        self.url = url
        self._ca_bundle = ca_bundle
        self._home = home

    def _environment(self, *, username: str, password: str, when: datetime | None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._home),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSL_CAINFO": str(self._ca_bundle),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": _CREDENTIAL_HELPER,
            "LAB_GIT_USERNAME": username,
            "LAB_GIT_PASSWORD": password,
        }
        if when is not None:
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S%z")
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = stamp
        return env

    async def _git(
        self, *args: str, username: str, password: str, cwd: Path | None = None, when: datetime | None = None
    ) -> str:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=str(cwd or self.path),
            env=self._environment(username=username, password=password, when=when),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=GIT_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise GitFailed(f"git {args[0]} timed out after {GIT_TIMEOUT_S:.0f} s") from None
        if process.returncode != 0:
            message = err.decode(errors="replace").replace(password, "***").strip()
            raise GitFailed(f"git {args[0]}: {message.splitlines()[-1] if message else process.returncode}")
        return out.decode(errors="replace")

    async def checkout(self, *, branch: str, username: str, password: str) -> str:
        """Clone or fetch, and reset the working tree to the remote `branch`; returns its sha."""
        if not (self.path / ".git").is_dir():
            if self.path.exists():
                shutil.rmtree(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._home.mkdir(parents=True, exist_ok=True)
            await self._git(
                "clone",
                "--quiet",
                "--no-checkout",
                self.url,
                str(self.path),
                username=username,
                password=password,
                cwd=self.path.parent,
            )
        await self._git(
            "fetch",
            "--quiet",
            "--prune",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            username=username,
            password=password,
        )
        await self._git(
            "checkout",
            "--quiet",
            "--force",
            "-B",
            branch,
            f"origin/{branch}",
            username=username,
            password=password,
        )
        await self._git("clean", "--quiet", "-fdx", username=username, password=password)
        return (await self._git("rev-parse", "HEAD", username=username, password=password)).strip()

    def read_files(self) -> dict[str, str]:
        """Every file Flux could read (YAML and `Kustomization`), by repo-relative path."""
        files: dict[str, str] = {}
        for path in self.path.rglob("*"):
            if ".git" in path.relative_to(self.path).parts or not path.is_file():
                continue
            if path.suffix in _FILE_NAMES_FLUX_READS or path.name == "Kustomization":
                files[path.relative_to(self.path).as_posix()] = path.read_text(errors="replace")
        return files

    def write_files(self, files: Mapping[str, str]) -> None:
        for relative, text in files.items():
            (self.path / relative).write_text(text)

    async def commit_and_push(
        self,
        *,
        message: str,
        author_name: str,
        author_email: str,
        push_branch: str,
        force: bool,
        username: str,
        password: str,
        when: datetime,
    ) -> str:
        """Commit every change in the working tree and push it; returns the new commit's sha."""
        await self._git("add", "--all", username=username, password=password)
        await self._git(
            "-c",
            f"user.name={author_name}",
            "-c",
            f"user.email={author_email}",
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            message,
            username=username,
            password=password,
            when=when,
        )
        sha = (await self._git("rev-parse", "HEAD", username=username, password=password)).strip()
        refspec = f"{'+' if force else ''}HEAD:refs/heads/{push_branch}"
        await self._git("push", "--quiet", "origin", refspec, username=username, password=password)
        return sha

    def discard(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
