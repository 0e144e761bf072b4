"""Ground truth: what a panel really holds and did, which ARM does not show (never a secret value).

`GET /_lab/state` lists this for every panel; `GET /_lab/clusters/{name}` for one. The credential a
panel holds is shown only as a fingerprint (first 16 hex chars of its SHA-256), so a test can tell
which PAT each panel uses without the lab ever echoing one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lab.core.clock import iso
from lab.fleet.agents import held_password
from lab.fleet.model import FLUX_CONFIGURATION_NAME, Panel, fingerprint


def cluster_truth(panel: Panel, now: datetime) -> dict[str, Any]:
    """One panel's ground truth: what ARM shows, plus what only the panel knows (never a secret)."""
    ident = panel.identity
    config = panel.flux_config(FLUX_CONFIGURATION_NAME) or next(iter(panel.flux_configs.values()), None)
    state = panel.agents.get(config.name.lower()) if config is not None else None
    delivered = state.delivered if state is not None else None
    git = delivered.spec.git_repository if delivered is not None else None
    pat = held_password(delivered)
    last = state.last_fetch if state is not None else None
    same_config = delivered is not None and config is not None and delivered.uid == config.uid
    return {
        "name": ident.name,
        "id": ident.id,
        "subscription": ident.subscription,
        "resourceGroup": ident.resource_group,
        "tags": ident.tags,
        "online": panel.connectivity.online,
        "connectivity_status": panel.connectivity.status(now),
        "suspended": delivered.spec.suspend if delivered is not None else None,
        "credential_fingerprint": fingerprint(pat) if pat else None,
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
        "flux_extension_version": ident.flux_extension_version,
        "workload_identity_ready": ident.supports_workload_identity,
    }
