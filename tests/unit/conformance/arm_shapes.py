"""ARM's resources as the SDKs' `as_dict()` returns them (2025-04-01 fluxConfigurations, 2025-03-01
extensions): every property present, null where unset — copied from what the lab serves, which follows
GetFluxConfiguration.json / GetExtension.json property by property."""

from __future__ import annotations

import copy
from typing import Any

GIT_URL = "https://dev.azure.com/contoso/ipc/_git/ipc-platform"
PANEL_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ipc-site-munich"
    "/providers/Microsoft.Kubernetes/connectedClusters/ipc-panel-0001"
)


def kustomization(name: str, path: str, *, interval: int = 300) -> dict[str, Any]:
    return {
        "name": name,
        "path": path,
        "dependsOn": [],
        "timeoutInSeconds": 600,
        "syncIntervalInSeconds": interval,
        "retryIntervalInSeconds": None,
        "prune": True,
        "force": False,
        "wait": True,
        "postBuild": None,
    }


def flux_configuration(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": f"{PANEL_ID}/providers/Microsoft.KubernetesConfiguration/fluxConfigurations/"
        "ipc-platform-config",
        "name": "ipc-platform-config",
        "type": "Microsoft.KubernetesConfiguration/fluxConfigurations",
        "systemData": {
            "createdBy": "operator@contoso.com",
            "createdByType": "User",
            "createdAt": "2026-11-01T08:00:00Z",
            "lastModifiedBy": "operator@contoso.com",
            "lastModifiedByType": "User",
            "lastModifiedAt": "2026-11-01T08:00:00Z",
        },
        "properties": {
            "scope": "cluster",
            "namespace": "flux-system",
            "sourceKind": "GitRepository",
            "suspend": False,
            "gitRepository": {
                "url": GIT_URL,
                "timeoutInSeconds": 600,
                "syncIntervalInSeconds": 300,
                "repositoryRef": {"branch": "main", "tag": None, "semver": None, "commit": None},
                "sshKnownHosts": None,
                "httpsUser": "git",
                "httpsCACert": None,
                "localAuthRef": None,
                "provider": None,
            },
            "bucket": None,
            "azureBlob": None,
            "ociRepository": None,
            "kustomizations": {"workloads": kustomization("workloads", "./kubernetes/workloads")},
            "statuses": [],
            "repositoryPublicKey": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ lab",
            "sourceSyncedCommitId": "main/3f0c1b0e2a",
            "sourceUpdatedAt": "2026-11-01T08:05:00Z",
            "statusUpdatedAt": "2026-11-01T08:05:00Z",
            "waitForReconciliation": None,
            "reconciliationWaitDuration": None,
            "complianceState": "Compliant",
            "provisioningState": "Succeeded",
            "errorMessage": None,
        },
    }
    for dotted, value in changes.items():
        _set(resource["properties"], dotted.split("__"), value)
    return resource


def extension(
    *, version: str = "1.16.3", settings: dict[str, str] | None = None, **props: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": f"{PANEL_ID}/providers/Microsoft.KubernetesConfiguration/extensions/flux",
        "name": "flux",
        "type": "Microsoft.KubernetesConfiguration/extensions",
        "systemData": None,
        "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
        "plan": None,
        "managedBy": None,
        "properties": {
            "extensionType": "microsoft.flux",
            "autoUpgradeMinorVersion": False,
            "releaseTrain": "Stable",
            "version": version,
            "scope": {"cluster": {"releaseNamespace": "flux-system"}, "namespace": None},
            "configurationSettings": settings if settings is not None else {"multiTenancy.enforce": "false"},
            "configurationProtectedSettings": {},
            "currentVersion": version,
            "provisioningState": "Succeeded",
            "statuses": [],
            "errorInfo": None,
            "customLocationSettings": None,
            "packageUri": None,
            "aksAssignedIdentity": None,
            "isSystemExtension": False,
            "autoUpgradeMode": None,
            "managementDetails": None,
            "additionalDetails": None,
            "extensionState": None,
        },
    }
    resource["properties"].update(props)
    return resource


def _set(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = copy.deepcopy(value)
