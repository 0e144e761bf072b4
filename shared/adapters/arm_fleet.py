"""ARM adapter of the fleet ports: connectedClusters and fluxConfigurations through the Azure SDKs.

Why it looks like this:
- Only this module (and the other adapters) touch the SDKs, lazily; services see `Panel`/`FluxState`.
- Every ARM response passes a `raw_response_hook` that tells the pacer what ARM's bucket still holds
  (`x-ms-ratelimit-remaining-subscription-*`) and about every 429 with its `Retry-After` — including
  the ones azure-core's retry policy retries on its own, and the LRO status polls (which are reads).
- Writes are PATCHes (`begin_update`), never PUTs: a PUT resets every field it does not name. The
  LRO is not polled here (`polling=False`): the engine follows it through `provisioningState`.
- The time ARM accepted a write is taken from ARM's own clock (the resource's
  `systemData.lastModifiedAt`, else the `Date` header), because convergence is judged against the
  agent's report times, which are on that clock too.
- Wire JSON is read as `TypedDict`s through `as_dict()`, so one parser serves every api-version.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from azure.core.exceptions import AzureError

from shared.errors import (
    FluxfleetError,
    NotFound,
    from_azure_error,
)
from shared.models import ClusterId, FluxState, ObjectStatus, Panel, SubscriptionId, parse_cluster_id
from shared.ports import AcceptedWrite, RateKind, RateObserver

if TYPE_CHECKING:
    from azure.core.pipeline import PipelineResponse

log = logging.getLogger("fluxfleet.arm")

ARC_CLUSTER_RP = "Microsoft.Kubernetes"
ARC_CLUSTER_RESOURCE = "connectedClusters"
# ARM codes of a 404 that mean the *cluster* is gone, not just the Flux configuration.
PARENT_MISSING_CODES = frozenset({"ParentResourceNotFound", "ResourceGroupNotFound"})


# --- wire shapes ----------------------------------------------------------------------------------
class SystemDataWire(TypedDict, total=False):
    lastModifiedAt: str


class ConnectedClusterPropertiesWire(TypedDict, total=False):
    connectivityStatus: str
    lastConnectivityTime: str


class ConnectedClusterWire(TypedDict):
    id: str
    name: str
    location: NotRequired[str]
    tags: NotRequired[dict[str, str] | None]
    properties: NotRequired[ConnectedClusterPropertiesWire]


class StatusConditionWire(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str


class ObjectStatusWire(TypedDict, total=False):
    name: str
    namespace: str
    kind: str
    complianceState: str
    statusConditions: list[StatusConditionWire] | None


class GitRepositoryWire(TypedDict, total=False):
    httpsUser: str | None
    provider: str | None


class FluxPropertiesWire(TypedDict, total=False):
    suspend: bool
    complianceState: str
    statuses: list[ObjectStatusWire] | None
    sourceSyncedCommitId: str | None
    sourceUpdatedAt: str | None
    statusUpdatedAt: str | None
    provisioningState: str | None
    errorMessage: str | None
    gitRepository: GitRepositoryWire | None


class FluxConfigurationWire(TypedDict, total=False):
    id: str
    name: str
    systemData: SystemDataWire
    properties: FluxPropertiesWire


def parse_time(value: object) -> datetime | None:
    """ARM's ISO-8601 timestamps (with `Z` or an offset) → aware UTC datetime; None for empty."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def panel_from_wire(raw: ConnectedClusterWire) -> Panel:
    subscription, group, name = parse_cluster_id(raw["id"])
    props = raw.get("properties") or {}
    return Panel(
        id=ClusterId(raw["id"]),
        name=raw.get("name") or name,
        subscription=SubscriptionId(subscription),
        resource_group=group,
        location=raw.get("location") or "",
        tags=dict(raw.get("tags") or {}),
        connectivity=str(props.get("connectivityStatus") or "Unknown"),
        last_connectivity_time=parse_time(props.get("lastConnectivityTime")),
    )


def flux_state_from_wire(raw: FluxConfigurationWire, *, observed_at: datetime | None = None) -> FluxState:
    props = raw.get("properties") or {}
    git = props.get("gitRepository") or {}
    statuses = []
    for status in props.get("statuses") or []:
        ready = next((c for c in status.get("statusConditions") or [] if c.get("type") == "Ready"), None)
        statuses.append(
            ObjectStatus(
                kind=status.get("kind") or "",
                name=status.get("name") or "",
                namespace=status.get("namespace") or "",
                compliance_state=status.get("complianceState") or "Unknown",
                ready=None if ready is None else str(ready.get("status", "")).lower() == "true",
                reason=None if ready is None else ready.get("reason"),
                message=None if ready is None else ready.get("message"),
                last_transition_time=None if ready is None else parse_time(ready.get("lastTransitionTime")),
            )
        )
    return FluxState(
        configuration=raw.get("name") or "",
        suspended=bool(props.get("suspend", False)),
        compliance_state=props.get("complianceState") or "Unknown",
        statuses=tuple(statuses),
        source_synced_commit_id=props.get("sourceSyncedCommitId") or None,
        source_updated_at=parse_time(props.get("sourceUpdatedAt")),
        status_updated_at=parse_time(props.get("statusUpdatedAt")),
        https_user=git.get("httpsUser"),
        provisioning_state=props.get("provisioningState"),
        provider=git.get("provider"),
        error_message=props.get("errorMessage") or None,
        modified_at=parse_time((raw.get("systemData") or {}).get("lastModifiedAt")),
        observed_at=observed_at,
    )


# --- counters (benchmarks, logs) ---------------------------------------------------------------------
@dataclass
class ArmCallStats:
    """What this process sent to ARM and how often ARM said 429 (every attempt, retries included)."""

    reads: int = 0
    writes: int = 0
    reads_throttled: int = 0
    writes_throttled: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class ArmFleet:
    """`FleetReader` and `FluxWriter` over the ARM SDK clients of `shared.adapters.clients`."""

    def __init__(self, clients: Any, *, observer: RateObserver | None = None) -> None:
        self._clients = clients
        self._observer = observer
        self._stats_lock = threading.Lock()
        self.stats = ArmCallStats()

    # --- FleetReader ----------------------------------------------------------------------------
    def list_panels(self, *, subscriptions: Sequence[str]) -> list[Panel]:
        panels: list[Panel] = []
        for subscription in subscriptions:
            client = self._clients.connected_clusters(subscription)
            try:
                for item in client.connected_cluster.list_by_subscription(
                    raw_response_hook=self._hook(subscription)
                ):
                    panels.append(panel_from_wire(cast(ConnectedClusterWire, item.as_dict())))
            except (AzureError, OSError) as exc:
                raise _mapped(exc, what=f"list connected clusters of subscription {subscription}") from exc
        return panels

    def get_panel(self, *, panel_id: ClusterId) -> Panel:
        subscription, group, name = parse_cluster_id(panel_id)
        client = self._clients.connected_clusters(subscription)
        try:
            item = client.connected_cluster.get(group, name, raw_response_hook=self._hook(subscription))
        except (AzureError, OSError) as exc:
            raise _mapped(exc, what=f"GET connected cluster {name}") from exc
        return panel_from_wire(cast(ConnectedClusterWire, item.as_dict()))

    def get_flux_state(self, *, panel: Panel, configuration: str) -> FluxState | None:
        client = self._clients.flux_configurations(panel.subscription)
        responses: list[Any] = []
        try:
            item = client.flux_configurations.get(
                panel.resource_group,
                ARC_CLUSTER_RP,
                ARC_CLUSTER_RESOURCE,
                panel.name,
                configuration,
                raw_response_hook=self._hook(panel.subscription, sink=responses),
            )
        except (AzureError, OSError) as exc:
            mapped = _mapped(exc, what=f"GET flux configuration {configuration} of {panel.name}")
            if isinstance(mapped, NotFound) and _error_code(exc) not in PARENT_MISSING_CODES:
                return None
            raise mapped from exc
        observed = http_date(responses[-1].headers.get("Date")) if responses else None
        return flux_state_from_wire(cast(FluxConfigurationWire, item.as_dict()), observed_at=observed)

    # --- FluxWriter -----------------------------------------------------------------------------------
    def begin_patch(self, *, panel: Panel, configuration: str, patch: Mapping[str, Any]) -> AcceptedWrite:
        client = self._clients.flux_configurations(panel.subscription)
        responses: list[Any] = []
        what = f"PATCH flux configuration {configuration} of {panel.name}"
        try:
            # polling=False: ARM's answer to the PATCH is what this returns; the LRO is followed through
            # the resource's provisioningState at verify time (polls would spend the read budget).
            client.flux_configurations.begin_update(
                panel.resource_group,
                ARC_CLUSTER_RP,
                ARC_CLUSTER_RESOURCE,
                panel.name,
                configuration,
                {"properties": dict(patch)},
                polling=False,
                raw_response_hook=self._hook(panel.subscription, sink=responses),
            )
        except (AzureError, OSError) as exc:
            raise _mapped(exc, what=what) from exc
        accepted = next(
            (r for r in reversed(responses) if r.request.method == "PATCH" and r.status_code in (200, 202)),
            None,
        )
        return AcceptedWrite(
            accepted_at=_accepted_at(accepted), changed=accepted is None or accepted.status_code != 200
        )

    # --- response hook ----------------------------------------------------------------------------------
    def _hook(
        self, subscription: str, *, sink: list[Any] | None = None
    ) -> Callable[[PipelineResponse[Any, Any]], None]:
        def hook(pipeline_response: PipelineResponse[Any, Any]) -> None:
            response = pipeline_response.http_response
            method = response.request.method.upper()
            kind: RateKind = "reads" if method in ("GET", "HEAD") else "writes"
            throttled = response.status_code == 429
            with self._stats_lock:
                if kind == "reads":
                    self.stats.reads += 1
                    self.stats.reads_throttled += throttled
                else:
                    self.stats.writes += 1
                    self.stats.writes_throttled += throttled
            if sink is not None:
                sink.append(response)
            if self._observer is None:
                return
            headers = response.headers
            remaining = [
                value
                for name in (
                    f"x-ms-ratelimit-remaining-subscription-{kind}",
                    f"x-ms-ratelimit-remaining-subscription-global-{kind}",
                )
                if (value := _int(headers.get(name))) is not None
            ]
            self._observer.observe(
                subscription=subscription,
                kind=kind,
                remaining=min(remaining) if remaining else None,
                retry_after_s=_float(headers.get("Retry-After")) if throttled else None,
                throttled=throttled,
            )

        return hook


def _accepted_at(response: Any) -> datetime:
    """ARM's clock at acceptance: the resource's systemData.lastModifiedAt, else `Date`, else ours."""
    if response is not None:
        try:
            body = response.json()
        except ValueError:  # a body that is not JSON just has no systemData
            body = None
        if isinstance(body, dict):
            modified = parse_time((body.get("systemData") or {}).get("lastModifiedAt"))
            if modified is not None:
                return modified
        dated = http_date(response.headers.get("Date"))
        if dated is not None:
            return dated
    return datetime.now(UTC)


def _mapped(exc: BaseException, *, what: str) -> FluxfleetError:
    if isinstance(exc, FluxfleetError):
        return exc
    return from_azure_error(exc, what=what)


def _error_code(exc: BaseException) -> str | None:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    return code if isinstance(code, str) else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
