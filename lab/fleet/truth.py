"""Ground truth: what a panel really holds and did, which ARM does not show (never a secret value).

`GET /_lab/state` lists this for every panel; `GET /_lab/clusters/{name}` for one. The credential a
panel holds is shown only as a fingerprint (first 16 hex chars of its SHA-256), so a test can tell
which PAT each panel uses without the lab ever echoing one; whether that credential could push to
Git (`credential_can_push`) is asked of the devops service, which knows each PAT's scope. The secrets
a panel holds (`secrets`: names, types and keys, never a value) decide whether its workloads can start,
so they are part of its truth too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from lab.core.clock import iso
from lab.fleet.agents import held_password
from lab.fleet.model import FLUX_CONFIGURATION_NAME, Extension, FluxConfig, Panel, fingerprint
from lab.fleet.secrets import PanelSecrets, secrets_truth

# Whether a PAT value may push (a write scope, active): the devops service's answer, or None when the
# lab runs without it. Called with the secret; it must never be stored or shown.
PushCheck = Callable[[str], bool]


def cluster_truth(
    panel: Panel,
    now: datetime,
    *,
    can_push: PushCheck | None = None,
    secrets: PanelSecrets | None = None,
) -> dict[str, Any]:
    """One panel's ground truth: what ARM shows, plus what only the panel knows (never a secret).

    `secrets` is the agents' store of what each panel holds; without it (no agents) `secrets` is null.
    """
    ident = panel.identity
    config = panel.flux_config(FLUX_CONFIGURATION_NAME) or next(iter(panel.flux_configs.values()), None)
    state = panel.agents.get(config.name.lower()) if config is not None else None
    delivered = state.delivered if state is not None else None
    git = delivered.spec.git_repository if delivered is not None else None
    pat = held_password(delivered)
    last = state.last_fetch if state is not None else None
    same_config = delivered is not None and config is not None and delivered.uid == config.uid
    extension = panel.flux_extension()
    return {
        "name": ident.name,
        "id": ident.id,
        "subscription": ident.subscription,
        "resourceGroup": ident.resource_group,
        "tags": ident.tags,
        "runner": ident.is_runner,
        "online": panel.connectivity.online,
        "connectivity_status": panel.connectivity.status(now),
        "certificate_expires_at": iso(panel.connectivity.certificate_expires_at),
        "agents_running": panel.agents_can_run(now),
        "onboarded": extension is not None and extension.running and config is not None,
        "extension": _extension_truth(extension),
        "image_controllers": panel.image_controllers(),
        "configuration": _configuration_truth(config),
        "suspended": delivered.spec.suspend if delivered is not None else None,
        "credential_fingerprint": fingerprint(pat) if pat else None,
        "credential_can_push": _can_push(pat, can_push),
        "https_user": git.https_user if git is not None else None,
        "provider": git.provider if git is not None else None,
        "last_fetch": None
        if last is None
        else {
            "ok": last.ok,
            "revision": last.revision,
            "error": last.error,
            "at": iso(last.at),
        },
        "applied_revision": state.applied_revision if state is not None else None,
        "config_generation": config.generation if config is not None else None,
        "delivered_generation": delivered.generation if same_config and delivered is not None else 0,
        "dropped_generation": state.dropped_generation
        if state is not None and config is not None and state.dropped_uid == config.uid
        else 0,
        "compliance_state": config.report.compliance_state if config is not None else None,
        "flux_extension_version": panel.flux_extension_version,
        "workload_identity_ready": panel.supports_workload_identity,
        "secrets": secrets_truth(secrets, ident.name) if secrets is not None else None,
    }


def _can_push(pat: str | None, can_push: PushCheck | None) -> bool | None:
    """False when the panel holds no PAT; None when there is no devops service to ask."""
    if not pat:
        return False
    return can_push(pat) if can_push is not None else None


def _extension_truth(extension: Extension | None) -> dict[str, Any] | None:
    """The microsoft.flux extension as the cluster has it (no protected settings: write-only)."""
    if extension is None:
        return None
    spec = extension.spec
    return {
        "name": extension.name,
        "type": spec.extension_type,
        "version": spec.version,
        "currentVersion": extension.current_version,
        "autoUpgradeMinorVersion": spec.auto_upgrade_minor_version,
        "releaseTrain": spec.release_train,
        "configurationSettings": dict(spec.configuration_settings),
        "provisioningState": "Deleting" if extension.deleting else extension.provisioning_state,
        "errorInfo": None
        if extension.error_info is None
        else {"code": extension.error_info.code, "message": extension.error_info.message},
    }


def _configuration_truth(config: FluxConfig | None) -> dict[str, Any] | None:
    """The desired `ipc-platform-config` in a line: its generation and what it asks the panel to do."""
    if config is None:
        return None
    spec = config.spec
    git = spec.git_repository
    ref = git.repository_ref if git is not None else None
    return {
        "name": config.name,
        "generation": config.generation,
        "provisioningState": config.provisioning_state,
        "sourceKind": spec.source_kind,
        "url": git.url if git is not None else None,
        "branch": ref.branch if ref is not None else None,
        "suspend": spec.suspend,
        "kustomizations": {k.name: k.path for k in spec.kustomizations},
        # The names of the protected settings ARM holds (write-only in ARM's answers; never a value).
        "protectedSettingKeys": sorted(config.protected_settings),
    }
