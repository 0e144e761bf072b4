"""The per-worker composition of settings, SDK clients and services.

Trigger handlers call `get_runtime()`; it is built on first use (not at import, for cold start) and
reused by every invocation of this worker. Tests install their own with `set_runtime`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.clients import AzureClients
from shared.config import Settings


@dataclass
class Runtime:
    settings: Settings
    clients: AzureClients
    # Services are built lazily by the modules that own them (`shared.services.*.from_runtime`) and
    # kept here so each is built once per worker.
    services: dict[str, Any] = field(default_factory=dict)
    # Re-entrant: a service builder may ask for another service (the images checks use the fleet engine).
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def service(self, name: str, build: Any) -> Any:
        with self._lock:
            if name not in self.services:
                self.services[name] = build(self)
            return self.services[name]


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime  # noqa: PLW0603 - one runtime per worker process is the point
    with _runtime_lock:
        if _runtime is None:
            settings = Settings.from_env()
            _runtime = Runtime(settings=settings, clients=AzureClients(settings))
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime (tests), or None to rebuild from the environment on next use."""
    global _runtime  # noqa: PLW0603
    with _runtime_lock:
        _runtime = runtime
