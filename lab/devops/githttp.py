"""Git's smart HTTP protocol, served by git itself (`git http-backend` as a CGI program).

The lab must not hand-roll the Git protocol: clone, fetch and push are answered by the same program a
real Git host runs, so every client (git, go-git in Flux, dulwich) sees real protocol behaviour. This
module only translates an aiohttp request into a CGI invocation and streams the answer back.

A fleet of agents polls `info/refs?service=git-upload-pack` (Flux's "is there a new revision?"), and a
process per poll would cap the lab at a few hundred polls a second on a busy machine. The ref
advertisement only changes when a ref changes, so it is produced by `git http-backend` once per
repository generation and Git protocol version, then served from memory; the service bumps the
generation on every push, commit and reset. Everything else (upload-pack, receive-pack) runs the CGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

# Read the CGI's output in chunks of this size (a pack for a small GitOps repo is a few of them).
_CHUNK_BYTES = 64 * 1024
# How long git may take to answer one request before the lab gives up (a clone of the seed takes ms).
_CGI_TIMEOUT_S = 120.0
# Once git has closed its output it exits at once; this only bounds a misbehaving process.
_CGI_EXIT_GRACE_S = 5.0
# `Git-Protocol` values whose advertisement is cached (any other value is passed through uncached,
# so a client cannot grow the cache without bound).
_CACHEABLE_PROTOCOLS = frozenset({"", "version=0", "version=1", "version=2"})


@dataclass(frozen=True)
class CachedAdvertisement:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class GitHttpBackend:
    """Runs `git http-backend` for one project root (the directory holding the bare repositories)."""

    def __init__(self, project_root: Path, *, home: Path) -> None:
        self.project_root = project_root
        self._home = home
        self._generation = 0
        self._advertisements: dict[tuple[int, str, str], CachedAdvertisement] = {}

    def invalidate(self) -> None:
        """Refs changed (push, commit, reset): the next `info/refs` asks git again."""
        self._generation += 1
        self._advertisements.clear()

    def _environment(
        self, request: web.Request, *, path_info: str, remote_user: str, content_length: int
    ) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # git reads $HOME/.gitconfig; the lab's own empty home keeps a developer's config out.
            "HOME": str(self._home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": path_info,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(content_length),
            "REMOTE_USER": remote_user,  # also what lets http-backend accept a push
            "REMOTE_ADDR": request.remote or "127.0.0.1",
        }
        # Protocol v2 is negotiated through this header; http-backend reads it from GIT_PROTOCOL.
        # (aiohttp has already un-gzipped a compressed body, so Content-Encoding is not passed on.)
        if "Git-Protocol" in request.headers:
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        return env

    async def advertise_refs(self, request: web.Request, *, path_info: str, remote_user: str) -> web.Response:
        """`GET .../info/refs?service=...`, from memory when the refs have not changed."""
        key = (self._generation, request.query.get("service", ""), request.headers.get("Git-Protocol", ""))
        cached = self._advertisements.get(key)
        if cached is None:
            generation = self._generation
            status, headers, body = await self._run_buffered(
                request, path_info=path_info, remote_user=remote_user, body=b""
            )
            cached = CachedAdvertisement(status, tuple(headers), body)
            if status == 200 and generation == self._generation and key[2] in _CACHEABLE_PROTOCOLS:
                self._advertisements[key] = cached
        response = web.Response(status=cached.status, body=cached.body)
        for name, value in cached.headers:
            response.headers[name] = value
        return response

    async def serve(self, request: web.Request, *, path_info: str, remote_user: str) -> web.StreamResponse:
        """Any other smart-HTTP request: the CGI's output is streamed back as it is produced."""
        body = await request.read()
        process = await self._spawn(
            request, path_info=path_info, remote_user=remote_user, content_length=len(body)
        )
        assert process.stdin is not None
        assert process.stdout is not None
        feeder = asyncio.create_task(_feed(process.stdin, body))
        drained = False
        try:
            status, headers, rest = await _read_cgi_headers(process.stdout)
            response = web.StreamResponse(status=status)
            for name, value in headers:
                response.headers[name] = value
            await response.prepare(request)
            # A client may hang up once it has what it needs (dulwich stops reading after the pack,
            # before the last chunk); that ends this response, it is not a server error.
            with contextlib.suppress(ConnectionResetError):
                if rest:
                    await response.write(rest)
                while chunk := await asyncio.wait_for(process.stdout.read(_CHUNK_BYTES), _CGI_TIMEOUT_S):
                    await response.write(chunk)
                drained = True
                await response.write_eof()
            return response
        finally:
            await _finish(process, feeder, drained=drained)

    async def _run_buffered(
        self, request: web.Request, *, path_info: str, remote_user: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        process = await self._spawn(
            request, path_info=path_info, remote_user=remote_user, content_length=len(body)
        )
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(body), _CGI_TIMEOUT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        head, _, rest = _split_head(stdout)
        status, headers = _parse_cgi_head(head)
        return status, headers, rest

    async def _spawn(
        self, request: web.Request, *, path_info: str, remote_user: str, content_length: int
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=self._environment(
                request, path_info=path_info, remote_user=remote_user, content_length=content_length
            ),
            cwd=str(self.project_root),
        )


async def _feed(stdin: asyncio.StreamWriter, body: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(body)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


async def _finish(process: asyncio.subprocess.Process, feeder: asyncio.Task[None], *, drained: bool) -> None:
    """Reap the CGI; one whose output was not read to the end (client gone, error) is killed."""
    if not feeder.done():
        feeder.cancel()
    with contextlib.suppress(asyncio.CancelledError, BrokenPipeError, ConnectionResetError):
        await feeder
    if process.returncode is not None:
        return
    if drained:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _CGI_EXIT_GRACE_S)
    if process.returncode is None:
        process.kill()
        await process.wait()


async def _read_cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]], bytes]:
    buffer = b""
    while True:
        head, separator, rest = _split_head(buffer)
        if separator:
            status, headers = _parse_cgi_head(head)
            return status, headers, rest
        chunk = await asyncio.wait_for(stdout.read(_CHUNK_BYTES), _CGI_TIMEOUT_S)
        if not chunk:
            raise web.HTTPBadGateway(text="git http-backend ended without a CGI header")
        buffer += chunk


def _split_head(data: bytes) -> tuple[bytes, bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, rest = data.partition(separator)
        if found:
            return head, found, rest
    return data, b"", b""


def _parse_cgi_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if not name.strip():
            continue
        if name.strip().lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers.append((name.strip(), value.strip()))
    return status, headers
