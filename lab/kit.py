"""Start the lab and the local Functions host as a user would: for tests, benchmarks and the demo.

`LabProcess` runs `python -m lab serve` in a child process and waits for `lab.json`; `LabHandle`
reads it and talks to the control API. `HostProcess` runs `python -m lab host` against a running lab
and waits for its state file (`DIR/host-state.<instance>.json`); several hosts may share one lab.
Nothing here patches an SDK: callers point the real clients at the endpoints and CA in `lab.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
# Starting Azurite (node) and seeding a fleet takes a few seconds; a generous bound for slow CI.
LAB_START_TIMEOUT_S = 90.0


@dataclass
class LabHandle:
    state_dir: Path
    doc: dict[str, Any]

    @property
    def env(self) -> dict[str, str]:
        return dict(self.doc["env"])

    @property
    def ca_bundle(self) -> str:
        return str(self.doc["env"]["REQUESTS_CA_BUNDLE"])

    def endpoint(self, name: str) -> str:
        return str(self.doc["endpoints"][name])

    def control(self, method: str, path: str, body: Any = None, *, expect: int | None = None) -> Any:
        """Call the control API; returns the decoded JSON body."""
        response = requests.request(
            method, self.endpoint("control") + path, json=body, verify=self.ca_bundle, timeout=60
        )
        if expect is not None and response.status_code != expect:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        response.raise_for_status()
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        return dict(self.control("GET", "/_lab/state"))

    @contextlib.contextmanager
    def applied_env(self) -> Iterator[None]:
        """Point Azure SDK clients built inside the block at the lab (CA bundle, identity endpoint)."""
        saved = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class LabProcess:
    """`python -m lab serve` as a child process."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clusters: int = 50,
        subscriptions: int = 1,
        offline: int = 0,
        time_scale: float = 1.0,
        azurite: bool = True,
        unconfigured: int = 0,
        runner: bool = True,
        resource_graph_lag: float | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.args = [
            sys.executable,
            "-m",
            "lab",
            "serve",
            "--state-dir",
            str(state_dir),
            "--clusters",
            str(clusters),
            "--subscriptions",
            str(subscriptions),
            "--offline",
            str(offline),
            "--time-scale",
            str(time_scale),
        ]
        if not azurite:
            self.args.append("--no-azurite")
        if unconfigured:
            self.args += ["--unconfigured", str(unconfigured)]
        if not runner:
            self.args.append("--no-runner")
        if resource_graph_lag is not None:
            self.args += ["--resource-graph-lag", str(resource_graph_lag)]
        self.log_path = log_path or state_dir / "lab.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LabHandle:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lab_json = self.state_dir / "lab.json"
        lab_json.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                self.args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + LAB_START_TIMEOUT_S
        while not lab_json.exists():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"lab exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text()[-3000:]
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"lab did not start; see {self.log_path}")
            time.sleep(0.1)
        return LabHandle(self.state_dir, json.loads(lab_json.read_text()))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> LabHandle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Importing the app and starting queue pollers takes a second or two; generous for slow CI.
HOST_START_TIMEOUT_S = 60.0
# A graceful stop waits for in-flight invocations (the host bounds that at 30 s) plus cleanup.
HOST_STOP_TIMEOUT_S = 60.0

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
