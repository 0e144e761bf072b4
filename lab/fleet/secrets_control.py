"""Control routes for what a panel holds: its secrets (names and keys, never values) and its workloads.

- `GET /_lab/clusters/{name}/secrets` — the panel's secrets: namespace, name, type, keys;
- `PUT /_lab/clusters/{name}/secrets/{namespace}/{secret}` `{"keys": [...], "type": "Opaque"}` —
  create (201) or replace (200) one; a body carrying `data` or `stringData` is refused (400): the
  lab holds no secret values;
- `DELETE /_lab/clusters/{name}/secrets/{namespace}/{secret}` — remove one (200 with what was
  removed, 404 when the panel does not hold it);
- `GET /_lab/clusters/{name}/workloads` — per kustomization: the revision, build outcome, and every
  Deployment's readiness with why its pods cannot start (ground truth Flux's message only summarises).

A change takes effect at the panel's next sync (`POST /_lab/agents/tick` to sync now); `POST
/_lab/reset` gives every panel the seed's secrets again.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from lab.core.service import json_response, read_json
from lab.fleet.agents import AgentRuntime
from lab.fleet.health import describe
from lab.fleet.model import Fleet, Panel
from lab.fleet.secrets import InvalidSecret, secrets_truth, validated_secret


class FleetService(Protocol):
    """What these routes need of the service that owns the fleet (ARM)."""

    @property
    def fleet(self) -> Fleet: ...

    @property
    def agents(self) -> AgentRuntime | None: ...


def add_panel_routes(app: web.Application, service: FleetService) -> None:
    def panel_and_agents(request: web.Request) -> tuple[Panel, AgentRuntime]:
        panel = service.fleet.by_name(request.match_info["name"])
        agents = service.agents
        if panel is None or agents is None:
            raise web.HTTPNotFound(text='{"error": "no such cluster"}', content_type="application/json")
        return panel, agents

    async def list_secrets(request: web.Request) -> web.Response:
        panel, agents = panel_and_agents(request)
        secrets = secrets_truth(agents.applier.secrets, panel.name)
        return json_response({"cluster": panel.name, "secrets": secrets})

    async def put_secret(request: web.Request) -> web.Response:
        panel, agents = panel_and_agents(request)
        body = await read_json(request)
        if not isinstance(body, dict):
            return json_response({"error": "body must be a JSON object"}, status=400)
        if "data" in body or "stringData" in body:
            return json_response(
                {"error": "the lab holds no secret values: send the key names as keys"}, status=400
            )
        try:
            namespace, name = request.match_info["namespace"], request.match_info["secret"]
            secret = validated_secret(namespace, name, body.get("type"), body.get("keys"))
        except InvalidSecret as error:
            return json_response({"error": str(error)}, status=400)
        created = agents.applier.secrets.put(panel.name, secret)
        return json_response(secret.describe(), status=201 if created else 200)

    async def delete_secret(request: web.Request) -> web.Response:
        panel, agents = panel_and_agents(request)
        namespace, name = request.match_info["namespace"], request.match_info["secret"]
        removed = agents.applier.secrets.delete(panel.name, namespace, name)
        if removed is None:
            return json_response({"error": f"{panel.name} holds no secret {namespace}/{name}"}, status=404)
        return json_response({"deleted": removed.describe()})

    async def workloads(request: web.Request) -> web.Response:
        panel, agents = panel_and_agents(request)
        kustomizations: dict[str, Any] = {}
        for object_name, record in sorted(agents.applier.records_of(panel.name).items()):
            kustomizations[object_name] = {
                "revision": record.revision,
                "build": {
                    "ok": record.build.ok,
                    "reason": record.build.reason,
                    "message": record.build.message,
                    "objects": len(record.build.objects),
                    "unapplied_fields": list(record.build.unapplied_fields),
                },
                "health": None
                if record.health is None
                else {"ok": record.health.ok, "deployments": describe(record.health)},
            }
        return json_response({"cluster": panel.name, "kustomizations": kustomizations})

    app.router.add_get("/_lab/clusters/{name}/secrets", list_secrets)
    app.router.add_put("/_lab/clusters/{name}/secrets/{namespace}/{secret}", put_secret)
    app.router.add_delete("/_lab/clusters/{name}/secrets/{namespace}/{secret}", delete_secret)
    app.router.add_get("/_lab/clusters/{name}/workloads", workloads)
