"""Azurite, the real Azure Storage emulator (npm), as a child process of the lab.

The app's operations store and fan-out queues run on Table and Queue storage; locally that is
Azurite, installed by the project's own setup (`npm ci` from package.json into node_modules/).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
from pathlib import Path

# Azurite's well-known development account (public, documented; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STARTUP_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def azurite_binary(repo_root: Path | None = None) -> str:
    root = repo_root or Path(__file__).resolve().parent.parent
    local = root / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise FileNotFoundError("azurite is not installed: run `make setup` (npm ci) or pass --no-azurite")


class Azurite:
    def __init__(self, location: Path) -> None:
        self.location = location
        self.ports = {"blob": 0, "queue": 0, "table": 0}
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.location.mkdir(parents=True, exist_ok=True)
        self.ports = {name: _free_port() for name in self.ports}
        self._process = await asyncio.create_subprocess_exec(
            azurite_binary(),
            "--silent",
            "--skipApiVersionCheck",
            "--location",
            str(self.location),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.ports["blob"]),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(self.ports["queue"]),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.ports["table"]),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
        for port in self.ports.values():
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    if self._process.returncode is not None:
                        raise RuntimeError("azurite exited during startup") from None
                    if asyncio.get_running_loop().time() > deadline:
                        raise TimeoutError("azurite did not start listening") from None
                    await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            # Azurite closes cleanly on SIGINT at once; it ignores SIGTERM until killed.
            self._process.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), timeout=10)
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()

    def endpoints(self) -> dict[str, str]:
        return {f"storage_{name}": f"http://127.0.0.1:{port}/{ACCOUNT}" for name, port in self.ports.items()}

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.ports['blob']}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.ports['queue']}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.ports['table']}/{ACCOUNT};"
        )
