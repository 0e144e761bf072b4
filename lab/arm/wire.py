"""ARM wire shapes: parse request bodies into the fleet model, render the model as ARM returns it.

Shapes follow the azure-rest-api-specs examples for fluxConfigurations 2025-04-01 (and 2024-11-01,
2023-05-01), connectedClusters 2024-01-01/2026-05-01 and extensions 2025-03-01. Parsing is strict
about JSON types (a wrong type is ARM's `InvalidRequestContent`), applies the spec's defaults, and
ignores read-only and unknown fields, as ARM does. `configurationProtectedSettings` is write-only:
it is parsed here and never rendered. Fields that an older api-version does not know are neither
read from its requests nor shown in its responses (`gitRepository.provider` before 2024-11-01,
`ociRepository` before 2025-04-01).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict

from lab.arm.errors import BadRequest, InvalidRequestContent
from lab.core.clock import iso
from lab.fleet.model import (
    CONNECTED_CLUSTER_TYPE,
    DEFAULT_SYNC_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    EXTENSION_TYPE,
    FLUX_CONFIGURATION_TYPE,
    FLUX_EXTENSION_NAME,
    FLUX_EXTENSION_TYPE,
    FLUX_NAMESPACE,
    Actor,
    FluxConfig,
    FluxSpec,
    GitRepositorySpec,
    KustomizationSpec,
    ObjectStatus,
    Panel,
    RepositoryRef,
)
from lab.fleet.seeding import OPERATOR

# --- api-versions -----------------------------------------------------------------------------------
FLUX_API_VERSIONS = ("2023-05-01", "2024-11-01", "2025-04-01")
CLUSTER_API_VERSIONS = ("2021-10-01", "2024-01-01", "2026-03-01", "2026-05-01")
EXTENSION_API_VERSIONS = ("2023-05-01", "2024-11-01", "2025-03-01")
_PROVIDER_SINCE = "2024-11-01"  # gitRepository.provider
_OCI_SINCE = "2025-04-01"  # sourceKind OCIRepository / ociRepository

SOURCE_KINDS = ("GitRepository", "Bucket", "AzureBlob", "OCIRepository")
SCOPES = ("cluster", "namespace")
PROVIDERS = ("Azure", "GitHub", "Generic")
# The fields FluxConfigurationPatch has (besides configurationProtectedSettings, handled apart).
_PATCHABLE = (
    "sourceKind",
    "suspend",
    "gitRepository",
    "bucket",
    "azureBlob",
    "ociRepository",
    "kustomizations",
)
# Arc cluster facts the lab shows for every panel (AKS Edge Essentials on K3s).
_KUBERNETES_VERSION = "1.30.4"
_ARC_AGENT_VERSION = "1.21.10"
_CORES_PER_PANEL = 4
# Arc's managed-identity certificate is valid for 90 days; the lab shows it renewed at onboarding.
_MSI_CERT_DAYS = 90


# --- wire TypedDicts ----------------------------------------------------------------------------------
class SystemDataWire(TypedDict):
    createdBy: str
    createdByType: str
    createdAt: str
    lastModifiedBy: str
    lastModifiedByType: str
    lastModifiedAt: str


class StatusConditionWire(TypedDict):
    lastTransitionTime: str
    message: str
    reason: str
    status: str
    type: str


class ObjectStatusWire(TypedDict):
    name: str
    namespace: str
    kind: str
    complianceState: str
    appliedBy: None
    statusConditions: list[StatusConditionWire]
    helmReleaseProperties: None


class ResourceWire(TypedDict):
    id: str
    name: str
    type: str
    systemData: NotRequired[SystemDataWire]
    properties: dict[str, Any]
    location: NotRequired[str]
    tags: NotRequired[dict[str, str]]
    identity: NotRequired[dict[str, str]]


class ListPageWire(TypedDict):
    value: list[ResourceWire]
    nextLink: str | None


class OperationStatusWire(TypedDict):
    id: str
    name: str
    status: str
    properties: dict[str, Any]
    error: None


def at_least(api_version: str, since: str) -> bool:
    """api-versions are dates (with an optional `-preview`), so they compare as strings."""
    return api_version[:10] >= since


# --- parsing helpers ------------------------------------------------------------------------------
def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequestContent(f"Expected a JSON object but found {_json_type(value)}.", path=path)
    return value


def _optional(source: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    value = source.get(key)
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidRequestContent(
            f"Could not convert {_json_type(value)} to integer.", path=f"{path}.{key}"
        )
    if kind is not int and not isinstance(value, kind):
        raise InvalidRequestContent(
            f"Could not convert {_json_type(value)} to {kind.__name__}.", path=f"{path}.{key}"
        )
    return value


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _enum(value: str | None, allowed: tuple[str, ...], path: str) -> str | None:
    if value is None:
        return None
    for option in allowed:
        if option.lower() == value.lower():
            return option
    raise BadRequest(
        f"Invalid value '{value}' for '{path}'. Allowed values are: {', '.join(allowed)}.", target=path
    )


def _positive(value: int | None, default: int, path: str) -> int:
    if value is None:
        return default
    if value <= 0:
        raise BadRequest(f"'{path}' must be a positive number of seconds.", target=path)
    return value


# --- fluxConfigurations: body -> model ------------------------------------------------------------
def parse_git_repository(value: object, path: str, api_version: str) -> GitRepositorySpec:
    git = _object(value, path)
    ref_value = git.get("repositoryRef")
    ref = None
    if ref_value is not None:
        ref_obj = _object(ref_value, f"{path}.repositoryRef")
        ref = RepositoryRef(
            **{
                key: _optional(ref_obj, key, str, f"{path}.repositoryRef")
                for key in ("branch", "tag", "semver", "commit")
            }
        )
    provider = None
    if at_least(api_version, _PROVIDER_SINCE):
        provider = _enum(_optional(git, "provider", str, path), PROVIDERS, f"{path}.provider")
    return GitRepositorySpec(
        url=_optional(git, "url", str, path),
        timeout_in_seconds=_positive(
            _optional(git, "timeoutInSeconds", int, path), DEFAULT_TIMEOUT_S, f"{path}.timeoutInSeconds"
        ),
        sync_interval_in_seconds=_positive(
            _optional(git, "syncIntervalInSeconds", int, path),
            DEFAULT_SYNC_INTERVAL_S,
            f"{path}.syncIntervalInSeconds",
        ),
        repository_ref=ref,
        ssh_known_hosts=_optional(git, "sshKnownHosts", str, path),
        https_user=_optional(git, "httpsUser", str, path),
        https_ca_cert=_optional(git, "httpsCACert", str, path),
        local_auth_ref=_optional(git, "localAuthRef", str, path),
        provider=provider,
    )


def parse_kustomization(name: str, value: object, path: str) -> KustomizationSpec:
    body = _object(value, path)
    depends = body.get("dependsOn")
    if depends is not None and not (isinstance(depends, list) and all(isinstance(d, str) for d in depends)):
        raise InvalidRequestContent("Could not convert value to a list of strings.", path=f"{path}.dependsOn")
    post_build = body.get("postBuild")
    if post_build is not None:
        _object(post_build, f"{path}.postBuild")
    return KustomizationSpec(
        name=name,
        path=_optional(body, "path", str, path) or "",
        depends_on=tuple(depends or ()),
        timeout_in_seconds=_positive(
            _optional(body, "timeoutInSeconds", int, path), DEFAULT_TIMEOUT_S, f"{path}.timeoutInSeconds"
        ),
        sync_interval_in_seconds=_positive(
            _optional(body, "syncIntervalInSeconds", int, path),
            DEFAULT_SYNC_INTERVAL_S,
            f"{path}.syncIntervalInSeconds",
        ),
        retry_interval_in_seconds=_optional(body, "retryIntervalInSeconds", int, path),
        prune=bool(_optional(body, "prune", bool, path) or False),
        force=bool(_optional(body, "force", bool, path) or False),
        wait=_optional(body, "wait", bool, path) is not False,
        post_build=post_build,
    )


def parse_flux_properties(props: Mapping[str, Any], api_version: str) -> FluxSpec:
    """The writable properties of a PUT body (or of a merged PATCH), with the spec's defaults."""
    path = "properties"
    source_kind = _enum(_optional(props, "sourceKind", str, path), SOURCE_KINDS, f"{path}.sourceKind")
    source_kind = source_kind or "GitRepository"
    if source_kind == "OCIRepository" and not at_least(api_version, _OCI_SINCE):
        raise BadRequest(
            f"sourceKind 'OCIRepository' requires api-version {_OCI_SINCE} or later.",
            target=f"{path}.sourceKind",
        )
    git_value = props.get("gitRepository")
    git = (
        parse_git_repository(git_value, f"{path}.gitRepository", api_version)
        if git_value is not None
        else None
    )
    if source_kind == "GitRepository" and (git is None or not git.url):
        raise BadRequest(
            "A GitRepository source needs 'properties.gitRepository.url'.", target=f"{path}.gitRepository.url"
        )
    kustomizations_value = props.get("kustomizations")
    kustomizations: tuple[KustomizationSpec, ...] = ()
    if kustomizations_value is not None:
        body = _object(kustomizations_value, f"{path}.kustomizations")
        kustomizations = tuple(
            parse_kustomization(name, value, f"{path}.kustomizations.{name}")
            for name, value in body.items()
            if value is not None
        )
    extra: dict[str, Mapping[str, Any] | None] = {}
    for key in ("bucket", "azureBlob", "ociRepository"):
        value = props.get(key)
        extra[key] = _object(value, f"{path}.{key}") if value is not None else None
    return FluxSpec(
        scope=_enum(_optional(props, "scope", str, path), SCOPES, f"{path}.scope") or "cluster",
        namespace=_optional(props, "namespace", str, path) or "default",
        source_kind=source_kind,
        suspend=bool(_optional(props, "suspend", bool, path) or False),
        git_repository=git,
        kustomizations=kustomizations,
        bucket=extra["bucket"],
        azure_blob=extra["azureBlob"],
        oci_repository=extra["ociRepository"] if at_least(api_version, _OCI_SINCE) else None,
        wait_for_reconciliation=_optional(props, "waitForReconciliation", bool, path),
        reconciliation_wait_duration=_optional(props, "reconciliationWaitDuration", str, path),
    )


def parse_protected_settings(props: Mapping[str, Any]) -> dict[str, str] | None:
    value = props.get("configurationProtectedSettings")
    if value is None:
        return None
    settings = _object(value, "properties.configurationProtectedSettings")
    for key, item in settings.items():
        if not isinstance(item, str):
            raise InvalidRequestContent(
                f"Could not convert {_json_type(item)} to string.",
                path=f"properties.configurationProtectedSettings.{key}",
            )
    return dict(settings)


def parse_put_body(body: object, api_version: str) -> tuple[FluxSpec, dict[str, str]]:
    props = _object(_object(body, "").get("properties"), "properties")
    return parse_flux_properties(props, api_version), parse_protected_settings(props) or {}


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch: objects merge key by key, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def apply_patch_body(
    spec: FluxSpec, body: object, api_version: str
) -> tuple[FluxSpec, dict[str, str] | None]:
    """Merge a FluxConfigurationPatch into `spec`; returns the new spec and any new protected settings.

    Only the patchable fields are read (scope, namespace and the reconciliation-wait fields cannot
    be patched; read-only fields are ignored). `configurationProtectedSettings`, when present,
    replaces the whole protected map.
    """
    patch_props = _object(_object(body, "").get("properties", {}), "properties")
    current = writable_properties(spec, api_version)
    for key in _PATCHABLE:
        if key not in patch_props or (key == "ociRepository" and not at_least(api_version, _OCI_SINCE)):
            continue
        value = patch_props[key]
        if value is not None and key in (
            "gitRepository",
            "bucket",
            "azureBlob",
            "ociRepository",
            "kustomizations",
        ):
            _object(value, f"properties.{key}")
        merged = merge_patch({key: current.get(key)}, {key: value})
        assert isinstance(merged, dict)
        if key in merged:
            current[key] = merged[key]
        else:
            current.pop(key, None)
    new_spec = parse_flux_properties(current, api_version)
    if (
        not at_least(api_version, _PROVIDER_SINCE)
        and spec.git_repository is not None
        and new_spec.git_repository is not None
    ):
        # An old api-version cannot see `provider`, so it cannot have meant to clear it.
        new_spec = _with_provider(new_spec, spec.git_repository.provider)
    if not at_least(api_version, _OCI_SINCE) and spec.oci_repository is not None:
        new_spec = _replace_spec(new_spec, oci_repository=spec.oci_repository)
    return new_spec, parse_protected_settings(patch_props)


def _with_provider(spec: FluxSpec, provider: str | None) -> FluxSpec:
    assert spec.git_repository is not None
    git = spec.git_repository
    return _replace_spec(spec, git_repository=GitRepositorySpec(**{**git.__dict__, "provider": provider}))


def _replace_spec(spec: FluxSpec, **changes: Any) -> FluxSpec:
    return FluxSpec(**{**spec.__dict__, **changes})


# --- fluxConfigurations: model -> wire ------------------------------------------------------------
def _git_wire(git: GitRepositorySpec, api_version: str) -> dict[str, Any]:
    ref = git.repository_ref
    wire: dict[str, Any] = {
        "url": git.url,
        "timeoutInSeconds": git.timeout_in_seconds,
        "syncIntervalInSeconds": git.sync_interval_in_seconds,
    }
    if ref is not None:
        wire["repositoryRef"] = {
            "branch": ref.branch,
            "tag": ref.tag,
            "semver": ref.semver,
            "commit": ref.commit,
        }
    optional = {
        "sshKnownHosts": git.ssh_known_hosts,
        "httpsUser": git.https_user,
        "httpsCACert": git.https_ca_cert,
        "localAuthRef": git.local_auth_ref,
    }
    if at_least(api_version, _PROVIDER_SINCE):
        optional["provider"] = git.provider
    wire.update({key: value for key, value in optional.items() if value is not None})
    return wire


def _kustomization_wire(kustomization: KustomizationSpec, *, with_name: bool) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": kustomization.name} if with_name else {}
    wire.update(
        {
            "path": kustomization.path,
            "dependsOn": list(kustomization.depends_on),
            "timeoutInSeconds": kustomization.timeout_in_seconds,
            "syncIntervalInSeconds": kustomization.sync_interval_in_seconds,
            "prune": kustomization.prune,
            "force": kustomization.force,
            "wait": kustomization.wait,
        }
    )
    if kustomization.retry_interval_in_seconds is not None:
        wire["retryIntervalInSeconds"] = kustomization.retry_interval_in_seconds
    if kustomization.post_build is not None:
        wire["postBuild"] = dict(kustomization.post_build)
    return wire


def writable_properties(spec: FluxSpec, api_version: str, *, with_names: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {
        "scope": spec.scope,
        "namespace": spec.namespace,
        "sourceKind": spec.source_kind,
        "suspend": spec.suspend,
    }
    if spec.git_repository is not None:
        props["gitRepository"] = _git_wire(spec.git_repository, api_version)
    for key, value in (("bucket", spec.bucket), ("azureBlob", spec.azure_blob)):
        if value is not None:
            props[key] = dict(value)
    if spec.oci_repository is not None and at_least(api_version, _OCI_SINCE):
        props["ociRepository"] = dict(spec.oci_repository)
    props["kustomizations"] = {
        k.name: _kustomization_wire(k, with_name=with_names) for k in spec.kustomizations
    }
    if spec.wait_for_reconciliation is not None:
        props["waitForReconciliation"] = spec.wait_for_reconciliation
    if spec.reconciliation_wait_duration is not None:
        props["reconciliationWaitDuration"] = spec.reconciliation_wait_duration
    return props


def _status_wire(status: ObjectStatus) -> ObjectStatusWire:
    condition = status.condition
    return ObjectStatusWire(
        name=status.name,
        namespace=status.namespace,
        kind=status.kind,
        complianceState=status.compliance_state,
        appliedBy=None,
        helmReleaseProperties=None,
        statusConditions=[
            StatusConditionWire(
                lastTransitionTime=iso(condition.last_transition_time),
                message=condition.message,
                reason=condition.reason,
                status=condition.status,
                type=condition.type,
            )
        ],
    )


def system_data(
    created_at: datetime, created_by: Actor, modified_at: datetime, modified_by: Actor
) -> SystemDataWire:
    return SystemDataWire(
        createdBy=created_by.name,
        createdByType=created_by.kind,
        createdAt=iso(created_at),
        lastModifiedBy=modified_by.name,
        lastModifiedByType=modified_by.kind,
        lastModifiedAt=iso(modified_at),
    )


def flux_config_id(panel: Panel, name: str) -> str:
    return f"{panel.identity.id}/providers/{FLUX_CONFIGURATION_TYPE}/{name}"


def render_flux_config(panel: Panel, config: FluxConfig, api_version: str) -> ResourceWire:
    report = config.report
    props = writable_properties(config.spec, api_version, with_names=True)
    props.update(
        {
            "statuses": [_status_wire(status) for status in report.statuses],
            "repositoryPublicKey": None,
            "sourceSyncedCommitId": report.source_synced_commit_id,
            "sourceUpdatedAt": iso(report.source_updated_at) if report.source_updated_at else None,
            "statusUpdatedAt": iso(report.status_updated_at) if report.status_updated_at else None,
            "complianceState": report.compliance_state,
            "provisioningState": config.provisioning_state,
            "errorMessage": report.error_message,
        }
    )
    return ResourceWire(
        id=flux_config_id(panel, config.name),
        name=config.name,
        type=FLUX_CONFIGURATION_TYPE,
        systemData=system_data(
            config.created_at, config.created_by, config.last_modified_at, config.last_modified_by
        ),
        properties=props,
    )


# --- connectedClusters ----------------------------------------------------------------------------
def render_connected_cluster(panel: Panel, now: datetime, tenant_id: str) -> ResourceWire:
    ident = panel.identity
    connectivity = panel.connectivity
    oidc: dict[str, Any] = {"enabled": ident.oidc_issuer_enabled}
    if ident.oidc_issuer_enabled:
        oidc["issuerUrl"] = f"https://oidc.prod-aks.azure.com/{tenant_id}/{ident.principal_id}/"
    props: dict[str, Any] = {
        "agentPublicKeyCertificate": "",
        "kubernetesVersion": _KUBERNETES_VERSION,
        "totalNodeCount": 1,
        "totalCoreCount": _CORES_PER_PANEL,
        "agentVersion": _ARC_AGENT_VERSION,
        "provisioningState": "Succeeded",
        "distribution": "aks_edge_k3s",
        "distributionVersion": "1.0",
        "infrastructure": "generic",
        "offering": "AKS_Edge_Essentials",
        "managedIdentityCertificateExpirationTime": iso(ident.created_at + timedelta(days=_MSI_CERT_DAYS)),
        "lastConnectivityTime": iso(connectivity.last_connectivity_time(now)),
        "connectivityStatus": connectivity.status(now),
        "privateLinkState": "Disabled",
        "azureHybridBenefit": "NotApplicable",
        "arcAgentProfile": {
            "agentAutoUpgrade": "Enabled",
            "agentState": "Succeeded",
            "agentErrors": [],
            "systemComponents": [],
        },
        "securityProfile": {"workloadIdentity": {"enabled": ident.workload_identity_enabled}},
        "oidcIssuerProfile": oidc,
        "gateway": {"enabled": False},
        "miscellaneousProperties": {},
    }
    return ResourceWire(
        id=ident.id,
        name=ident.name,
        type=CONNECTED_CLUSTER_TYPE,
        location=ident.location,
        tags=ident.tags,
        identity={"type": "SystemAssigned", "principalId": ident.principal_id, "tenantId": tenant_id},
        systemData=system_data(ident.created_at, OPERATOR, ident.created_at, OPERATOR),
        properties=props,
    )


# --- extensions -----------------------------------------------------------------------------------
def render_flux_extension(panel: Panel, tenant_id: str) -> ResourceWire:
    ident = panel.identity
    settings = {"multiTenancy.enforce": "false"}
    if ident.supports_workload_identity:
        settings["workloadIdentity.enable"] = "true"
    props: dict[str, Any] = {
        "extensionType": FLUX_EXTENSION_TYPE,
        "autoUpgradeMinorVersion": False,
        "releaseTrain": "Stable",
        "version": ident.flux_extension_version,
        "currentVersion": ident.flux_extension_version,
        "scope": {"cluster": {"releaseNamespace": FLUX_NAMESPACE}},
        "configurationSettings": settings,
        "configurationProtectedSettings": {},
        "provisioningState": "Succeeded",
        "statuses": [],
        "errorInfo": None,
        "customLocationSettings": None,
        "packageUri": None,
        "aksAssignedIdentity": None,
        "isSystemExtension": False,
    }
    return ResourceWire(
        id=f"{ident.id}/providers/{EXTENSION_TYPE}/{FLUX_EXTENSION_NAME}",
        name=FLUX_EXTENSION_NAME,
        type=EXTENSION_TYPE,
        identity={"type": "SystemAssigned", "principalId": ident.principal_id, "tenantId": tenant_id},
        systemData=system_data(ident.created_at, OPERATOR, ident.created_at, OPERATOR),
        properties=props,
    )
