"""`GET /api/fleet/health` and `GET /api/fleet/panels/{name}`: the fleet's causes, and one panel in full.

Why two reads: the fleet-wide answer comes from Resource Graph (`FleetGraph`: one query per 1,000
panels, no per-panel ARM GET), because at 10,000 panels one paced ARM GET per panel takes minutes and
spends the read budget the fleet-change engine needs. One panel's detail is read from ARM itself (a
handful of GETs), because whoever asks about one panel is about to act on it and Resource Graph lags
ARM by seconds. The repository's HEAD is read once per request, so every row can say whether the
panel runs it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.config import env_name
from shared.errors import FluxfleetError, InvalidInput, MissingSetting, NotFound, Unprocessable, safe_text
from shared.models import FluxState, Panel, Selector, cluster_key, parse_cluster_id
from shared.models.health import CAUSE_PRIORITY, Cause, PanelView
from shared.ports import FleetGraph, OperationStore
from shared.services.fleet.health import Diagnosis, applied_revision, classify
from shared.services.fleet.requests import parse_inventory_query
from shared.services.fleet.selection import check_subscriptions, filter_panels, select
from shared.timestamps import format_optional

# `GET /api/fleet/health?limit=`: default and maximum page size.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Recent operations looked through for the ones that touched a panel (newest first).
RECENT_OPERATIONS = 50
# The microsoft.flux extension's instance name on every panel (`az k8s-extension create --name flux`).
FLUX_EXTENSION_NAME = "flux"
HEALTH_QUERY = frozenset({"limit", "cursor", "cause"})
_DIGITS = re.compile(r"[0-9]{1,6}")


@dataclass(frozen=True)
class HealthQuery:
    selector: Selector
    limit: int = DEFAULT_LIMIT
    cursor: tuple[str, str] | None = None  # (name lower-case, panel key) of the last panel of the page before
    causes: frozenset[Cause] = frozenset()


def parse_health_query(params: Mapping[str, str]) -> HealthQuery:
    """The inventory's selectors, plus `limit` (1-1000), `cursor` (from `nextCursor`), `cause` (a,b)."""
    selector = parse_inventory_query({k: v for k, v in params.items() if k not in HEALTH_QUERY})
    raw_limit = params.get("limit") or ""
    # ASCII digits, a few of them (as functions.http.query_int): `int()` of 5,000 digits is an error.
    if raw_limit and not (_DIGITS.fullmatch(raw_limit) and 1 <= int(raw_limit) <= MAX_LIMIT):
        raise InvalidInput("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    causes: set[Cause] = set()
    for item in (params.get("cause") or "").split(","):
        if item.strip():
            try:
                causes.add(Cause(item.strip()))
            except ValueError:
                allowed = ", ".join(c.value for c in CAUSE_PRIORITY)
                raise InvalidInput("cause", f"unknown cause {item.strip()!r} (one of: {allowed})") from None
    return HealthQuery(
        selector=selector,
        limit=int(raw_limit) if raw_limit else DEFAULT_LIMIT,
        cursor=_decode_cursor(params.get("cursor") or ""),
        causes=frozenset(causes),
    )


class PanelDetailReader(Protocol):
    """The ARM reads of one panel's detail (implemented by the ARM boundary, `ArmFleet`)."""

    def get_panel(self, *, panel_id: Any) -> Panel: ...

    def get_flux_detail(
        self, *, panel: Panel, configuration: str
    ) -> tuple[FluxState, dict[str, Any]] | None: ...

    def get_extension(self, *, panel: Panel, name: str) -> dict[str, Any] | None: ...


class RememberedCauses(Protocol):
    """The last health snapshot (`shared.services.fleet.health_snapshot`): panel key → row with `cause`
    and `since`, so `since` is when fluxfleet first saw the cause, not only Flux's transition time."""

    def rows(self) -> Mapping[str, Any]: ...


class CredentialLookup(Protocol):
    def panel_credential(self, secret: str, panel_key: str) -> Any: ...


class FleetHealth:
    """The health document over `FleetGraph`, and one panel's detail over ARM."""

    def __init__(
        self,
        *,
        graph: FleetGraph,
        arm: PanelDetailReader,
        subscriptions: Sequence[str],
        configuration: str,
        head: Callable[[], str | None],
        ledger: Callable[[], CredentialLookup],
        secret_name: str,
        operations: Callable[[], OperationStore],
        snapshots: Callable[[], RememberedCauses] | None = None,
    ) -> None:
        self._graph = graph
        self._arm = arm
        self._subscriptions = tuple(subscriptions)
        self._configuration = configuration
        self._head = head
        self._ledger = ledger
        self._secret_name = secret_name
        self._operations = operations
        self._snapshots = snapshots

    # --- the fleet -------------------------------------------------------------------------------------
    def views(self, *, subscriptions: Sequence[str] | None = None) -> list[PanelView]:
        if not self._subscriptions:
            raise MissingSetting(env_name("subscription_ids"))
        return self._graph.panel_views(subscriptions=list(subscriptions or self._subscriptions))

    def report(self, query: HealthQuery) -> dict[str, Any]:
        selector = query.selector
        check_subscriptions(selector, configured=self._subscriptions, field="query")
        views = self.views(subscriptions=selector.subscriptions or None)
        by_key = {view.panel.key: view for view in views}
        chosen = _selected([view.panel for view in views], selector)
        head = self._read_head()
        diagnosed = [(by_key[panel.key], classify(by_key[panel.key])) for panel in chosen]
        counts = Counter(diagnosis.cause for _, diagnosis in diagnosed)
        if query.causes:
            diagnosed = [(v, d) for v, d in diagnosed if d.cause in query.causes]
        if query.cursor is not None:
            diagnosed = [(v, d) for v, d in diagnosed if _sort_key(v.panel) > query.cursor]
        page = diagnosed[: query.limit]
        more = len(diagnosed) > query.limit
        remembered = self._remembered() if page else {}
        return {
            "configuration": self._configuration,
            "total": len(chosen),
            "counts": {cause.value: counts.get(cause, 0) for cause in CAUSE_PRIORITY},
            "head": head,
            "panels": [
                _row(view, diagnosis, head, remembered.get(view.panel.key)) for view, diagnosis in page
            ],
            "nextCursor": _encode_cursor(_sort_key(page[-1][0].panel)) if more and page else None,
        }

    # --- one panel -------------------------------------------------------------------------------------
    def panel(self, ref: str) -> dict[str, Any]:
        """Everything about one panel (name or connectedClusters ARM id); NotFound when unknown."""
        target = self._resolve(ref)
        panel = self._arm.get_panel(panel_id=target.id)
        detail = self._arm.get_flux_detail(panel=panel, configuration=self._configuration)
        extension = self._arm.get_extension(panel=panel, name=FLUX_EXTENSION_NAME)
        ext_props: dict[str, Any] = dict((extension or {}).get("properties") or {})
        flux, resource = detail if detail is not None else (None, {})
        view = PanelView(
            panel=panel,
            flux=flux,
            extension_version=str(ext_props.get("currentVersion") or ext_props.get("version") or ""),
            extension_state=str(ext_props.get("provisioningState") or ""),
        )
        diagnosis = classify(view)
        head = self._read_head()
        return {
            **_row(view, diagnosis, head),
            "location": panel.location,
            "tags": dict(panel.tags),
            "lastConnectivityTime": format_optional(panel.last_connectivity_time),
            "hint": diagnosis.hint,
            "extension": None
            if extension is None
            else {
                "name": extension.get("name"),
                "type": ext_props.get("extensionType"),
                "version": ext_props.get("currentVersion") or ext_props.get("version"),
                "autoUpgradeMinorVersion": ext_props.get("autoUpgradeMinorVersion"),
                "provisioningState": ext_props.get("provisioningState"),
                "error": _scrubbed(ext_props.get("errorInfo")),
            },
            "configuration": None if flux is None else _spec_summary(flux, resource),
            "objects": _objects(resource),
            "credential": self._credential(panel),
            "operations": self._touching(panel),
        }

    def _resolve(self, ref: str) -> Panel:
        ref = ref.strip()
        if not ref:
            raise InvalidInput("name", "a panel name or connectedClusters ARM id is required")
        if "/" in ref:  # an ARM id (a catch-all route hands it over without its leading slash)
            ref = "/" + ref.lstrip("/")
            try:
                subscription, _, _ = parse_cluster_id(ref)
            except ValueError as exc:
                raise InvalidInput("name", str(exc)) from None
            if subscription.lower() not in {s.lower() for s in self._subscriptions}:
                raise NotFound(f"panel {ref} is not in a subscription this app manages")
            views = self.views(subscriptions=[subscription])
            found = [v.panel for v in views if v.panel.id.lower() == ref.lower().rstrip("/")]
        else:
            found = [v.panel for v in self.views() if v.panel.name.lower() == ref.lower()]
        if not found:
            raise NotFound(f"no panel {ref!r} in the fleet")
        if len(found) > 1:
            raise Unprocessable(
                "name", f"{len(found)} panels are named {ref!r}: use the ARM id", ids=[p.id for p in found]
            )
        return found[0]

    def _remembered(self) -> Mapping[str, Any]:
        if self._snapshots is None:
            return {}
        try:
            return self._snapshots().rows()
        except FluxfleetError:
            return {}  # no snapshot store (storage not configured or unreachable): Flux's times only

    def _read_head(self) -> str | None:
        try:
            return self._head()
        except FluxfleetError:
            return None  # HEAD unknown (Azure DevOps not configured or unreachable): rows say so

    def _credential(self, panel: Panel) -> dict[str, Any] | None:
        try:
            record = self._ledger().panel_credential(self._secret_name, panel.key)
        except FluxfleetError:
            return None
        if record is None:
            return None
        return {
            "secret": self._secret_name,
            "version": record.version,
            "state": str(record.state),
            "previousVersion": record.previous_version,
            "updatedAt": format_optional(record.updated_at),
        }

    def _touching(self, panel: Panel) -> list[dict[str, Any]]:
        try:
            store = self._operations()
            touched = []
            for operation in store.list_operations(kind=None, limit=RECENT_OPERATIONS):
                rows = store.get_panels(operation.id, keys=[panel.key])
                for row in rows:
                    touched.append(
                        {
                            "operationId": operation.id,
                            "kind": operation.kind,
                            "status": operation.status,
                            "reason": operation.reason,
                            "requestedBy": operation.requested_by,
                            "createdAt": format_optional(operation.created_at),
                            "state": str(row.state),
                            "detail": row.detail,
                        }
                    )
            return touched
        except FluxfleetError:
            return []


def _selected(panels: list[Panel], selector: Selector) -> list[Panel]:
    if selector.all or not selector.clusters:
        return filter_panels(panels, selector)
    try:
        return select(panels, selector, field="query")
    except Unprocessable as exc:
        if exc.field == "query":  # matches no panel: an empty answer
            return []
        raise


def _row(view: PanelView, diagnosis: Diagnosis, head: str | None, remembered: Any = None) -> dict[str, Any]:
    panel = view.panel
    revision = applied_revision(view.flux)
    since = diagnosis.since
    if remembered is not None and remembered.cause == diagnosis.cause.value:
        since = remembered.since
    return {
        "name": panel.name,
        "id": panel.id,
        "subscription": panel.subscription,
        "resourceGroup": panel.resource_group,
        "ring": panel.tag("ring"),
        "connectivity": panel.connectivity,
        "cause": diagnosis.cause.value,
        "message": diagnosis.message,
        "object": diagnosis.object,
        "since": format_optional(since),
        "revision": revision,
        "head": head,
        "atHead": None if head is None or revision is None else revision == head,
    }


def _spec_summary(flux: FluxState, resource: Mapping[str, Any]) -> dict[str, Any]:
    props: Mapping[str, Any] = resource.get("properties") or {}
    git: Mapping[str, Any] = props.get("gitRepository") or {}
    ref: Mapping[str, Any] = git.get("repositoryRef") or {}
    kustomizations: Mapping[str, Any] = props.get("kustomizations") or {}
    return {
        "name": flux.configuration,
        "suspend": flux.suspended,
        "complianceState": flux.compliance_state,
        "provisioningState": flux.provisioning_state,
        "scope": props.get("scope"),
        "namespace": props.get("namespace"),
        "sourceKind": props.get("sourceKind"),
        "url": safe_text(git.get("url") or "") or None,
        "branch": ref.get("branch"),
        "provider": git.get("provider"),
        "httpsUser": git.get("httpsUser"),
        "syncIntervalInSeconds": git.get("syncIntervalInSeconds"),
        "kustomizations": {
            name: {
                "path": (spec or {}).get("path"),
                "dependsOn": (spec or {}).get("dependsOn"),
                "prune": (spec or {}).get("prune"),
                "wait": (spec or {}).get("wait"),
                "syncIntervalInSeconds": (spec or {}).get("syncIntervalInSeconds"),
            }
            for name, spec in kustomizations.items()
        },
        "sourceSyncedCommitId": flux.source_synced_commit_id,
        "sourceUpdatedAt": format_optional(flux.source_updated_at),
        "statusUpdatedAt": format_optional(flux.status_updated_at),
        "errorMessage": safe_text(flux.error_message, limit=1000) if flux.error_message else None,
    }


def _objects(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every Flux object Arc reports, with every condition (not just Ready), messages scrubbed."""
    props: Mapping[str, Any] = resource.get("properties") or {}
    return [
        {
            "kind": status.get("kind"),
            "name": status.get("name"),
            "namespace": status.get("namespace"),
            "complianceState": status.get("complianceState"),
            "appliedBy": status.get("appliedBy"),
            "conditions": [
                {
                    "type": c.get("type"),
                    "status": c.get("status"),
                    "reason": c.get("reason"),
                    "message": safe_text(c.get("message") or "", limit=1000),
                    "lastTransitionTime": c.get("lastTransitionTime"),
                }
                for c in status.get("statusConditions") or []
            ],
        }
        for status in props.get("statuses") or []
    ]


def _scrubbed(value: Any) -> str | None:
    """An extension's `errorInfo` as scrubbed text (the RP's words, which may quote a Helm command)."""
    if not value:
        return None
    if isinstance(value, Mapping):
        return safe_text(f"{value.get('code', '')}: {value.get('message', '')}", limit=1000)
    return safe_text(value, limit=1000)


def _sort_key(panel: Panel) -> tuple[str, str]:
    return (panel.name.lower(), cluster_key(panel.subscription, panel.resource_group, panel.name))


def _encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[str, str] | None:
    if not raw:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor", "is not a cursor this API gave (use nextCursor as is)") from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise InvalidInput("cursor", "is not a cursor this API gave (use nextCursor as is)")
    return (value[0], value[1])
