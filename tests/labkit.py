"""Start the lab (and the local Functions host) as a user would, for tests, benchmarks and the demo.

`LabProcess` runs `python -m lab serve` in a child process and waits for `lab.json`; `LabHandle`
reads it and talks to the control API. Nothing here patches an SDK: tests point the real clients at
the endpoints and CA in `lab.json`.
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
from typing import Any

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
