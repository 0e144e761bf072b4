"""The shape every emulated service has (after moto: routes, responses, a backend, typed errors).

A `LabService` owns one listener (its own port, so each SDK gets a base URL of its own as in Azure),
adds its Azure routes to that listener's app, may add control routes under `/_lab/...` to the shared
control app, runs background tasks (agents, event delivery), contributes keys to `lab.json`, and can
`reset()` to its seeded state.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from aiohttp import web

if TYPE_CHECKING:
    from lab.server import Lab


class LabService:
    name: ClassVar[str]
    scheme: ClassVar[Literal["http", "https"]] = "https"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    # --- wiring -----------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        """Add the emulated Azure routes to this service's own app."""

    def add_control_routes(self, app: web.Application) -> None:
        """Add `/_lab/...` routes to the control app."""

    async def start(self) -> None:
        """Seed state and start background tasks; every listener's endpoint is known by now."""

    async def stop(self) -> None:
        """Stop background tasks."""

    def reset(self) -> None:
        """Return to the freshly seeded state."""

    def describe(self) -> dict[str, Any]:
        """Keys this service adds to lab.json: `endpoints`, `env` and any top-level keys."""
        return {}

    def ground_truth(self) -> dict[str, Any]:
        """What `GET /_lab/state` shows of this service (never a secret value)."""
        return {}

    # --- helpers ----------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self.lab.endpoint(self.name)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400 naming the problem."""
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not JSON: {exc}"}), content_type="application/json"
        ) from exc
