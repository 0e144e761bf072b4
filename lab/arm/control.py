"""Control routes for ARM and the fleet: ground truth per panel, panels joining and leaving, failure modes.

- `GET /_lab/clusters/{name}` — one panel's ground truth, plus every Flux configuration and extension;
- `POST /_lab/clusters` `{"name", "tags"?, "subscription"?, "resourceGroup"?, "location"?, "online"?}` —
  a new panel connects to Arc (no extension, no configuration): 201 with its ground truth, 409 if the
  name exists; ARM publishes `Microsoft.Resources.ResourceWriteSuccess` on the subscription's topic;
- `DELETE /_lab/clusters/{name}` — the panel is deleted from Arc (204; `ResourceDeleteSuccess`);
- `POST /_lab/clusters/{name}/connectivity` `{"online"?: bool, "expired"?: bool}` — take a panel offline
  or back; `expired: true` lets its managed-identity certificate run out now (`Expired`, the agents stop
  for good), `expired: false` gives it a fresh one (what re-onboarding would);
- `POST /_lab/clusters/{name}/extension` `{"provisioningState": "Failed" | "Succeeded", "message"?}` —
  the panel's microsoft.flux reports failure (errorInfo in the RP's words; the agents stop) or heals;
- `POST /_lab/agents/tick` — every panel whose agents can run syncs once, now; answers when all are done;
- `POST /_lab/arm/throttling` `{"enabled": bool, "limits": {"reads": {"burst": n, "per_second": r}},
  "global_multiplier": 15}` — switch ARM throttling off/on or change bucket sizes (buckets restart
  full); `GET` shows the settings.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.arm.throttling import OPERATION_KINDS, BucketLimit, ThrottleSettings
from lab.core.clock import iso
from lab.core.service import json_response, read_json
from lab.fleet.model import ARC_RESOURCE_GROUP, LOCATION, MSI_CERTIFICATE_VALIDITY, Panel

if TYPE_CHECKING:
    from lab.arm.service import ArmService

# A connectedClusters name: what `az connectedk8s connect --name` accepts (1-63 characters of letters,
# digits, '-', '_' and '.', starting and ending with a letter or digit).
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
# ARM allows at most 50 tags per resource.
_MAX_TAGS = 50


def _error(message: str, status: int = 400) -> web.Response:
    return json_response({"error": message}, status=status)


def add_arm_control_routes(app: web.Application, service: ArmService) -> None:
    control = ArmControl(service)
    app.router.add_post("/_lab/clusters", control.connect_cluster)
    app.router.add_get("/_lab/clusters/{name}", control.get_cluster)
    app.router.add_delete("/_lab/clusters/{name}", control.disconnect_cluster)
    app.router.add_post("/_lab/clusters/{name}/connectivity", control.set_connectivity)
    app.router.add_post("/_lab/clusters/{name}/extension", control.set_extension_state)
    app.router.add_post("/_lab/agents/tick", control.tick)
    app.router.add_get("/_lab/arm/throttling", control.get_throttling)
    app.router.add_post("/_lab/arm/throttling", control.set_throttling)


class ArmControl:
    """The handlers of the routes above."""

    def __init__(self, service: ArmService) -> None:
        self.service = service

    def panel_or_404(self, request: web.Request) -> Panel:
        panel = self.service.fleet.by_name(request.match_info["name"])
        if panel is None:
            raise web.HTTPNotFound(text='{"error": "no such cluster"}', content_type="application/json")
        return panel

    async def get_cluster(self, request: web.Request) -> web.Response:
        panel = self.panel_or_404(request)
        self.service.backend.settle()
        truth = self.service.cluster_truth(panel)
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
        truth["extensions"] = {
            extension.name: {
                "type": extension.spec.extension_type,
                "currentVersion": extension.current_version,
                "provisioningState": "Deleting" if extension.deleting else extension.provisioning_state,
            }
            for extension in panel.extensions.values()
        }
        return json_response(truth)

    async def connect_cluster(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return _error("body must be a JSON object")
        name, tags = body.get("name"), body.get("tags", {})
        if not isinstance(name, str) or not _CLUSTER_NAME.match(name):
            return _error(
                "name must be 1-63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
            )
        if (
            not isinstance(tags, dict)
            or len(tags) > _MAX_TAGS
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
        ):
            return _error(f"tags must be an object of at most {_MAX_TAGS} string values")
        options: dict[str, Any] = {}
        for key, field, default in (
            ("subscription", "subscription", None),
            ("resourceGroup", "resource_group", ARC_RESOURCE_GROUP),
            ("location", "location", LOCATION),
        ):
            value = body.get(key, default)
            if value is not None and not isinstance(value, str):
                return _error(f"{key} must be a string")
            options[field] = value
        online = body.get("online", True)
        if not isinstance(online, bool):
            return _error("online must be true or false")
        if self.service.fleet.by_name(name) is not None:
            return _error(f"a cluster named {name!r} already exists", status=409)
        try:
            panel = self.service.connect_cluster(name=name, tags=dict(tags), online=online, **options)
        except ValueError as exc:
            return _error(str(exc))
        return json_response(self.service.cluster_truth(panel), status=201)

    async def disconnect_cluster(self, request: web.Request) -> web.Response:
        self.service.disconnect_cluster(self.panel_or_404(request))
        return web.Response(status=204)

    async def set_connectivity(self, request: web.Request) -> web.Response:
        panel = self.panel_or_404(request)
        body = await read_json(request)
        if not isinstance(body, dict):
            return _error("body must be a JSON object")
        online, expired = body.get("online"), body.get("expired")
        if online is None and expired is None:
            return _error("give online and/or expired")
        if (online is not None and not isinstance(online, bool)) or (
            expired is not None and not isinstance(expired, bool)
        ):
            return _error("online and expired must be true or false")
        now = self.service.lab.clock.now()
        connectivity = panel.connectivity
        if online is not None:
            connectivity.set_online(online, now)
        if expired is True:
            connectivity.settle(now)
            connectivity.certificate_issued_at = now - MSI_CERTIFICATE_VALIDITY  # expires now
        elif expired is False:
            connectivity.certificate_issued_at = now  # a fresh certificate, as after re-onboarding
        return json_response(self.service.cluster_truth(panel))

    async def set_extension_state(self, request: web.Request) -> web.Response:
        panel = self.panel_or_404(request)
        body = await read_json(request)
        state = body.get("provisioningState") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        if state not in ("Failed", "Succeeded"):
            return _error("provisioningState must be 'Failed' or 'Succeeded'")
        if message is not None and (not isinstance(message, str) or not message.strip()):
            return _error("message must be a non-empty string")
        try:
            self.service.backend.report_extension_state(panel, failed=state == "Failed", reason=message)
        except LookupError as exc:
            return _error(str(exc), status=404)
        return json_response(self.service.cluster_truth(panel))

    async def tick(self, _: web.Request) -> web.Response:
        assert self.service.agents is not None
        outcomes = await self.service.agents.tick_all()
        return json_response(
            {
                "synced": sum(1 for outcome in outcomes if outcome.synced),
                "fetched": sum(outcome.fetched for outcome in outcomes),
                "failed": sum(outcome.failed for outcome in outcomes),
            }
        )

    def describe_throttling(self) -> dict[str, Any]:
        settings = self.service.throttle.settings
        return {
            "enabled": settings.enabled,
            "limits": {
                kind: {"burst": limit.burst, "per_second": limit.per_second}
                for kind, limit in settings.limits
            },
            "global_multiplier": settings.global_multiplier,
        }

    async def get_throttling(self, _: web.Request) -> web.Response:
        return json_response(self.describe_throttling())

    async def set_throttling(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        try:
            settings = _parse_throttling(body, self.service.throttle.settings)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        self.service.throttle.configure(settings)
        return json_response(self.describe_throttling())


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
