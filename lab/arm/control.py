"""Control routes for ARM and the fleet: ground truth per panel, connectivity, agent ticks, throttling.

- `GET /_lab/clusters/{name}` — one panel's ground truth, plus every Flux configuration it has;
- `POST /_lab/clusters/{name}/connectivity` `{"online": bool}` — take a panel offline or back;
- `POST /_lab/agents/tick` — every online agent syncs once, now; answers when all are done;
- `POST /_lab/arm/throttling` `{"enabled": bool, "limits": {"reads": {"burst": n, "per_second": r}},
  "global_multiplier": 15}` — switch ARM throttling off/on or change bucket sizes (buckets restart
  full); `GET` shows the settings.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.arm.throttling import OPERATION_KINDS, BucketLimit, ThrottleSettings
from lab.core.clock import iso
from lab.core.service import json_response, read_json
from lab.fleet.truth import cluster_truth

if TYPE_CHECKING:
    from lab.arm.service import ArmService


def add_arm_control_routes(app: web.Application, service: ArmService) -> None:
    def panel_or_404(request: web.Request) -> Any:
        panel = service.fleet.by_name(request.match_info["name"])
        if panel is None:
            raise web.HTTPNotFound(text='{"error": "no such cluster"}', content_type="application/json")
        return panel

    async def get_cluster(request: web.Request) -> web.Response:
        panel = panel_or_404(request)
        service.backend.settle()
        truth = cluster_truth(panel, service.lab.clock.now())
        truth["flux_configurations"] = {
            config.name: {
                "generation": config.generation,
                "changed_at": iso(config.changed_at),
                "provisioning_state": config.provisioning_state,
                "compliance_state": config.report.compliance_state,
                "delivered_generation": (
                    state.delivered.generation
                    if (state := panel.agents.get(key)) is not None
                    and state.delivered is not None
                    and state.delivered.uid == config.uid
                    else 0
                ),
            }
            for key, config in panel.flux_configs.items()
        }
        return json_response(truth)

    async def set_connectivity(request: web.Request) -> web.Response:
        panel = panel_or_404(request)
        body = await read_json(request)
        online = body.get("online") if isinstance(body, dict) else None
        if not isinstance(online, bool):
            return json_response({"error": "online must be true or false"}, status=400)
        if panel.connectivity.online != online:
            panel.connectivity.online = online
            panel.connectivity.changed_at = service.lab.clock.now()
        return json_response(cluster_truth(panel, service.lab.clock.now()))

    async def tick(_: web.Request) -> web.Response:
        assert service.agents is not None
        outcomes = await service.agents.tick_all()
        return json_response(
            {
                "synced": sum(1 for outcome in outcomes if outcome.synced),
                "fetched": sum(outcome.fetched for outcome in outcomes),
                "failed": sum(outcome.failed for outcome in outcomes),
            }
        )

    def describe_throttling() -> dict[str, Any]:
        settings = service.throttle.settings
        return {
            "enabled": settings.enabled,
            "limits": {
                kind: {"burst": limit.burst, "per_second": limit.per_second}
                for kind, limit in settings.limits
            },
            "global_multiplier": settings.global_multiplier,
        }

    async def get_throttling(_: web.Request) -> web.Response:
        return json_response(describe_throttling())

    async def set_throttling(request: web.Request) -> web.Response:
        body = await read_json(request)
        try:
            settings = _parse_throttling(body, service.throttle.settings)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        service.throttle.configure(settings)
        return json_response(describe_throttling())

    app.router.add_get("/_lab/clusters/{name}", get_cluster)
    app.router.add_post("/_lab/clusters/{name}/connectivity", set_connectivity)
    app.router.add_post("/_lab/agents/tick", tick)
    app.router.add_get("/_lab/arm/throttling", get_throttling)
    app.router.add_post("/_lab/arm/throttling", set_throttling)


def _parse_throttling(body: object, current: ThrottleSettings) -> ThrottleSettings:
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    settings = current
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise ValueError("enabled must be true or false")
        settings = replace(settings, enabled=body["enabled"])
    limits = body.get("limits", {})
    if not isinstance(limits, dict):
        raise ValueError("limits must be an object")
    for kind in OPERATION_KINDS:
        if kind not in limits:
            continue
        limit = limits[kind]
        if not isinstance(limit, dict) or not all(
            isinstance(limit.get(k), (int, float)) and limit[k] > 0 for k in ("burst", "per_second")
        ):
            raise ValueError(f"limits.{kind} needs positive burst and per_second")
        settings = settings.with_limit(
            kind, BucketLimit(burst=float(limit["burst"]), per_second=float(limit["per_second"]))
        )
    if "global_multiplier" in body:
        multiplier = body["global_multiplier"]
        if not isinstance(multiplier, (int, float)) or multiplier <= 0:
            raise ValueError("global_multiplier must be positive")
        settings = replace(settings, global_multiplier=float(multiplier))
    return settings
