"""Azure Resource Graph: the whole fleet in one paged query instead of one ARM GET per panel (issue 13).

Why it looks like this:
- At 10,000 panels one ARM GET per panel took 13,342 ARM requests and 97 s in the lab; Resource Graph
  answers the same question (every connected cluster left-joined with its Flux configuration and its
  `microsoft.flux` extension, `properties` exactly as ARM returns them) in 1,000-row pages: 10 queries.
- Resource Graph's budget is a per-principal quota (15 queries per 5 s, `x-ms-user-quota-remaining` /
  `x-ms-user-quota-resets-after` on every answer, 429 with `Retry-After` past it), not ARM's
  per-subscription buckets. `GraphGate` takes a token of the shared pacer's `graph` kind before every
  HTTP request (each page, each retry azure-core makes) and tells it what the quota says is left; a
  window that is spent (remaining 0) or a 429 blocks every instance until the window resets.
- Pages follow `$skipToken` with the same query and scopes, as Resource Graph requires; the query
  orders by the lower-cased cluster id so the pages are stable.
- The Flux configuration's name becomes a KQL string literal, so it is checked to be an ARM name
  (letters, digits, `-`, `_`, `.`) before use: never a quote in a query.
- Rows are parsed with the ARM boundary's own wire parsers, so a `PanelView` holds the same `Panel` and
  `FluxState` values an ARM GET gives.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from azure.core.exceptions import AzureError
from azure.core.pipeline.policies import SansIOHTTPPolicy

from shared.adapters.arm_fleet import ConnectedClusterWire, FluxConfigurationWire, flux_state_from_wire
from shared.adapters.arm_fleet import panel_from_wire as _panel_from_wire
from shared.adapters.clients import AzureClients
from shared.errors import InvalidSetting, from_azure_error
from shared.models.health import PanelView
from shared.ports import Pacer, RateObserver

if TYPE_CHECKING:
    from azure.core.pipeline import PipelineRequest, PipelineResponse

log = logging.getLogger("fluxfleet.resourcegraph")

# The newest stable api-version (azure-mgmt-resourcegraph 8.0.1 defaults to 2021-03-01).
API_VERSION = "2024-04-01"
# Resource Graph's largest page.
PAGE_SIZE = 1000
# The quota is per principal, not per subscription: one shared bucket for the app's identity.
QUOTA_SCOPE = "principal"
# ARM's naming rule for the resources whose names go into a KQL literal.
ARM_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,253}")
# Pages of one query at most: 10,000 panels are 10; this bounds a runaway skip-token loop.
MAX_PAGES = 200

# One row per connected cluster (lab/docs/resourcegraph.md "The app's queries", PANELS_QUERY; proven
# against the lab in tests/lab/test_resource_graph.py). `{configuration}` is an ARM name (checked).
PANELS_QUERY = """\
resources
| where type =~ 'microsoft.kubernetes/connectedclusters'
| extend clusterId = tolower(id)
| project clusterId, id, name, resourceGroup, subscriptionId, location, tags,
    connectivityStatus = tostring(properties.connectivityStatus),
    lastConnectivityTime = tostring(properties.lastConnectivityTime)
| join kind=leftouter (
    kubernetesconfigurationresources
    | where type =~ 'microsoft.kubernetesconfiguration/fluxconfigurations' and name =~ '{configuration}'
    | parse tolower(id) with clusterId '/providers/microsoft.kubernetesconfiguration/fluxconfigurations/' *
    | project clusterId,
        complianceState = tostring(properties.complianceState),
        provisioningState = tostring(properties.provisioningState),
        suspend = properties.suspend,
        sourceSyncedCommitId = tostring(properties.sourceSyncedCommitId),
        sourceUpdatedAt = tostring(properties.sourceUpdatedAt),
        statusUpdatedAt = tostring(properties.statusUpdatedAt),
        errorMessage = tostring(properties.errorMessage),
        statuses = properties.statuses,
        sourceUrl = tostring(properties.gitRepository.url),
        sourceBranch = tostring(properties.gitRepository.repositoryRef.branch)
  ) on clusterId
| join kind=leftouter (
    kubernetesconfigurationresources
    | where type =~ 'microsoft.kubernetesconfiguration/extensions'
        and tostring(properties.extensionType) =~ 'microsoft.flux'
    | parse tolower(id) with clusterId '/providers/microsoft.kubernetesconfiguration/extensions/' *
    | project clusterId,
        fluxExtensionVersion = tostring(properties.currentVersion),
        fluxExtensionProvisioningState = tostring(properties.provisioningState)
  ) on clusterId
| project-away clusterId1, clusterId2
| order by clusterId asc
"""


def panels_query(configuration: str) -> str:
    """PANELS_QUERY for this configuration name (InvalidSetting when it is not an ARM name)."""
    if not ARM_NAME.fullmatch(configuration):
        raise InvalidSetting(
            "FLUXFLEET_FLUX_CONFIGURATION", "must be an ARM name (letters, digits, '-', '_', '.')"
        )
    return PANELS_QUERY.replace("{configuration}", configuration)


def view_from_row(row: dict[str, Any], *, configuration: str) -> PanelView:
    """One PANELS_QUERY row → PanelView. A leftouter join leaves `""` in string columns (and null in
    dynamic ones) when the panel has no configuration or extension."""
    panel = _panel_from_wire(
        cast(
            ConnectedClusterWire,
            {
                "id": row["id"],
                "name": row.get("name") or "",
                "location": row.get("location") or "",
                "tags": row.get("tags") or {},
                "properties": {
                    "connectivityStatus": row.get("connectivityStatus") or "",
                    "lastConnectivityTime": row.get("lastConnectivityTime") or "",
                },
            },
        )
    )
    flux = None
    if row.get("provisioningState") or row.get("complianceState"):
        flux = flux_state_from_wire(
            cast(
                FluxConfigurationWire,
                {
                    "name": configuration,
                    "properties": {
                        "suspend": bool(row.get("suspend")),
                        "complianceState": row.get("complianceState") or "",
                        "provisioningState": row.get("provisioningState") or None,
                        "statuses": row.get("statuses") or [],
                        "sourceSyncedCommitId": row.get("sourceSyncedCommitId") or None,
                        "sourceUpdatedAt": row.get("sourceUpdatedAt") or None,
                        "statusUpdatedAt": row.get("statusUpdatedAt") or None,
                        "errorMessage": row.get("errorMessage") or None,
                    },
                },
            )
        )
    return PanelView(
        panel=panel,
        flux=flux,
        extension_version=row.get("fluxExtensionVersion") or "",
        extension_state=row.get("fluxExtensionProvisioningState") or "",
        source_url=row.get("sourceUrl") or None,
        source_branch=row.get("sourceBranch") or None,
    )


@dataclass
class GraphStats:
    """What this process sent to Resource Graph (every attempt, retries included)."""

    queries: int = 0
    throttled: int = 0


class GraphGate(SansIOHTTPPolicy[Any, Any]):
    """A per-retry policy on the Resource Graph client: pace before each request, observe each answer."""

    def __init__(self, *, pacer: Pacer | None, observer: RateObserver | None) -> None:
        self._pacer = pacer
        self._observer = observer
        self._lock = threading.Lock()
        self.stats = GraphStats()

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if self._pacer is not None:
            self._pacer.acquire(subscription=QUOTA_SCOPE, kind="graph")

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        http = response.http_response
        throttled = http.status_code == 429
        with self._lock:
            self.stats.queries += 1
            self.stats.throttled += throttled
        if self._observer is None:
            return
        headers = http.headers
        remaining = _int(headers.get("x-ms-user-quota-remaining"))
        resets_after = _hms(headers.get("x-ms-user-quota-resets-after"))
        retry_after = _float(headers.get("Retry-After")) if throttled else None
        if remaining == 0 and not throttled:
            # The window is spent: nobody may query until it resets (the 16th query would be a 429).
            throttled, retry_after = True, resets_after
        self._observer.observe(
            subscription=QUOTA_SCOPE,
            kind="graph",
            remaining=remaining,
            retry_after_s=retry_after if retry_after is not None else resets_after,
            throttled=throttled,
        )


class ResourceGraphFleet:
    """`FleetGraph` over Resource Graph: every panel of the subscriptions, from PANELS_QUERY's pages."""

    def __init__(
        self,
        clients: AzureClients,
        *,
        configuration: str,
        pacer: Pacer | None = None,
        observer: RateObserver | None = None,
    ) -> None:
        self._clients = clients
        self._configuration = configuration
        self._query = panels_query(configuration)
        self._gate = GraphGate(pacer=pacer, observer=observer)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def stats(self) -> GraphStats:
        return self._gate.stats

    def _graph(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._clients.resource_graph_client(
                    api_version=API_VERSION, per_retry_policies=[self._gate]
                )
            return self._client

    def panel_views(self, *, subscriptions: Sequence[str]) -> list[PanelView]:
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        views: list[PanelView] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            request = QueryRequest(
                subscriptions=list(subscriptions),
                query=self._query,
                options=QueryRequestOptions(skip_token=token, top=PAGE_SIZE, result_format="objectArray"),
            )
            try:
                page = self._graph().resources(request)
            except (AzureError, OSError) as exc:
                raise from_azure_error(exc, what="Resource Graph query of the fleet's panels") from exc
            for row in page.data or []:
                views.append(view_from_row(row, configuration=self._configuration))
            token = page.skip_token
            if not token:
                return views
        log.warning("Resource Graph paging stopped after %d pages", MAX_PAGES)
        return views


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


def _hms(value: str | None) -> float | None:
    """`hh:mm:ss` (x-ms-user-quota-resets-after) → seconds."""
    if not value:
        return None
    try:
        hours, minutes, seconds = (float(part) for part in value.split(":"))
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds
