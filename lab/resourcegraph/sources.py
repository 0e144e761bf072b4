"""What Resource Graph reads from ARM: every connectedCluster, fluxConfiguration and extension, as ARG rows.

This is the one module that knows the fleet model. For each resource it yields an `Observation`: which
ARG table the resource lives in, a cheap *version* (a tuple that changes whenever anything ARM would show
changes: generation, provisioning state, the agent's last report, connectivity...), and the times the model
says it last changed. `lab.resourcegraph.index` renders a resource only when its version changed, with the
ARM wire renderers themselves (`lab.arm.wire`, the newest api-version of each type), so `properties` are
exactly what `GET` on ARM returns.

ARG's row shape (explore-resources.md's sample rows and the REST examples): the ARM resource's `id` as ARM
spells it, `type` lower-cased (`microsoft.kubernetes/connectedclusters`), `resourceGroup` lower-cased
("the `resourceGroup` property of resources from the `resources` table will be lowercase"), `location`
lower-case, `kind` and `managedBy` `""` when unset (strings have no null in Kusto), `sku` and `plan` `{}`
when unset (as the sample rows show), `tags` `{}` when none, `identity` as ARM returns it, and `tenantId`,
`zones` and `extendedLocation` (null: Arc clusters have neither zones nor an extended location).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from lab.arm import wire
from lab.fleet.model import OFFLINE_AFTER, Extension, FluxConfig, Panel, PanelIdentity
from lab.resourcegraph.engine import Column, Row

RESOURCES = "resources"
KUBERNETES_CONFIGURATION_RESOURCES = "kubernetesconfigurationresources"
TABLES = (RESOURCES, KUBERNETES_CONFIGURATION_RESOURCES)

# The columns of both tables, in ARG's order (the REST examples, explore-resources.md).
SCHEMA: tuple[Column, ...] = (
    Column("id", "string"),
    Column("name", "string"),
    Column("type", "string"),
    Column("tenantId", "string"),
    Column("kind", "string"),
    Column("location", "string"),
    Column("resourceGroup", "string"),
    Column("subscriptionId", "string"),
    Column("managedBy", "string"),
    Column("sku", "dynamic"),
    Column("plan", "dynamic"),
    Column("properties", "dynamic"),
    Column("tags", "dynamic"),
    Column("identity", "dynamic"),
    Column("zones", "dynamic"),
    Column("extendedLocation", "dynamic"),
)
# ARM serves several api-versions; ARG indexes one shape per type: the newest the lab's ARM knows.
FLUX_API_VERSION = wire.FLUX_API_VERSIONS[-1]
EXTENSION_API_VERSION = wire.EXTENSION_API_VERSIONS[-1]
_FLUX_PATH = "/providers/microsoft.kubernetesconfiguration/fluxconfigurations/"
_EXTENSION_PATH = "/providers/microsoft.kubernetesconfiguration/extensions/"

Kind = Literal["cluster", "flux", "extension"]


@dataclass(frozen=True, slots=True)
class Observation:
    table: str
    key: str  # the lower-case resource id: ARM ids are case-insensitive
    subscription: str  # lower-case
    version: tuple[Any, ...]
    kind: Kind
    panel: Panel
    item: FluxConfig | Extension | None


class Observer:
    """Walks the fleet; remembers each panel's lower-case id so a scan builds no strings it built before."""

    def __init__(self) -> None:
        self._ids: dict[
            int, tuple[PanelIdentity, str, str]
        ] = {}  # id(panel) -> (identity, key, subscription)

    def observe(self, panels: list[Panel], now: datetime) -> Iterator[Observation]:
        """One observation per resource ARM has right now."""
        for panel in panels:
            ident = panel.identity
            cached = self._ids.get(id(panel))
            if cached is None or cached[0] is not ident:
                cached = (ident, ident.id.lower(), ident.subscription.lower())
                self._ids[id(panel)] = cached
            _, cluster_key, subscription = cached
            connectivity = panel.connectivity
            status = connectivity.status(now)  # settles certificate renewals first
            yield Observation(
                RESOURCES,
                cluster_key,
                subscription,
                (
                    ident,
                    status,
                    connectivity.online,
                    connectivity.changed_at,
                    connectivity.heartbeat_seen,
                    connectivity.certificate_issued_at,
                ),
                "cluster",
                panel,
                None,
            )
            for config in panel.flux_configs.values():
                report = config.report
                yield Observation(
                    KUBERNETES_CONFIGURATION_RESOURCES,
                    cluster_key + _FLUX_PATH + config.name.lower(),
                    subscription,
                    (
                        config.uid,
                        config.generation,
                        config.provisioning_state,
                        config.deleting,
                        report.status_updated_at,
                        report.compliance_state,
                        report.source_synced_commit_id,
                        report.source_updated_at,
                        report.error_message,
                        report.statuses,
                    ),
                    "flux",
                    panel,
                    config,
                )
            for extension in panel.extensions.values():
                yield Observation(
                    KUBERNETES_CONFIGURATION_RESOURCES,
                    cluster_key + _EXTENSION_PATH + extension.name.lower(),
                    subscription,
                    (
                        extension.uid,
                        extension.provisioning_state,
                        extension.current_version,
                        extension.last_modified_at,
                        extension.deleting,
                        extension.error_info,
                        extension.spec,
                        extension.principal_id,
                    ),
                    "extension",
                    panel,
                    extension,
                )

    def forget(self) -> None:
        self._ids.clear()


def change_times(observation: Observation, now: datetime) -> list[datetime]:
    """When the model says this resource last changed (the index takes the newest one it can explain)."""
    if observation.kind == "cluster":
        connectivity = observation.panel.connectivity
        times = [connectivity.changed_at]
        if not connectivity.online:
            times.append(connectivity.changed_at + OFFLINE_AFTER)  # Connected -> Offline
        return times
    item = observation.item
    if isinstance(item, FluxConfig):
        report = item.report
        return [
            t for t in (item.changed_at, item.last_modified_at, report.status_updated_at) if t is not None
        ]
    assert isinstance(item, Extension)
    return [item.last_modified_at]


def render(observation: Observation, now: datetime, tenant_id: str) -> Row:
    """The resource as ARM's GET shows it (newest api-version), as an ARG row."""
    panel, item = observation.panel, observation.item
    resource: wire.ResourceWire
    if isinstance(item, FluxConfig):
        resource = wire.render_flux_config(panel, item, FLUX_API_VERSION)
    elif isinstance(item, Extension):
        resource = wire.render_extension(panel, item, EXTENSION_API_VERSION, tenant_id)
    else:
        resource = wire.render_connected_cluster(panel, now, tenant_id)
    return arg_row(resource, tenant_id)


def arg_row(resource: wire.ResourceWire, tenant_id: str) -> Row:
    """An ARM resource as a row of ARG's tables (see the module docstring for each column's rule)."""
    resource_id = resource["id"]
    segments = resource_id.split("/")  # /subscriptions/{sub}/resourceGroups/{rg}/providers/...
    return {
        "id": resource_id,
        "name": resource["name"],
        "type": resource["type"].lower(),
        "tenantId": tenant_id,
        "kind": "",
        "location": (resource.get("location") or "").lower(),
        "resourceGroup": segments[4].lower(),
        "subscriptionId": segments[2],
        "managedBy": resource.get("managedBy") or "",
        "sku": {},
        "plan": resource.get("plan") or {},
        "properties": resource["properties"],
        "tags": resource.get("tags") or {},
        "identity": resource.get("identity"),
        "zones": None,
        "extendedLocation": None,
    }
