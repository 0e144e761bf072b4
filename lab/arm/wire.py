"""ARM wire shapes: parse request bodies into the fleet model, render the model as ARM returns it.

(Over 500 lines on purpose: every ARM shape the lab serves, request and response, for the three
resource types, in one place, so a reader checks it against the specs in one file.)

Shapes follow azure-rest-api-specs: fluxConfigurations 2025-04-01 (`fluxConfigurations/models.tsp`, the
examples `GetFluxConfiguration.json`, `CreateFluxConfiguration.json`, `PatchFluxConfiguration.json`,
`DeleteFluxConfiguration.json`) and 2024-11-01 / 2023-05-01 (`fluxconfiguration.json`),
connectedClusters 2024-01-01/2026-05-01, and extensions 2025-03-01 (`extensions/models.tsp` with its
`@added(v2025_03_01)` markers, `Extension.tsp`, the examples `CreateExtension.json`, `GetExtension.json`,
`PatchExtension.json`, `DeleteExtension.json`, `GetExtensionAsyncOperationStatus.json`) and the
2024-11-01 / 2023-05-01 `extensions.json`. Every property of a response schema is present, `null`
where unset, as ARM's serialiser writes it (the examples show `"tag": null`, `"errorInfo": null`).

Parsing is strict about JSON types (a wrong type is ARM's `InvalidRequestContent`), applies the spec's
defaults, and ignores read-only and unknown fields, as ARM does. `configurationProtectedSettings` is
write-only: it is parsed here and never rendered for Flux configurations (`x-ms-secret`; extensions show
an empty map, as `az k8s-extension show` prints it). Fields that an older api-version does not know are
neither read from its requests nor shown in its responses (`gitRepository.provider` before 2024-11-01,
`ociRepository` before 2025-04-01; `autoUpgradeMode`, `managementDetails`, `additionalDetails`,
`extensionState`, `managedBy` and the `aksAssignedIdentity` ids before 2025-03-01).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

from lab.arm.errors import BadRequest, InvalidRequestContent
from lab.arm.repository_keys import repository_public_key
from lab.core.clock import iso
from lab.fleet.model import (
    CONNECTED_CLUSTER_TYPE,
    DEFAULT_SYNC_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    EXTENSION_TYPE,
    FLUX_CONFIGURATION_TYPE,
    FLUX_NAMESPACE,
    Actor,
    Extension,
    ExtensionSpec,
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
_EXTENSION_2025_SINCE = "2025-03-01"  # autoUpgradeMode, managementDetails, additionalDetails, extensionState

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
AUTO_UPGRADE_MODES = ("none", "patch", "compatible")
# Arc cluster facts the lab shows for every panel (AKS Edge Essentials on K3s).
_KUBERNETES_VERSION = "1.30.4"
_ARC_AGENT_VERSION = "1.21.10"
_CORES_PER_PANEL = 4


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
    identity: NotRequired[dict[str, str] | None]
    plan: NotRequired[dict[str, Any] | None]
    managedBy: NotRequired[str | None]


class ErrorDetailWire(TypedDict):
    code: str
    message: str


class ListPageWire(TypedDict):
    value: list[ResourceWire]
    nextLink: str | None


class OperationStatusWire(TypedDict):
    id: str
    name: str
    status: str
    properties: dict[str, Any]
    error: ErrorDetailWire | None


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
    spec: FluxSpec, body: object, api_version: str, *, protected: Mapping[str, str] | None = None
) -> tuple[FluxSpec, dict[str, str] | None]:
    """Merge a FluxConfigurationPatch into `spec` (and `protected`, the current protected settings);
    returns the new spec, and the new protected settings when the patch names any (else None).

    Only the patchable fields are read (scope, namespace and the reconciliation-wait fields cannot
    be patched; read-only fields are ignored). `configurationProtectedSettings` is merged like every
    other map of the body, by JSON merge patch (RFC 7396): a key with a value sets it, a key with
    `null` removes it, an absent key is kept, so `{}` changes nothing. ARM's RPC requires merge-patch
    semantics for PATCH bodies (ARM guideline RPC-V2-Patch-3, "The properties in the patch body must
    ... follow json merge patch", Azure/azure-openapi-validator docs/consistent-patch-properties.md),
    and the Azure CLI relies on it for maps: `az k8s-configuration flux kustomization delete` sends
    `{"kustomizations": {name: null}}`, and `flux update --https-key` sends only `httpsKey`
    (azure-cli-extensions src/k8s-configuration/.../providers/FluxConfigurationProvider.py).
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
    return new_spec, _merge_protected(protected or {}, patch_props)


def _merge_protected(current: Mapping[str, str], props: Mapping[str, Any]) -> dict[str, str] | None:
    """The protected settings after a PATCH's `configurationProtectedSettings` (merge patch)."""
    if "configurationProtectedSettings" not in props:
        return None
    value = props["configurationProtectedSettings"]
    if value is None:
        return {}  # the whole map set to null: every protected setting removed
    patch = _object(value, "properties.configurationProtectedSettings")
    for key, item in patch.items():
        if item is not None and not isinstance(item, str):
            raise InvalidRequestContent(
                f"Could not convert {_json_type(item)} to string.",
                path=f"properties.configurationProtectedSettings.{key}",
            )
    merged = merge_patch(dict(current), patch)
    assert isinstance(merged, dict)
    return {str(key): str(item) for key, item in merged.items()}


def _with_provider(spec: FluxSpec, provider: str | None) -> FluxSpec:
    assert spec.git_repository is not None
    git = spec.git_repository
    return _replace_spec(spec, git_repository=GitRepositorySpec(**{**git.__dict__, "provider": provider}))


def _replace_spec(spec: FluxSpec, **changes: Any) -> FluxSpec:
    return FluxSpec(**{**spec.__dict__, **changes})


# --- fluxConfigurations: model -> wire ------------------------------------------------------------
def _git_wire(git: GitRepositorySpec, api_version: str) -> dict[str, Any]:
    """Every GitRepositoryDefinition field, null where unset (`repositoryRef` too)."""
    ref = git.repository_ref
    wire: dict[str, Any] = {
        "url": git.url,
        "timeoutInSeconds": git.timeout_in_seconds,
        "syncIntervalInSeconds": git.sync_interval_in_seconds,
        "repositoryRef": None
        if ref is None
        else {"branch": ref.branch, "tag": ref.tag, "semver": ref.semver, "commit": ref.commit},
        "sshKnownHosts": git.ssh_known_hosts,
        "httpsUser": git.https_user,
        "httpsCACert": git.https_ca_cert,
        "localAuthRef": git.local_auth_ref,
    }
    if at_least(api_version, _PROVIDER_SINCE):
        wire["provider"] = git.provider
    return wire


def _kustomization_wire(kustomization: KustomizationSpec, *, with_name: bool) -> dict[str, Any]:
    """Every KustomizationDefinition field; `name` is read-only, so only responses carry it."""
    wire: dict[str, Any] = {"name": kustomization.name} if with_name else {}
    wire.update(
        {
            "path": kustomization.path,
            "dependsOn": list(kustomization.depends_on),
            "timeoutInSeconds": kustomization.timeout_in_seconds,
            "syncIntervalInSeconds": kustomization.sync_interval_in_seconds,
            "retryIntervalInSeconds": kustomization.retry_interval_in_seconds,
            "prune": kustomization.prune,
            "force": kustomization.force,
            "wait": kustomization.wait,
            "postBuild": dict(kustomization.post_build) if kustomization.post_build is not None else None,
        }
    )
    return wire


def writable_properties(spec: FluxSpec, api_version: str, *, with_names: bool = False) -> dict[str, Any]:
    """The writable FluxConfigurationProperties of `api_version`, in the spec's order, null where unset."""
    props: dict[str, Any] = {
        "scope": spec.scope,
        "namespace": spec.namespace,
        "sourceKind": spec.source_kind,
        "suspend": spec.suspend,
        "gitRepository": _git_wire(spec.git_repository, api_version)
        if spec.git_repository is not None
        else None,
        "bucket": dict(spec.bucket) if spec.bucket is not None else None,
        "azureBlob": dict(spec.azure_blob) if spec.azure_blob is not None else None,
    }
    if at_least(api_version, _OCI_SINCE):
        props["ociRepository"] = dict(spec.oci_repository) if spec.oci_repository is not None else None
    props["kustomizations"] = {
        k.name: _kustomization_wire(k, with_name=with_names) for k in spec.kustomizations
    }
    props["waitForReconciliation"] = spec.wait_for_reconciliation
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
    """Every FluxConfigurationProperties field of `api_version` but the write-only protected settings."""
    report = config.report
    writable = writable_properties(config.spec, api_version, with_names=True)
    wait_for, wait_duration = (
        writable.pop("waitForReconciliation"),
        writable.pop("reconciliationWaitDuration"),
    )
    props = {
        **writable,
        "statuses": [_status_wire(status) for status in report.statuses],
        "repositoryPublicKey": repository_public_key(config.spec.source_kind, config.uid),
        "sourceSyncedCommitId": report.source_synced_commit_id,
        "sourceUpdatedAt": iso(report.source_updated_at) if report.source_updated_at else None,
        "statusUpdatedAt": iso(report.status_updated_at) if report.status_updated_at else None,
        "waitForReconciliation": wait_for,
        "reconciliationWaitDuration": wait_duration,
        "complianceState": report.compliance_state,
        "provisioningState": config.provisioning_state,
        "errorMessage": report.error_message,
    }
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
        # When the certificate the agents hold expires (renewed while connected; see Connectivity).
        "managedIdentityCertificateExpirationTime": iso(connectivity.certificate_expires_at),
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


# --- extensions: body -> model ------------------------------------------------------------------------
def _string_map(value: object, path: str) -> dict[str, str] | None:
    if value is None:
        return None
    settings = _object(value, path)
    for key, item in settings.items():
        if not isinstance(item, str):
            raise InvalidRequestContent(
                f"Could not convert {_json_type(item)} to string.", path=f"{path}.{key}"
            )
    return dict(settings)


def _extension_scope(value: object) -> tuple[Literal["cluster", "namespace"], str]:
    """`scope`: either `{cluster: {releaseNamespace}}` or `{namespace: {targetNamespace}}`, not both."""
    if value is None:
        return "cluster", FLUX_NAMESPACE  # microsoft.flux installs into flux-system
    scope = _object(value, "properties.scope")
    cluster, namespace = scope.get("cluster"), scope.get("namespace")
    if cluster is not None and namespace is not None:
        raise BadRequest(
            "Scope of the extension can be either Cluster or Namespace; but not both.",
            target="properties.scope",
        )
    if namespace is not None:
        target = _optional(
            _object(namespace, "properties.scope.namespace"),
            "targetNamespace",
            str,
            "properties.scope.namespace",
        )
        return "namespace", target or FLUX_NAMESPACE
    if cluster is not None:
        release = _optional(
            _object(cluster, "properties.scope.cluster"), "releaseNamespace", str, "properties.scope.cluster"
        )
        return "cluster", release or FLUX_NAMESPACE
    return "cluster", FLUX_NAMESPACE


def parse_extension_put(body: object, api_version: str) -> tuple[ExtensionSpec, dict[str, str]]:
    """Extensions_Create: the spec with the schema's defaults, and the write-only protected settings."""
    root = _object(body, "")
    props = _object(root.get("properties"), "properties")
    path = "properties"
    extension_type = _optional(props, "extensionType", str, path)
    if not extension_type:
        raise BadRequest("'properties.extensionType' is required.", target="properties.extensionType")
    auto_upgrade = _optional(props, "autoUpgradeMinorVersion", bool, path)
    identity = root.get("identity")
    identity_type = None
    if identity is not None:
        identity_type = _enum(
            _optional(_object(identity, "identity"), "type", str, "identity"),
            ("SystemAssigned",),
            "identity.type",
        )
    newer = at_least(api_version, _EXTENSION_2025_SINCE)
    scope_kind, scope_namespace = _extension_scope(props.get("scope"))
    spec = ExtensionSpec(
        extension_type=extension_type,
        auto_upgrade_minor_version=True if auto_upgrade is None else auto_upgrade,
        release_train=_optional(props, "releaseTrain", str, path) or "Stable",
        version=_optional(props, "version", str, path),
        scope_kind=scope_kind,
        scope_namespace=scope_namespace,
        configuration_settings=_string_map(
            props.get("configurationSettings"), f"{path}.configurationSettings"
        )
        or {},
        identity_type=identity_type,
        auto_upgrade_mode=_enum(
            _optional(props, "autoUpgradeMode", str, path), AUTO_UPGRADE_MODES, f"{path}.autoUpgradeMode"
        )
        if newer
        else None,
        aks_assigned_identity=_object(props["aksAssignedIdentity"], f"{path}.aksAssignedIdentity")
        if props.get("aksAssignedIdentity") is not None
        else None,
        plan=_object(root["plan"], "plan") if root.get("plan") is not None else None,
        managed_by=_optional(root, "managedBy", str, "") if newer else None,
    )
    validate_extension_spec(spec)
    protected = _string_map(
        props.get("configurationProtectedSettings"), f"{path}.configurationProtectedSettings"
    )
    return spec, protected or {}


def validate_extension_spec(spec: ExtensionSpec) -> None:
    """What the RP refuses at once (the docs: "You can't set the version parameter if
    auto-upgrade-minor-version is set to true", extensions.md)."""
    if spec.auto_upgrade_minor_version and spec.version is not None:
        raise BadRequest(
            "'version' can only be set when 'autoUpgradeMinorVersion' is false.", target="properties.version"
        )


def apply_extension_patch(
    spec: ExtensionSpec, body: object, api_version: str
) -> tuple[ExtensionSpec, dict[str, str] | None]:
    """Merge a patchExtension into `spec`; `configurationSettings` merge key by key (null deletes a key),
    `configurationProtectedSettings` replace the whole map ("If you omit any of the settings, those
    settings are considered obsolete, and they're deleted", extensions.md)."""
    props = _object(_object(body, "").get("properties", {}), "properties")
    path = "properties"
    changes: dict[str, Any] = {}
    if "autoUpgradeMinorVersion" in props:
        value = _optional(props, "autoUpgradeMinorVersion", bool, path)
        changes["auto_upgrade_minor_version"] = True if value is None else value
    if "releaseTrain" in props:
        changes["release_train"] = _optional(props, "releaseTrain", str, path) or "Stable"
    if "version" in props:
        changes["version"] = _optional(props, "version", str, path)
    if "configurationSettings" in props:
        patch = props["configurationSettings"]
        if patch is None:
            changes["configuration_settings"] = {}
        else:
            settings = dict(spec.configuration_settings)
            for key, value in _object(patch, f"{path}.configurationSettings").items():
                if value is None:
                    settings.pop(key, None)
                elif not isinstance(value, str):
                    raise InvalidRequestContent(
                        f"Could not convert {_json_type(value)} to string.",
                        path=f"{path}.configurationSettings.{key}",
                    )
                else:
                    settings[key] = value
            changes["configuration_settings"] = settings
    if "autoUpgradeMode" in props and at_least(api_version, _EXTENSION_2025_SINCE):
        changes["auto_upgrade_mode"] = _enum(
            _optional(props, "autoUpgradeMode", str, path), AUTO_UPGRADE_MODES, f"{path}.autoUpgradeMode"
        )
    new_spec = ExtensionSpec(**{**spec.__dict__, **changes})
    validate_extension_spec(new_spec)
    if "configurationProtectedSettings" not in props:
        return new_spec, None  # untouched
    protected = _string_map(props["configurationProtectedSettings"], f"{path}.configurationProtectedSettings")
    return new_spec, protected or {}  # null clears them all


# --- extensions: model -> wire ------------------------------------------------------------------------
def extension_id(panel: Panel, name: str) -> str:
    return f"{panel.identity.id}/providers/{EXTENSION_TYPE}/{name}"


def render_extension(panel: Panel, extension: Extension, api_version: str, tenant_id: str) -> ResourceWire:
    """Every Extension property of `api_version`, null where unset."""
    spec = extension.spec
    error = extension.error_info
    props: dict[str, Any] = {
        "extensionType": spec.extension_type,
        "autoUpgradeMinorVersion": spec.auto_upgrade_minor_version,
        "releaseTrain": spec.release_train,
        "version": spec.version,
        "scope": {
            "cluster": {"releaseNamespace": spec.scope_namespace} if spec.scope_kind == "cluster" else None,
            "namespace": {"targetNamespace": spec.scope_namespace}
            if spec.scope_kind == "namespace"
            else None,
        },
        "configurationSettings": dict(spec.configuration_settings),
        # x-ms-secret: the values never come back; ARM answers an empty map (az k8s-extension show output
        # in tutorial-akv-secrets-provider.md).
        "configurationProtectedSettings": {},
        "currentVersion": extension.current_version,
        "provisioningState": extension.provisioning_state,
        "statuses": [],
        "errorInfo": None if error is None else {"code": error.code, "message": error.message},
        "customLocationSettings": None,
        "packageUri": None,
        "aksAssignedIdentity": _aks_identity(spec, api_version),
        "isSystemExtension": False,
    }
    if at_least(api_version, _EXTENSION_2025_SINCE):
        props.update(
            {
                "autoUpgradeMode": spec.auto_upgrade_mode,
                "managementDetails": None,
                "additionalDetails": None,
                "extensionState": None,
            }
        )
    identity = None
    if spec.identity_type is not None:
        identity = {
            "type": spec.identity_type,
            "principalId": extension.principal_id or "",
            "tenantId": tenant_id,
        }
    wire = ResourceWire(
        id=extension_id(panel, extension.name),
        name=extension.name,
        type=EXTENSION_TYPE,
        systemData=system_data(
            extension.created_at, extension.created_by, extension.last_modified_at, extension.last_modified_by
        ),
        identity=identity,
        plan=dict(spec.plan) if spec.plan is not None else None,
        properties=props,
    )
    if at_least(api_version, _EXTENSION_2025_SINCE):
        wire["managedBy"] = spec.managed_by
    return wire


def _aks_identity(spec: ExtensionSpec, api_version: str) -> dict[str, Any] | None:
    """AKS-only; on Arc clusters it stays null unless a client sent one."""
    given = spec.aks_assigned_identity
    if given is None:
        return None
    identity: dict[str, Any] = {"principalId": None, "tenantId": None, "type": given.get("type")}
    if at_least(api_version, _EXTENSION_2025_SINCE):
        identity.update({key: given.get(key) for key in ("objectId", "clientId", "resourceId")})
    return identity
