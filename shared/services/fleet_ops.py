"""Fleet suspend/resume for release pipelines (issue 6), on the shared fleet-change engine.

What this module adds to `fleet_changes`: the two strategies (what "suspended" means on a panel and
how its agent proves it), the strict parsing of the HTTP request a pipeline sends, who may call it,
and the fleet inventory (`GET /api/fleet`). Everything else — pacing, fan-out, per-panel tracking,
offline panels, idempotency — is the engine's, shared with credential rollout.

Proof of convergence: ARM shows `suspend: true` the moment it accepts the PATCH, which proves
nothing about the panel. A panel is `succeeded` only when its agent *reports* the new state after the
write: complianceState `Suspended` (suspend) or anything else (resume), with a report time no older
than the moment ARM accepted the change (both on ARM's clock).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.config import Settings
from shared.errors import FluxfleetError, Forbidden, InvalidInput, NotFound, Unprocessable
from shared.models import AppliedChange, Convergence, FluxState, Panel, Params, Selector, Stage
from shared.services.fleet_changes import BaseStrategy, FleetChangeEngine, check_reason, flux_state_document
from shared.services.operations import iso
from shared.services.selection import check_subscriptions, filter_panels, parse_selector, select

log = logging.getLogger("fluxfleet.fleet")

# Suspend and resume exclude each other on a panel while one is running.
SUSPEND_LOCK_GROUP = "flux-suspend"
SUSPENDED = "Suspended"
# A pipeline may wait this long (s) for a definite answer; beyond it, poll the status URL. Well under
# the 230 s an HTTP-triggered function may take in Azure.
MAX_WAIT_SECONDS = 120
# Concurrent ARM reads while building the inventory (each one still paced by the shared read bucket).
INVENTORY_READ_CONCURRENCY = 8

REQUEST_FIELDS = frozenset({"reason", "target", "configuration", "dryRun", "waitSeconds"})


class SuspendStrategy(BaseStrategy):
    """Suspend (`suspended=True`) or resume (`suspended=False`) Flux on each selected panel."""

    lock_group = SUSPEND_LOCK_GROUP

    def __init__(self, *, suspended: bool) -> None:
        self.suspended = suspended
        self.kind = "suspend" if suspended else "resume"

    def validate_params(self, params: Params) -> Params:
        if params:
            raise InvalidInput("params", f"{self.kind} takes no parameters, got {', '.join(sorted(params))}")
        return {}

    def plan(self, panels: Sequence[Panel], params: Params) -> list[Stage]:
        # One stage: a freeze must reach every selected panel, and no panel's outcome gates another's.
        return [Stage(name="all", panels=tuple(panels), success_threshold=0.0)]

    def desired_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        if current.suspended == self.suspended:
            return None
        return {"suspend": self.suspended}

    def reapply_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        return {"suspend": self.suspended}

    def check(self, panel: Panel, current: FluxState, applied: AppliedChange, params: Params) -> Convergence:
        if current.suspended != self.suspended:
            other = "resumed" if self.suspended else "suspended"
            return Convergence.failed(f"the configuration was {other} by someone else after this change")
        reported = current.status_updated_at
        last = f"agent last reported {current.compliance_state} at {iso(reported) or 'never'}"
        if not reported_after(current, applied):
            return Convergence.waiting(last)
        if (current.compliance_state == SUSPENDED) == self.suspended:
            return Convergence.converged(f"agent reports {current.compliance_state} at {iso(reported)}")
        return Convergence.waiting(last)


def reported_after(current: FluxState, applied: AppliedChange) -> bool:
    """Whether the agent's last report is from after the change (ARM-clock times only)."""
    reported = current.status_updated_at
    if reported is None:
        return False
    if reported >= applied.accepted_at:
        return True
    baseline = applied.baseline_status_updated_at
    return baseline is not None and reported > baseline


def change_strategies(runtime: Any) -> Iterable[SuspendStrategy]:
    """The strategy provider hook of `fleet_changes.STRATEGY_PROVIDERS`."""
    return (SuspendStrategy(suspended=True), SuspendStrategy(suspended=False))


# ------------------------------------------------------------------------------------------------
# the HTTP-facing service
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeRequest:
    """A validated `POST /api/fleet/suspend|resume` body."""

    reason: str
    target: Selector
    configuration: str | None = None
    dry_run: bool = False
    wait_seconds: float = 0.0


def parse_change_request(body: Mapping[str, Any]) -> ChangeRequest:
    """Strict: unknown fields, wrong types and an empty reason are `InvalidInput` naming the field."""
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field (allowed: {', '.join(sorted(REQUEST_FIELDS))})")
    if "target" not in body:
        raise InvalidInput("target", "is required")
    reason = check_reason(body.get("reason"))
    configuration = body.get("configuration")
    if configuration is not None and (not isinstance(configuration, str) or not configuration.strip()):
        raise InvalidInput("configuration", "must be a non-empty string (a Flux configuration name)")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("dryRun", "must be true or false")
    wait = body.get("waitSeconds", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidInput("waitSeconds", f"must be a number from 0 to {MAX_WAIT_SECONDS}")
    return ChangeRequest(
        reason=reason,
        target=parse_selector(body["target"]),
        configuration=configuration.strip() if configuration else None,
        dry_run=dry_run,
        wait_seconds=float(wait),
    )


@dataclass(frozen=True)
class ChangeAnswer:
    """What the handler turns into a response: 200 with a document, or 202 pointing at the operation."""

    status: int
    document: Mapping[str, Any]
    operation_id: str | None


INVENTORY_QUERY = frozenset({"clusters", "tags", "resourceGroups", "subscriptions", "code"})


def parse_inventory_query(params: Mapping[str, str]) -> Selector:
    """`GET /api/fleet?clusters=a,b&tags=ring:canary,site:lyon&resourceGroups=..&subscriptions=..`."""
    unknown = sorted(set(params) - INVENTORY_QUERY)
    if unknown:
        raise InvalidInput(
            unknown[0], "unknown query parameter (allowed: clusters, tags, resourceGroups, subscriptions)"
        )

    def items(name: str) -> list[str]:
        return [item.strip() for item in params.get(name, "").split(",") if item.strip()]

    tags: dict[str, str] = {}
    for pair in items("tags"):
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise InvalidInput("tags", f"expected name:value pairs separated by commas, got {pair!r}")
        tags[name.strip()] = value.strip()
    raw: dict[str, Any] = {
        "clusters": items("clusters"),
        "tags": tags,
        "resourceGroups": items("resourceGroups"),
        "subscriptions": items("subscriptions"),
    }
    if not any(raw.values()):
        return Selector(all=True)
    return parse_selector(raw, field="query")


class FleetOps:
    """Suspend/resume requests, operation reads and the inventory, for the HTTP handlers."""

    def __init__(self, *, engine: FleetChangeEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    @property
    def engine(self) -> FleetChangeEngine:
        return self._engine

    def authorize(self, requested_by: str) -> None:
        """403 unless the caller is allowed to change the fleet (an empty allow-list allows everyone)."""
        allowed = {p.lower() for p in self._settings.allowed_principals}
        if allowed and requested_by.lower() not in allowed:
            raise Forbidden(f"{requested_by} may not change the fleet (FLUXFLEET_ALLOWED_PRINCIPALS)")

    def request_change(
        self, *, kind: str, request: ChangeRequest, requested_by: str, idempotency_key: str | None
    ) -> ChangeAnswer:
        result = self._engine.start(
            kind=kind,
            params={},
            reason=request.reason,
            requested_by=requested_by,
            selection=request.target,
            configuration=request.configuration,
            idempotency_key=idempotency_key,
            dry_run=request.dry_run,
        )
        if result.operation_id is None:
            return ChangeAnswer(status=200, document=result.document, operation_id=None)
        document: Mapping[str, Any] = result.document
        if request.wait_seconds > 0 and document.get("status") == "running":
            document = self._engine.wait_for_final(result.operation_id, timeout_s=request.wait_seconds)
        if document.get("status") != "running":
            return ChangeAnswer(status=200, document=document, operation_id=result.operation_id)
        return ChangeAnswer(
            status=202,
            document={"operationId": result.operation_id, "status": "running"},
            operation_id=result.operation_id,
        )

    def inventory(self, *, selector: Selector) -> dict[str, Any]:
        """`GET /api/fleet`: every selected panel with its connectivity and Flux state."""
        check_subscriptions(selector, configured=self._settings.subscription_ids, field="query")
        fleet = self._engine.list_fleet()
        panels = (
            filter_panels(fleet, selector)
            if selector.all or not selector.clusters
            else _select_known(fleet, selector)
        )
        configuration = self._settings.flux_configuration

        def describe(panel: Panel) -> dict[str, Any]:
            entry: dict[str, Any] = {
                "id": panel.id,
                "name": panel.name,
                "subscription": panel.subscription,
                "resourceGroup": panel.resource_group,
                "location": panel.location,
                "tags": dict(panel.tags),
                "connectivity": panel.connectivity,
                "lastConnectivityTime": iso(panel.last_connectivity_time),
                "configuration": configuration,
                "configurationExists": False,
                "suspended": None,
                "complianceState": None,
                "sourceSyncedCommitId": None,
                "statusUpdatedAt": None,
            }
            try:
                state = self._engine.read_flux_state(panel, configuration)
            except NotFound:
                return entry
            except FluxfleetError as exc:
                entry["error"] = exc.message
                return entry
            if state is not None:
                doc = flux_state_document(state)
                entry.update(
                    configurationExists=True,
                    suspended=state.suspended,
                    complianceState=state.compliance_state,
                    sourceSyncedCommitId=state.source_synced_commit_id,
                    statusUpdatedAt=doc["statusUpdatedAt"],
                    provisioningState=state.provisioning_state,
                )
            return entry

        with ThreadPoolExecutor(
            max_workers=INVENTORY_READ_CONCURRENCY, thread_name_prefix="inventory"
        ) as pool:
            clusters = list(pool.map(describe, panels))
        return {
            "configuration": configuration,
            "total": len(clusters),
            "suspended": sum(1 for c in clusters if c["suspended"]),
            "offline": sum(1 for c in clusters if c["connectivity"] in ("Offline", "Expired")),
            "clusters": clusters,
        }


def _select_known(fleet: list[Panel], selector: Selector) -> list[Panel]:
    """Names must exist (422 listing unknown ones); an empty match is an empty answer, not an error."""
    try:
        return select(fleet, selector, field="query")
    except Unprocessable as exc:
        if exc.field == "query":  # "matches no panel"
            return []
        raise
