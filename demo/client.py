"""The demo's view of the world: the app's public HTTP API and the lab's control API, nothing else."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class AppClient:
    """fluxfleet's HTTP API as a release pipeline calls it: a function key, JSON, polling."""

    url: str
    function_key: str
    ca_bundle: str | bool = True

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["x-functions-key"] = self.function_key

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> requests.Response:
        return self.session.request(
            method, f"{self.url}/api/{path.lstrip('/')}", json=body, headers=headers, timeout=120
        )

    def get(self, path: str) -> Any:
        response = self.call("GET", path)
        response.raise_for_status()
        return response.json()

    def poll(
        self,
        status_url: str,
        *,
        on_update: Callable[[dict[str, Any]], None],
        timeout_s: float,
        every_s: float = 1.0,
    ) -> dict[str, Any]:
        """Follow an operation's status URL until it is no longer running (what a pipeline does)."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.session.get(status_url, timeout=60).json()
            on_update(doc)
            if doc.get("status") != "running" or time.monotonic() > deadline:
                return dict(doc)
            time.sleep(every_s)


@dataclass
class LabControl:
    url: str
    ca_bundle: str

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(method, self.url + path, json=body, verify=self.ca_bundle, timeout=120)
        response.raise_for_status()
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        return dict(self.call("GET", "/_lab/state"))
