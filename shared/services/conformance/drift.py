"""Drift: a panel's extension and Flux configuration as ARM returns them, against the declaration.

Inputs are ARM's JSON as the SDKs' `as_dict()` gives it for the 2025-04-01 (fluxConfigurations) and
2025-03-01 (extensions) shapes: every property present, `null` where unset. Only declared fields are
compared (see `declaration`); read-only ones never are (`repositoryPublicKey`, `statuses`, ...), nor
`suspend` (the release pipelines' business) or the credential (the rollout's). Field names are ARM's
spelling under `extension.` / `configuration.`, so an operator can find them in `az ... show`.

The outputs are pure values: the differences, the panel's state, and the *smallest* writes that repair
it — a JSON merge patch of only the differing configuration fields, the extension settings that differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.image_policy.extension_support import RELEASES
from shared.services.conformance.declaration import (
    Configuration,
    Desired,
    Extension,
    Kustomization,
    version_key,
)

# The one upgrade path the microsoft.flux release notes require: "Clusters must be running version
# 1.21.0 or higher in order to subsequently upgrade to version 1.23.0" (flux-gitops-release-notes.md).
UPGRADE_GATE = "1.23.0"
UPGRADE_FLOOR = "1.21.0"

CONFORMANT = "conformant"
DRIFTED = "drifted"
NOT_ONBOARDED = "not-onboarded"
EXTENSION_OUTDATED = "extension-outdated"
UNREACHABLE = "unreachable"
STATES = (CONFORMANT, DRIFTED, NOT_ONBOARDED, EXTENSION_OUTDATED, UNREACHABLE)


@dataclass(frozen=True)
class Difference:
    field: str
    want: Any
    have: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "want": self.want, "have": self.have}


@dataclass(frozen=True)
class Assessment:
    """One panel against the declaration."""

    state: str
    differences: tuple[Difference, ...] = ()
    upgrade_path: tuple[str, ...] = ()
    extension_missing: bool = False
    configuration_missing: bool = False
    extension_patch: Mapping[str, Any] = field(default_factory=dict)
    configuration_patch: Mapping[str, Any] = field(default_factory=dict)
    # Fields a PATCH cannot change (scope, namespace): only a reset recreates them.
    needs_reset: tuple[str, ...] = ()


def assess(
    desired: Desired,
    *,
    extension: Mapping[str, Any] | None,
    configuration: Mapping[str, Any] | None,
    offline: bool = False,
) -> Assessment:
    """Compare one panel; `extension`/`configuration` are ARM's resources (None when absent)."""
    ext_diffs, ext_patch = extension_differences(desired.extension, extension)
    conf_diffs, conf_patch, needs_reset = configuration_differences(desired.configuration, configuration)
    differences = tuple(ext_diffs + conf_diffs)
    path = upgrade_path(desired.extension, current_version(extension)) if extension is not None else ()
    common: dict[str, Any] = {
        "differences": differences,
        "extension_missing": extension is None,
        "configuration_missing": configuration is None,
        "extension_patch": ext_patch,
        "configuration_patch": conf_patch,
        "needs_reset": needs_reset,
        "upgrade_path": path,
    }
    if offline:
        state = UNREACHABLE
    elif extension is None or configuration is None:
        state = NOT_ONBOARDED
    elif path:
        state = EXTENSION_OUTDATED
    elif differences:
        state = DRIFTED
    else:
        state = CONFORMANT
    return Assessment(state=state, **common)


# --- the extension ---------------------------------------------------------------------------------
def current_version(extension: Mapping[str, Any] | None) -> str | None:
    props = (extension or {}).get("properties") or {}
    return props.get("currentVersion") or props.get("version") or None


def extension_differences(
    want: Extension, have: Mapping[str, Any] | None
) -> tuple[list[Difference], dict[str, Any]]:
    """Differences of the declared extension fields, and the PATCH `properties` that repair them."""
    if have is None:
        return [Difference("extension", {"extensionType": want.type, "name": want.name}, None)], {}
    props = have.get("properties") or {}
    diffs: list[Difference] = []
    patch: dict[str, Any] = {}
    if bool(props.get("autoUpgradeMinorVersion")) != want.auto_upgrade:
        diffs.append(
            Difference(
                "extension.autoUpgradeMinorVersion", want.auto_upgrade, props.get("autoUpgradeMinorVersion")
            )
        )
        patch["autoUpgradeMinorVersion"] = want.auto_upgrade
    if (props.get("releaseTrain") or "Stable").lower() != want.release_train.lower():
        diffs.append(Difference("extension.releaseTrain", want.release_train, props.get("releaseTrain")))
        patch["releaseTrain"] = want.release_train
    settings = props.get("configurationSettings") or {}
    for key, value in want.settings.items():
        if settings.get(key) != value:
            diffs.append(Difference(f'extension.configurationSettings["{key}"]', value, settings.get(key)))
            patch.setdefault("configurationSettings", {})[key] = value
    state = props.get("provisioningState")
    if state not in (None, "Succeeded", "Creating", "Updating"):
        error = props.get("errorInfo") or {}
        have_state = f"{state}: {error.get('message')}" if error.get("message") else state
        diffs.append(Difference("extension.provisioningState", "Succeeded", have_state))
    running = current_version(have)
    if running and version_key(running) < version_key(want.minimum_version):
        diffs.append(Difference("extension.currentVersion", f">= {want.minimum_version}", running))
    return diffs, patch


def upgrade_path(want: Extension, running: str | None) -> tuple[str, ...]:
    """The versions to step through from `running` to what the declaration asks, in order; () when the
    running version already satisfies the minimum."""
    if running is None or version_key(running) >= version_key(want.minimum_version):
        return ()
    target = want.target_version or newest_release()
    if version_key(running) < version_key(UPGRADE_FLOOR) <= version_key(UPGRADE_GATE) <= version_key(target):
        step = max(
            (
                r.version
                for r in RELEASES
                if version_key(UPGRADE_FLOOR) <= version_key(r.version) < version_key(UPGRADE_GATE)
            ),
            key=version_key,
        )
        return (step, target)
    return (target,)


def newest_release() -> str:
    return max((r.version for r in RELEASES), key=version_key)


# --- the Flux configuration ------------------------------------------------------------------------
def configuration_differences(  # noqa: PLR0912 - one comparison per declared field, in the file's order
    want: Configuration, have: Mapping[str, Any] | None
) -> tuple[list[Difference], dict[str, Any], tuple[str, ...]]:
    """Differences of the declared configuration fields, the merge patch that repairs them, and the
    fields only a reset can repair."""
    if have is None:
        return [Difference("configuration", want.name, None)], {}, ()
    props = have.get("properties") or {}
    diffs: list[Difference] = []
    patch: dict[str, Any] = {}
    reset: list[str] = []
    for key, wanted in (("scope", want.scope), ("namespace", want.namespace)):
        if (props.get(key) or "").lower() != wanted.lower():
            diffs.append(Difference(f"configuration.{key}", wanted, props.get(key)))
            reset.append(f"configuration.{key}")
    if props.get("sourceKind") not in (None, "GitRepository"):
        diffs.append(Difference("configuration.sourceKind", "GitRepository", props.get("sourceKind")))
        patch["sourceKind"] = "GitRepository"
    git = props.get("gitRepository") or {}
    git_patch: dict[str, Any] = {}
    _compare(diffs, git_patch, "configuration.gitRepository.url", "url", want.git.url, git.get("url"))
    ref = git.get("repositoryRef") or {}
    if ref.get("branch") != want.git.branch:
        diffs.append(
            Difference("configuration.gitRepository.repositoryRef.branch", want.git.branch, ref.get("branch"))
        )
        # A merge patch keeps tag/semver/commit unless they are removed: a branch ref is the branch only.
        git_patch["repositoryRef"] = {"branch": want.git.branch, "tag": None, "semver": None, "commit": None}
    _compare(
        diffs,
        git_patch,
        "configuration.gitRepository.syncIntervalInSeconds",
        "syncIntervalInSeconds",
        want.git.sync_interval_s,
        git.get("syncIntervalInSeconds"),
    )
    _compare(
        diffs,
        git_patch,
        "configuration.gitRepository.timeoutInSeconds",
        "timeoutInSeconds",
        want.git.timeout_s,
        git.get("timeoutInSeconds"),
    )
    if git.get("provider") != "Azure":
        # On workload identity there is no HTTPS user; how a panel authenticates is the credential
        # rollout's and migration's business, not drift.
        _compare(
            diffs,
            git_patch,
            "configuration.gitRepository.httpsUser",
            "httpsUser",
            want.git.https_user,
            git.get("httpsUser"),
        )
    if git_patch:
        patch["gitRepository"] = git_patch
    kustomizations = props.get("kustomizations") or {}
    k_patch: dict[str, Any] = {}
    for name, wanted_k in want.kustomizations.items():
        have_k = kustomizations.get(name)
        if have_k is None:
            diffs.append(
                Difference(f"configuration.kustomizations.{name}", kustomization_wire(wanted_k), None)
            )
            k_patch[name] = kustomization_wire(wanted_k)
            continue
        one: dict[str, Any] = {}
        for key, wanted_value in _kustomization_fields(wanted_k):
            _compare(
                diffs, one, f"configuration.kustomizations.{name}.{key}", key, wanted_value, have_k.get(key)
            )
        if one:
            k_patch[name] = one
    for name in kustomizations:
        if name not in want.kustomizations:
            diffs.append(
                Difference(
                    f"configuration.kustomizations.{name}", None, {"path": kustomizations[name].get("path")}
                )
            )
            k_patch[name] = None  # a merge patch's null removes it
    if k_patch:
        patch["kustomizations"] = k_patch
    return diffs, patch, tuple(reset)


def _compare(  # noqa: PLR0917 - (diffs, patch, name, key, want, have) read as one comparison
    diffs: list[Difference], patch: dict[str, Any], name: str, key: str, want: Any, have: Any
) -> None:
    if want is None:
        return  # not declared: not compared
    if isinstance(want, list):
        have = list(have or [])
    if want != have:
        diffs.append(Difference(name, want, have))
        patch[key] = want


def _kustomization_fields(k: Kustomization) -> list[tuple[str, Any]]:
    return [
        ("path", k.path),
        ("prune", k.prune),
        ("syncIntervalInSeconds", k.sync_interval_s),
        ("timeoutInSeconds", k.timeout_s),
        ("retryIntervalInSeconds", k.retry_interval_s),
        ("dependsOn", list(k.depends_on) if k.depends_on is not None else None),
        ("force", k.force),
        ("wait", k.wait),
    ]


def kustomization_wire(k: Kustomization) -> dict[str, Any]:
    """A KustomizationDefinition with the declared fields (ARM fills the rest with its defaults)."""
    return {key: value for key, value in _kustomization_fields(k) if value is not None}


def configuration_body(
    want: Configuration, *, https_key: str | None, provider: str | None = None
) -> dict[str, Any]:
    """The PUT body that creates the configuration. `https_key` is base64 of the PAT: the caller holds it
    only for this call, and it is never logged or stored."""
    git: dict[str, Any] = {"url": want.git.url, "repositoryRef": {"branch": want.git.branch}}
    if want.git.sync_interval_s is not None:
        git["syncIntervalInSeconds"] = want.git.sync_interval_s
    if want.git.timeout_s is not None:
        git["timeoutInSeconds"] = want.git.timeout_s
    properties: dict[str, Any] = {
        "scope": want.scope,
        "namespace": want.namespace,
        "sourceKind": "GitRepository",
        "suspend": False,
        "gitRepository": git,
        "kustomizations": {name: kustomization_wire(k) for name, k in want.kustomizations.items()},
    }
    if provider == "Azure":
        git["provider"] = "Azure"
    else:
        git["httpsUser"] = want.git.https_user or "git"
        if https_key is not None:
            properties["configurationProtectedSettings"] = {"httpsKey": https_key}
    return {"properties": properties}


def extension_body(
    want: Extension, *, version: str | None, current_settings: Mapping[str, str] | None
) -> dict[str, Any]:
    """The PUT body that installs (or upgrades) the extension. On an upgrade the panel's own settings are
    kept (a PUT replaces the whole map: `workloadIdentity.enable` must survive), the declared ones win."""
    properties: dict[str, Any] = {
        "extensionType": want.type,
        "autoUpgradeMinorVersion": want.auto_upgrade,
        "releaseTrain": want.release_train,
        "scope": {"cluster": {"releaseNamespace": "flux-system"}},
        "configurationSettings": {**(current_settings or {}), **want.settings},
    }
    if not want.auto_upgrade:
        properties["version"] = version or want.target_version
    return {"identity": {"type": "SystemAssigned"}, "properties": properties}
