"""ARM's route table: which resource a request path names.

ARM paths and names are case-insensitive and the Flux RP's paths embed the cluster's own provider
path (`{clusterRp}/{clusterResourceName}`), so routes are matched on lower-cased segments here
rather than with aiohttp's router; the original spelling of each name is kept for messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RouteKind = Literal[
    "clusters_by_subscription",
    "clusters_by_group",
    "cluster",
    "flux_list",
    "flux",
    "flux_operation",
    "extension_list",
    "extension",
    "extension_operation",
]

_K8S = "microsoft.kubernetes"
_CONFIG_RP = "microsoft.kubernetesconfiguration"
_CLUSTERS = "connectedclusters"


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    subscription: str
    group: str = ""
    cluster: str = ""
    cluster_type: str = "Microsoft.Kubernetes/connectedClusters"  # as the path spells it
    name: str = ""  # the flux configuration or extension
    operation_id: str = ""


def subscription_of(path: str) -> str | None:
    """The subscription a path is scoped to (for throttling), even when the rest does not match."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1]
    return None


def match(path: str) -> Route | None:
    parts = [part for part in path.split("/") if part]
    lower = [part.lower() for part in parts]
    if len(parts) < 2 or lower[0] != "subscriptions":
        return None
    sub = parts[1]
    if lower[2:] == ["providers", _K8S, _CLUSTERS]:
        return Route("clusters_by_subscription", sub)
    if len(parts) < 7 or lower[2] != "resourcegroups" or lower[4] != "providers":
        return None
    group = parts[3]
    if lower[5:] == [_K8S, _CLUSTERS]:
        return Route("clusters_by_group", sub, group)
    if len(parts) == 8 and lower[5:7] == [_K8S, _CLUSTERS]:
        return Route("cluster", sub, group, parts[7])
    if len(parts) < 11 or lower[8] != "providers" or lower[9] != _CONFIG_RP:
        return None
    return _configuration_route(parts, lower)


def _configuration_route(parts: list[str], lower: list[str]) -> Route | None:
    """Routes below a cluster's `providers/Microsoft.KubernetesConfiguration/`."""
    base = {
        "subscription": parts[1],
        "group": parts[3],
        "cluster": parts[7],
        "cluster_type": f"{parts[5]}/{parts[6]}",
    }
    rest, rest_lower = parts[10:], lower[10:]
    if rest_lower[0] == "fluxconfigurations":
        if len(rest) == 1:
            return Route("flux_list", **base)
        if len(rest) == 2:
            return Route("flux", name=rest[1], **base)
        if len(rest) == 4 and rest_lower[2] == "operations":
            return Route("flux_operation", name=rest[1], operation_id=rest[3], **base)
    if rest_lower[0] == "extensions":
        if len(rest) == 1:
            return Route("extension_list", **base)
        if len(rest) == 2:
            return Route("extension", name=rest[1], **base)
        if len(rest) == 4 and rest_lower[2] == "operations":
            return Route("extension_operation", name=rest[1], operation_id=rest[3], **base)
    return None
