"""Which panels could use workload identity: connectedClusters and their `microsoft.flux` extension.

Reads ARM through the per-worker clients: one connectedClusters list per subscription (security and
OIDC issuer profiles of every panel, 100 a page) and one extensions list per panel (ARM has no
fleet-wide extension list; Azure Resource Graph's `kubernetesconfigurationresources` is the way at
10,000+ panels, see docs/credentials.md). Reads run a few at a time so a report never floods ARM's
read budget (250 burst, 25/s per principal).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.errors import FluxfleetError, from_azure_error
from shared.models import Panel, cluster_key
from shared.services.credentials.workload_identity import WorkloadIdentityFacts

log = logging.getLogger("fluxfleet.adapters.arc_readiness")

FLUX_EXTENSION_TYPE = "microsoft.flux"
# Concurrent extension lists: 4 × ~50 ms per read stays far below 25 reads/s.
READ_CONCURRENCY = 4


class ArmWorkloadIdentityReader:
    """`WorkloadIdentityReader` over `azure-mgmt-hybridkubernetes` and the extensions client."""

    def __init__(self, clients: Any) -> None:
        self._clients = clients

    def facts(self, *, panels: Sequence[Panel]) -> dict[str, WorkloadIdentityFacts]:
        profiles: dict[str, tuple[bool, bool]] = {}
        for subscription in sorted({panel.subscription for panel in panels}):
            profiles.update(self._profiles(subscription))
        with ThreadPoolExecutor(max_workers=READ_CONCURRENCY, thread_name_prefix="wi-facts") as pool:
            versions = dict(zip((p.key for p in panels), pool.map(self._flux_version, panels), strict=True))
        result: dict[str, WorkloadIdentityFacts] = {}
        for panel in panels:
            profile = profiles.get(panel.key)
            version = versions[panel.key]
            if profile is None or isinstance(version, FluxfleetError):
                continue
            result[panel.key] = WorkloadIdentityFacts(
                flux_extension_version=version,
                workload_identity_enabled=profile[0],
                oidc_issuer_enabled=profile[1],
            )
        return result

    def _profiles(self, subscription: str) -> dict[str, tuple[bool, bool]]:
        from azure.core.exceptions import AzureError

        client = self._clients.connected_clusters(subscription).connected_cluster
        found: dict[str, tuple[bool, bool]] = {}
        try:
            for cluster in client.list_by_subscription():
                resource_group = str(cluster.id).split("/")[4]
                security = getattr(cluster, "security_profile", None)
                workload = getattr(security, "workload_identity", None) if security else None
                oidc = getattr(cluster, "oidc_issuer_profile", None)
                found[cluster_key(subscription, resource_group, str(cluster.name))] = (
                    bool(getattr(workload, "enabled", False)),
                    bool(getattr(oidc, "enabled", False)),
                )
        except AzureError as exc:
            raise from_azure_error(exc, what=f"list connected clusters of {subscription}") from exc
        return found

    def _flux_version(self, panel: Panel) -> str | FluxfleetError | None:
        from azure.core.exceptions import AzureError

        client = self._clients.extensions(panel.subscription).extensions
        try:
            for extension in client.list(
                panel.resource_group, "Microsoft.Kubernetes", "connectedClusters", panel.name
            ):
                if str(getattr(extension, "extension_type", "") or "").lower() == FLUX_EXTENSION_TYPE:
                    return str(
                        getattr(extension, "current_version", None)
                        or getattr(extension, "version", None)
                        or ""
                    )
        except AzureError as exc:
            error = from_azure_error(exc, what=f"list extensions of {panel.name}")
            log.warning("%s", error.message, extra={"cluster": panel.name})
            return error
        return None
