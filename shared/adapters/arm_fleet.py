"""The app's one ARM boundary: connectedClusters, fluxConfigurations and extensions through the Azure SDKs.

Over 500 lines on purpose: it is the *one* ARM boundary (every ARM request of the app is paced here), so
the conformance reads and writes (issue 14) live here too rather than in a second, unpaced adapter.

Why it looks like this:
- ARM's budget (reads 250 / 25 per s, writes and deletes 200 / 10 per s) belongs to the subscription and
  the identity, not to a caller, so every ARM request of the app goes through this one adapter: it owns
  the ARM SDK clients, and each of them carries `ArmGate`, a per-retry pipeline policy that takes a token
  from the shared pacer before *every* HTTP request (each page of a list, each retry azure-core makes, each
  LRO poll) and tells the pacer what ARM's bucket still holds (`x-ms-ratelimit-remaining-subscription-*`)
  and about every 429 with its `Retry-After` — as kopf's single API request loop owns backoff for every
  call. The fleet-change engine, the inventory, image follow-ups, workload-identity readiness and deep
  health all read through it; none of them can reach ARM another way.
- Only this module (and the other adapters) touch the SDKs, lazily; services see `Panel`/`FluxState`.
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
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.core.pipeline.policies import SansIOHTTPPolicy

from shared.adapters.clients import ArmClientKind, AzureClients
from shared.errors import (
    Busy,
    Conflict,
    FluxfleetError,
    NotFound,
    from_azure_error,
    retry_after_of,
)
from shared.models import (
    ClusterId,
    FluxState,
    ObjectStatus,
    Panel,
    SubscriptionId,
    cluster_key,
    parse_cluster_id,
)
from shared.ports import AcceptedWrite, Pacer, RateKind, RateObserver
from shared.timestamps import parse_time

if TYPE_CHECKING:
    from azure.core.pipeline import PipelineRequest, PipelineResponse
    from azure.mgmt.hybridkubernetes import ConnectedKubernetesClient
    from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
        KubernetesConfigurationFluxConfigurationsMgmtClient,
    )

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


# --- the gate every ARM request passes -------------------------------------------------------------------
@dataclass
class ArmCallStats:
    """What this process sent to ARM and how often ARM said 429 (every attempt, retries included)."""

    reads: int = 0
    writes: int = 0
    reads_throttled: int = 0
    writes_throttled: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def rate_kind(method: str) -> RateKind:
    """ARM's operation type of a request: its buckets are per type (request-limits-and-throttling.md)."""
    upper = method.upper()
    if upper in ("GET", "HEAD"):
        return "reads"
    return "deletes" if upper == "DELETE" else "writes"


def subscription_in(url: str) -> str | None:
    """The subscription an ARM request URL is scoped to (`/subscriptions/{id}/...`)."""
    parts = [part for part in urlsplit(url).path.split("/") if part]
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1]
    return None


class ArmGate(SansIOHTTPPolicy[Any, Any]):
    """A per-retry pipeline policy on every ARM client: pace before each request, observe each answer.

    Per retry (after azure-core's `RetryPolicy`), so the retries azure-core makes on its own after a 429
    or a 5xx take a token too and their 429s reach the pacer; `raw_request_hook` would run once per call.
    """

    def __init__(self, *, pacer: Pacer | None, observer: RateObserver | None) -> None:
        self._pacer = pacer
        self._observer = observer
        self._stats_lock = threading.Lock()
        self.stats = ArmCallStats()

    def on_request(self, request: PipelineRequest[Any]) -> None:
        subscription = subscription_in(request.http_request.url)
        if self._pacer is not None and subscription is not None:
            self._pacer.acquire(subscription=subscription, kind=rate_kind(request.http_request.method))

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        http = response.http_response
        kind = rate_kind(http.request.method)
        throttled = http.status_code == 429
        with self._stats_lock:
            if kind == "reads":
                self.stats.reads += 1
                self.stats.reads_throttled += throttled
            else:
                self.stats.writes += 1
                self.stats.writes_throttled += throttled
        subscription = subscription_in(http.request.url)
        if self._observer is None or subscription is None:
            return
        headers = http.headers
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


class ArmFleet:
    """`FleetReader` and `FluxWriter` (and the other ARM reads the app makes), behind one `ArmGate`.

    Built once per worker by the composition root with the shared pacer as both `pacer` and
    `observer`; its SDK clients are built on first use per subscription (`shared.adapters.clients`).
    """

    def __init__(
        self, clients: AzureClients, *, pacer: Pacer | None = None, observer: RateObserver | None = None
    ) -> None:
        self._clients = clients
        self._gate = ArmGate(pacer=pacer, observer=observer)
        self._sdk: dict[tuple[str, str], Any] = {}
        self._sdk_lock = threading.Lock()

    @property
    def stats(self) -> ArmCallStats:
        return self._gate.stats

    # --- the SDK clients, each with the gate ----------------------------------------------------------
    def _client(self, kind: ArmClientKind, subscription: str) -> Any:
        with self._sdk_lock:
            client = self._sdk.get((kind, subscription))
            if client is None:
                client = self._sdk[(kind, subscription)] = self._clients.arm_client(
                    kind, subscription, per_retry_policies=[self._gate]
                )
            return client

    def _clusters(self, subscription: str) -> ConnectedKubernetesClient:
        client: ConnectedKubernetesClient = self._client("connected_clusters", subscription)
        return client

    def _flux(self, subscription: str) -> KubernetesConfigurationFluxConfigurationsMgmtClient:
        client: KubernetesConfigurationFluxConfigurationsMgmtClient = self._client(
            "flux_configurations", subscription
        )
        return client

    def _extensions(self, subscription: str) -> Any:
        return self._client("extensions", subscription)

    # --- FleetReader ----------------------------------------------------------------------------
    def list_panels(self, *, subscriptions: Sequence[str]) -> list[Panel]:
        panels: list[Panel] = []
        for subscription in subscriptions:
            try:
                for item in self._clusters(subscription).connected_cluster.list_by_subscription():
                    panels.append(panel_from_wire(cast(ConnectedClusterWire, item.as_dict())))
            except (AzureError, OSError) as exc:
                raise _mapped(exc, what=f"list connected clusters of subscription {subscription}") from exc
        return panels

    def get_panel(self, *, panel_id: ClusterId) -> Panel:
        subscription, group, name = parse_cluster_id(panel_id)
        try:
            item = self._clusters(subscription).connected_cluster.get(group, name)
        except (AzureError, OSError) as exc:
            raise _mapped(exc, what=f"GET connected cluster {name}") from exc
        return panel_from_wire(cast(ConnectedClusterWire, item.as_dict()))

    def get_flux_state(self, *, panel: Panel, configuration: str) -> FluxState | None:
        responses: list[Any] = []
        try:
            item = self._flux(panel.subscription).flux_configurations.get(
                panel.resource_group,
                ARC_CLUSTER_RP,
                ARC_CLUSTER_RESOURCE,
                panel.name,
                configuration,
                raw_response_hook=_sink(responses),
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
        responses: list[Any] = []
        what = f"PATCH flux configuration {configuration} of {panel.name}"
        try:
            # polling=False: ARM's answer to the PATCH is what this returns; the LRO is followed through
            # the resource's provisioningState at verify time (polls would spend the read budget).
            self._flux(panel.subscription).flux_configurations.begin_update(
                panel.resource_group,
                ARC_CLUSTER_RP,
                ARC_CLUSTER_RESOURCE,
                panel.name,
                configuration,
                {"properties": dict(patch)},
                polling=False,
                raw_response_hook=_sink(responses),
            )
        except (AzureError, OSError) as exc:
            mapped = _mapped(exc, what=what)
            if isinstance(mapped, Conflict):
                # A write's 409: the configuration has another operation in progress. Transient.
                raise Busy(mapped.message, retry_after=retry_after_of(exc)) from exc
            raise mapped from exc
        accepted = next(
            (r for r in reversed(responses) if r.request.method == "PATCH" and r.status_code in (200, 202)),
            None,
        )
        return AcceptedWrite(
            accepted_at=_accepted_at(accepted), changed=accepted is None or accepted.status_code != 200
        )

    # --- conformance (issue 14): whole resources as ARM returns them, and PUT/DELETE -------------
    def get_flux_resource(self, *, panel: Panel, configuration: str) -> dict[str, Any] | None:
        """The configuration as the SDK's `as_dict()` gives it (every 2025-04-01 property), None if absent."""
        try:
            item = self._flux(panel.subscription).flux_configurations.get(
                panel.resource_group, ARC_CLUSTER_RP, ARC_CLUSTER_RESOURCE, panel.name, configuration
            )
        except (AzureError, OSError) as exc:
            mapped = _mapped(exc, what=f"GET flux configuration {configuration} of {panel.name}")
            if isinstance(mapped, NotFound) and _error_code(exc) not in PARENT_MISSING_CODES:
                return None
            raise mapped from exc
        return dict(item.as_dict())

    def get_flux_detail(self, *, panel: Panel, configuration: str) -> tuple[FluxState, dict[str, Any]] | None:
        """One GET of the configuration, parsed and whole (fleet health's panel detail), None if absent."""
        resource = self.get_flux_resource(panel=panel, configuration=configuration)
        if resource is None:
            return None
        return flux_state_from_wire(cast(FluxConfigurationWire, resource)), resource

    def get_extension(self, *, panel: Panel, name: str) -> dict[str, Any] | None:
        """The extension as `as_dict()` gives it, None when the panel has none of that name."""
        try:
            item = self._extensions(panel.subscription).extensions.get(
                panel.resource_group, ARC_CLUSTER_RP, ARC_CLUSTER_RESOURCE, panel.name, name
            )
        except (AzureError, OSError) as exc:
            mapped = _mapped(exc, what=f"GET extension {name} of {panel.name}")
            if isinstance(mapped, NotFound) and _error_code(exc) not in PARENT_MISSING_CODES:
                return None
            raise mapped from exc
        return dict(item.as_dict())

    def put_extension(self, *, panel: Panel, name: str, body: Mapping[str, Any]) -> AcceptedWrite:
        """Extensions_Create (install or upgrade); the LRO is followed via provisioningState later."""
        client = self._extensions(panel.subscription).extensions
        return self._begin_write(
            "PUT",
            f"PUT extension {name} of {panel.name}",
            lambda hook: client.begin_create(
                panel.resource_group,
                ARC_CLUSTER_RP,
                ARC_CLUSTER_RESOURCE,
                panel.name,
                name,
                dict(body),
                polling=False,
                raw_response_hook=hook,
            ),
        )

    def patch_extension(self, *, panel: Panel, name: str, properties: Mapping[str, Any]) -> AcceptedWrite:
        """Extensions_Update: a merge patch of `properties` (configurationSettings merge key by key)."""
        client = self._extensions(panel.subscription).extensions
        return self._begin_write(
            "PATCH",
            f"PATCH extension {name} of {panel.name}",
            lambda hook: client.begin_update(
                panel.resource_group,
                ARC_CLUSTER_RP,
                ARC_CLUSTER_RESOURCE,
                panel.name,
                name,
                {"properties": dict(properties)},
                polling=False,
                raw_response_hook=hook,
            ),
        )

    def put_flux_configuration(
        self, *, panel: Panel, configuration: str, body: Mapping[str, Any]
    ) -> AcceptedWrite:
        """FluxConfigurations_CreateOrUpdate. `body` holds the PAT (protected settings): never logged."""
        client = self._flux(panel.subscription).flux_configurations
        return self._begin_write(
            "PUT",
            f"PUT flux configuration {configuration} of {panel.name}",
            lambda hook: client.begin_create_or_update(
                panel.resource_group,
                ARC_CLUSTER_RP,
                ARC_CLUSTER_RESOURCE,
                panel.name,
                configuration,
                dict(body),
                polling=False,
                raw_response_hook=hook,
            ),
        )

    def delete_flux_configuration(self, *, panel: Panel, configuration: str) -> AcceptedWrite:
        """FluxConfigurations_Delete (not forced: the agent removes its objects); followed via 404 later."""
        client = self._flux(panel.subscription).flux_configurations
        return self._begin_write(
            "DELETE",
            f"DELETE flux configuration {configuration} of {panel.name}",
            lambda hook: client.begin_delete(
                panel.resource_group,
                ARC_CLUSTER_RP,
                ARC_CLUSTER_RESOURCE,
                panel.name,
                configuration,
                polling=False,
                raw_response_hook=hook,
            ),
        )

    def _begin_write(self, method: str, what: str, send: Callable[[Any], Any]) -> AcceptedWrite:
        responses: list[Any] = []
        try:
            send(_sink(responses))
        except (AzureError, OSError) as exc:
            mapped = _mapped(exc, what=what)
            if isinstance(mapped, Conflict):
                raise Busy(mapped.message, retry_after=retry_after_of(exc)) from exc
            raise mapped from exc
        accepted = next(
            (r for r in reversed(responses) if r.request.method == method and r.status_code < 300), None
        )
        return AcceptedWrite(
            accepted_at=_accepted_at(accepted),
            changed=accepted is None or accepted.status_code != 200 or method == "PUT",
        )

    # --- what else the app reads from ARM ---------------------------------------------------------
    def list_security_profiles(self, *, subscription: str) -> dict[str, tuple[bool, bool]]:
        """Per panel key: (workload identity on, OIDC issuer on), from one connectedClusters list."""
        found: dict[str, tuple[bool, bool]] = {}
        try:
            for cluster in self._clusters(subscription).connected_cluster.list_by_subscription():
                resource_group = str(cluster.id).split("/")[4]
                security = getattr(cluster, "security_profile", None)
                workload = getattr(security, "workload_identity", None) if security else None
                oidc = getattr(cluster, "oidc_issuer_profile", None)
                found[cluster_key(subscription, resource_group, str(cluster.name))] = (
                    bool(getattr(workload, "enabled", False)),
                    bool(getattr(oidc, "enabled", False)),
                )
        except (AzureError, OSError) as exc:
            raise _mapped(exc, what=f"list connected clusters of {subscription}") from exc
        return found

    def get_extension_version(self, *, panel: Panel, extension_type: str) -> str | None:
        """The version of the panel's extension of that type (e.g. `microsoft.flux`), None when absent."""
        client = self._extensions(panel.subscription).extensions
        try:
            for extension in client.list(
                panel.resource_group, ARC_CLUSTER_RP, ARC_CLUSTER_RESOURCE, panel.name
            ):
                if str(getattr(extension, "extension_type", "") or "").lower() == extension_type:
                    return str(
                        getattr(extension, "current_version", None)
                        or getattr(extension, "version", None)
                        or ""
                    )
        except (AzureError, OSError) as exc:
            raise _mapped(exc, what=f"list extensions of {panel.name}") from exc
        return None

    def probe(self, *, subscription: str) -> None:
        """One paced ARM read that proves ARM answers this identity (deep health)."""
        try:
            next(iter(self._clusters(subscription).connected_cluster.list_by_subscription()), None)
        except (AzureError, OSError) as exc:
            raise _mapped(exc, what=f"list connected clusters of subscription {subscription}") from exc


def _sink(responses: list[Any]) -> Callable[[PipelineResponse[Any, Any]], None]:
    """A per-call response hook that keeps the raw responses (ARM's `Date`, the accepted PATCH)."""

    def hook(pipeline_response: PipelineResponse[Any, Any]) -> None:
        responses.append(pipeline_response.http_response)

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
