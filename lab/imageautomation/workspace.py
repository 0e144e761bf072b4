"""The simulated image-automation-controller's Git checkout: real clone, fetch, commit and push.

image-automation-controller clones the GitRepository, rewrites files, commits and pushes over the
network with the source's credential; the lab does the same with the `git` CLI against the lab's
smart-HTTP server and the credential the runner cluster's agent holds (its delivered `httpsUser` and
`httpsKey`), so a revoked PAT, a read-only PAT or a broken Git server fail here as they would on a
cluster. Git gets the credential the ordinary way — the server's 401 challenge, then a credential
helper — with the helper set through `GIT_CONFIG_*` and the PAT in the helper's environment, so it
never appears in a command line (`ps`), a URL or `.git/config`; errors are scrubbed of it.

Flux's Git client is go-git, not the CLI, and its error texts are what Flux reports. go-git opens a
clone with `GET info/refs?service=git-upload-pack` and a push with `GET
info/refs?service=git-receive-pack`, sending the Basic credential up front, and turns a failed answer
into `transport.NewErr` (go-git v5.16.3 `plumbing/transport/http/common.go` L439-466): 401
"authentication required: <body>", 403 "authorization failed: <body>", 404 "repository not found:
<body>", else "unexpected client error: unexpected requesting \"<url>\" status code: <n>". So
`advertise` makes exactly that request first and words a failure the same way; only when it succeeds
does the CLI do the transfer. A push the server rejects as not fast-forward is go-git's
"non-fast-forward update: refs/heads/<branch>" (`remote.go` L1108).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import ssl
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

import aiohttp

# A Git operation against the local lab that takes longer than this is stuck, not slow.
GIT_TIMEOUT_S = 60.0
_FILE_NAMES_FLUX_READS = (".yaml", ".yml")
# A git credential helper (shell) answering `get` from the environment git passes to it.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get && '
    'printf "username=%s\\npassword=%s\\n" "$LAB_GIT_USERNAME" "$LAB_GIT_PASSWORD"; }; f'
)


# What the lab's go-git stand-in says it is (Flux's image-automation-controller uses go-git v5).
_USER_AGENT = "go-git/5.x (fluxfleet lab image-automation-controller)"

GitService = Literal["git-upload-pack", "git-receive-pack"]


class GitFailed(RuntimeError):
    """A git operation failed; the message is go-git's wording where known, else git's own, never the PAT."""


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _porcelain_refusal(stdout: str) -> str | None:
    """go-git's words for a ref the push could not update, from `git push --porcelain` (or None).

    A ref the advertisement already shows to be ahead is refused client-side by both clients (go-git
    v5.16.3 `remote.go` L1108: "non-fast-forward update: <ref>"); a ref the server refuses in its
    report-status is go-git's `CommandStatus.Error` ("command error on <ref>: <reason>",
    `plumbing/protocol/packp/report_status.go`).
    """
    for line in stdout.splitlines():
        flag, _, rest = line.partition("\t")
        if flag != "!":
            continue
        refs, _, summary = rest.partition("\t")
        destination = refs.rpartition(":")[2]
        reason = summary[summary.find("(") + 1 : summary.rfind(")")] if "(" in summary else summary
        if summary.startswith("[remote rejected]"):
            return f"command error on {destination}: {reason}"
        return f"non-fast-forward update: {destination}"
    return None


def go_git_error(status: int, body: str, url: str) -> str:
    """go-git's `transport.NewErr` for a non-2xx smart-HTTP answer (see the module docstring)."""
    if status == 401:
        return f"authentication required: {body}"
    if status == 403:
        return f"authorization failed: {body}"
    if status == 404:
        return f"repository not found: {body}"
    return f'unexpected client error: unexpected requesting "{url}" status code: {status}'


class Workspace:
    def __init__(self, *, path: Path, url: str, ca_bundle: Path, home: Path) -> None:
        self.path = path
        self.url = url
        self._ca_bundle = ca_bundle
        self._home = home

    async def advertise(self, service: GitService, *, username: str, password: str) -> None:
        """go-git's first request of a clone or push; `GitFailed` with go-git's text when refused."""
        url = f"{self.url}/info/refs?service={service}"
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(self._ca_bundle)))
        timeout = aiohttp.ClientTimeout(total=GIT_TIMEOUT_S)
        headers = {"User-Agent": _USER_AGENT}
        if username or password:  # go-git sends no Authorization header without a credential
            basic = base64.b64encode(f"{username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get(url, headers=headers) as response,
            ):
                body = await response.text(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise GitFailed(f'Get "{url}": {type(error).__name__}') from None
        if not 200 <= status < 300:
            raise GitFailed(go_git_error(status, _scrub(body, password), url))

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
            # `push --porcelain` reports each ref on stdout (`!<TAB>src:dst<TAB>[rejected] (why)`).
            refused = _porcelain_refusal(out.decode(errors="replace"))
            if refused is not None:
                raise GitFailed(refused)
            message = _scrub(err.decode(errors="replace"), password).strip()
            lines = message.splitlines()
            raise GitFailed(f"git {args[0]}: {lines[-1] if lines else process.returncode}")
        return out.decode(errors="replace")

    async def checkout(self, *, branch: str, username: str, password: str) -> str:
        """Clone or fetch, and reset the working tree to the remote `branch`; returns its sha."""
        await self.advertise("git-upload-pack", username=username, password=password)
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

    async def commit(
        self,
        *,
        message: str,
        author_name: str,
        author_email: str,
        username: str,
        password: str,
        when: datetime,
    ) -> str:
        """Commit every change in the working tree (no network); returns the new commit's sha."""
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
        return (await self._git("rev-parse", "HEAD", username=username, password=password)).strip()

    async def push(self, *, push_branch: str, force: bool, username: str, password: str) -> None:
        """Push HEAD to `push_branch` (force when Flux forces: the push branch differs from the checkout)."""
        refspec = f"{'+' if force else ''}HEAD:refs/heads/{push_branch}"
        await self.advertise("git-receive-pack", username=username, password=password)
        await self._git("push", "--porcelain", "origin", refspec, username=username, password=password)

    async def reset_to(self, revision: str) -> None:
        """Drop local commits and edits (a failed push): Flux starts every run from a fresh clone."""
        await self._git("reset", "--quiet", "--hard", revision, username="", password="")
        await self._git("clean", "--quiet", "-fdx", username="", password="")

    def discard(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
