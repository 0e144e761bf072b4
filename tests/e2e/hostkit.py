"""Start and stop the local Functions host (`python -m lab host`) for e2e tests, as tests/labkit.py does.

`HostProcess` runs the host in a child process against a running lab, waits for its per-instance
state file (`DIR/host-state.<instance>.json`, written when the host is ready) and offers the URL, the
keys and `call()` for requests. Several hosts may run against one lab (distinct `instance` names).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import requests

from tests.labkit import REPO_ROOT, LabHandle

# Importing the app and starting queue pollers takes a second or two; generous for slow CI.
HOST_START_TIMEOUT_S = 60.0
# A graceful stop waits for in-flight invocations (the host bounds that at 30 s) plus cleanup.
HOST_STOP_TIMEOUT_S = 60.0
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"

KeyKind = Literal["function", "master", "eventgrid"]


class HostProcess:
    """`python -m lab host` as a child process; a context manager."""

    def __init__(
        self,
        lab: LabHandle,
        *,
        app_dir: Path = REPO_ROOT,
        app_module: str = "function_app",
        port: int = 0,
        instance: str = "host-1",
        env: dict[str, str] | None = None,
        subscriptions: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.lab = lab
        self.instance = instance
        self.args = [
            sys.executable,
            "-m",
            "lab",
            "host",
            "--lab",
            str(lab.state_dir),
            "--port",
            str(port),
            "--instance",
            instance,
            "--app-dir",
            str(app_dir),
            "--app-module",
            app_module,
        ]
        if subscriptions is not None:
            self.args += ["--subscriptions", str(subscriptions)]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or lab.state_dir / f"host-{instance}.log"
        self.state_path = lab.state_dir / f"host-state.{instance}.json"
        self.process: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {}

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> HostProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.args,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + HOST_START_TIMEOUT_S
        while True:
            state = self._read_state()
            if state is not None and state.get("pid") == self.process.pid:
                self.state = state
                return self
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"host exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self.log_text()[-3000:]
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"host did not start; see {self.log_path}:\n" + self.log_text()[-3000:])
            time.sleep(0.05)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def stop(self, timeout: float = HOST_STOP_TIMEOUT_S) -> int:
        """SIGTERM (a graceful stop) and the exit code; SIGKILL if it does not stop in time."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> HostProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- use ----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return str(self.state["url"])

    @property
    def function_key(self) -> str:
        return str(self.state["function_key"])

    @property
    def master_key(self) -> str:
        return str(self.state["master_key"])

    @property
    def eventgrid_key(self) -> str:
        return str(self.state["eventgrid_key"])

    def key(self, kind: KeyKind) -> str:
        return {"function": self.function_key, "master": self.master_key, "eventgrid": self.eventgrid_key}[
            kind
        ]

    def call(
        self, method: str, path: str, *, key: KeyKind | None = "function", **kwargs: Any
    ) -> requests.Response:
        """One request to the host; the key (if any) goes in `x-functions-key` as clients send it."""
        headers = dict(kwargs.pop("headers", None) or {})
        if key is not None:
            headers["x-functions-key"] = self.key(key)
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
