"""Small helpers the ARM lifecycle tests share: real SDK clients for the lab and raw ARM requests.

Raw requests carry a real lab token and show what the SDKs hide (headers, every property of a body).
"""

from __future__ import annotations

from typing import Any

import requests
from azure.identity import ManagedIdentityCredential
from azure.mgmt.hybridkubernetes import ConnectedKubernetesClient
from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient
from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
    KubernetesConfigurationFluxConfigurationsMgmtClient,
)

from tests.labkit import LabHandle

ARM_SCOPE = "https://management.azure.com/.default"
ON_ARC = ("Microsoft.Kubernetes", "connectedClusters")
CONFIG = "ipc-platform-config"


def subscription(lab: LabHandle, index: int = 0) -> str:
    return str(lab.doc["subscriptions"][index])


def extensions_client(lab: LabHandle, sub: str | None = None) -> KubernetesConfigurationExtensionsMgmtClient:
    return KubernetesConfigurationExtensionsMgmtClient(
        ManagedIdentityCredential(), sub or subscription(lab), base_url=lab.endpoint("arm")
    )


def flux_client(
    lab: LabHandle, sub: str | None = None
) -> KubernetesConfigurationFluxConfigurationsMgmtClient:
    return KubernetesConfigurationFluxConfigurationsMgmtClient(
        ManagedIdentityCredential(), sub or subscription(lab), base_url=lab.endpoint("arm")
    )


def clusters_client(lab: LabHandle, sub: str | None = None) -> ConnectedKubernetesClient:
    return ConnectedKubernetesClient(
        ManagedIdentityCredential(), sub or subscription(lab), base_url=lab.endpoint("arm")
    )


def truth(lab: LabHandle, name: str) -> dict[str, Any]:
    return dict(lab.control("GET", f"/_lab/clusters/{name}"))


def cluster_path(lab: LabHandle, name: str) -> str:
    """A panel's connectedCluster resource id (from ground truth, so any panel's group is right)."""
    return str(truth(lab, name)["id"])


def extension_path(lab: LabHandle, cluster: str, name: str = "flux") -> str:
    return f"{cluster_path(lab, cluster)}/providers/Microsoft.KubernetesConfiguration/extensions/{name}"


def config_path(lab: LabHandle, cluster: str, name: str = CONFIG) -> str:
    return (
        f"{cluster_path(lab, cluster)}/providers/Microsoft.KubernetesConfiguration/fluxConfigurations/{name}"
    )


def raw(
    lab: LabHandle, method: str, path: str, *, api_version: str, body: Any = None, query: str = ""
) -> requests.Response:
    token = ManagedIdentityCredential().get_token(ARM_SCOPE).token
    return requests.request(
        method,
        f"{lab.endpoint('arm')}{path}?api-version={api_version}{query}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=lab.ca_bundle,
        timeout=30,
    )


def arm_log(lab: LabHandle, since: int) -> list[tuple[str, str, int]]:
    log = lab.control("GET", f"/_lab/requests?service=arm&since={since}")["requests"]
    return [(entry["method"], entry["path"], entry["status"]) for entry in log]


def log_position(lab: LabHandle) -> int:
    entries = lab.control("GET", "/_lab/requests")["requests"]
    return max((entry["seq"] for entry in entries), default=0)


def tick(lab: LabHandle) -> dict[str, Any]:
    return dict(lab.control("POST", "/_lab/agents/tick", expect=200))


def commit(lab: LabHandle, files: dict[str, str], message: str = "lab test") -> str:
    return str(
        lab.control("POST", "/_lab/devops/files", {"files": files, "message": message}, expect=201)["sha"]
    )
