"""What an agent reports: Flux's objects and conditions, as Arc copies them into `fluxConfigurations`.

Wording follows Flux v2 (source-controller / kustomize-controller v1): a GitRepository is `Ready`
with reason `Succeeded` and "stored artifact for revision 'main@sha1:<sha>'", or not ready with
`GitOperationFailed` ("failed to checkout and determine revision: unable to clone '<url>':
authentication required") or `AuthenticationFailed` when the credential cannot even be built; a
Kustomization is `Ready` with `ReconciliationSucceeded` and "Applied revision: main@sha1:<sha>", or
not ready with `ArtifactFailed`. A condition's `lastTransitionTime` moves only when its status flips,
as in Kubernetes. Arc rolls the objects up into `complianceState` (`Compliant`, `Non-Compliant`,
`Pending`, `Suspended`) and shows the failing message in `errorMessage`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lab.fleet.git_fetch import DEFAULT_BRANCH, FetchResult, normalise_path
from lab.fleet.model import (
    ComplianceState,
    Condition,
    ConditionStatus,
    ConfigAgentState,
    DeliveredConfig,
    FluxConfig,
    FluxReport,
    ObjectStatus,
)

_COMPLIANCE: dict[ConditionStatus, ComplianceState] = {
    "True": "Compliant",
    "False": "Non-Compliant",
    "Unknown": "Pending",
}


@dataclass(frozen=True)
class _Observed:
    name: str
    kind: Literal["GitRepository", "Kustomization"]
    status: ConditionStatus
    reason: str
    message: str


def ref_label(delivered: DeliveredConfig) -> str:
    """The ref part of a Flux revision (`main` in `main@sha1:<sha>`)."""
    git = delivered.spec.git_repository
    ref = git.repository_ref if git is not None else None
    if ref is not None and ref.branch:
        return ref.branch
    if ref is not None and ref.tag:
        return ref.tag
    return DEFAULT_BRANCH


def report_fetch(
    config: FluxConfig,
    state: ConfigAgentState,
    delivered: DeliveredConfig,
    now: datetime,
    result: FetchResult,
    *,
    credential_problem: bool = False,
) -> None:
    label = ref_label(delivered)
    if result.ok:
        source = _Observed(
            config.name,
            "GitRepository",
            "True",
            "Succeeded",
            f"stored artifact for revision '{label}@sha1:{result.revision}'",
        )
    else:
        reason = "AuthenticationFailed" if credential_problem else "GitOperationFailed"
        source = _Observed(config.name, "GitRepository", "False", reason, result.error or "fetch failed")
    observed = [
        source,
        *(_kustomization(config, state, label, k.name, k.path) for k in delivered.spec.kustomizations),
    ]
    _publish(config, state, delivered, now, observed=observed, label=label)


def report_suspended(
    config: FluxConfig, state: ConfigAgentState, delivered: DeliveredConfig, now: datetime
) -> None:
    """A suspended configuration: objects keep their last conditions; nothing new is applied."""
    previous = config.report
    config.report = FluxReport(
        statuses=previous.statuses,
        compliance_state="Suspended",
        source_synced_commit_id=_synced_commit(state, ref_label(delivered)),
        source_updated_at=state.source_updated_at,
        status_updated_at=now,
        error_message="",
    )


def report_unsupported(
    config: FluxConfig, state: ConfigAgentState, delivered: DeliveredConfig, now: datetime, message: str
) -> None:
    config.report = FluxReport(
        statuses=(),
        compliance_state="Non-Compliant",
        source_synced_commit_id=_synced_commit(state, ref_label(delivered)),
        source_updated_at=state.source_updated_at,
        status_updated_at=now,
        error_message=message,
    )


def _kustomization(
    config: FluxConfig, state: ConfigAgentState, label: str, name: str, path: str
) -> _Observed:
    object_name = f"{config.name}-{name}"
    if state.applied_revision is None:
        return _Observed(
            object_name,
            "Kustomization",
            "False",
            "ArtifactFailed",
            "Source artifact not found, retrying in 30s",
        )
    tree_path = normalise_path(path)
    if tree_path and state.tree_dirs is not None and tree_path not in state.tree_dirs:
        # kustomize-controller extracts the artifact into a temp dir; the number is stable per object.
        # Only quoted in the message (kustomize-controller's temp dir); the lab creates no file.
        workdir = f"/tmp/kustomization-{zlib.crc32(object_name.encode()) % 1_000_000_000}"  # noqa: S108
        return _Observed(
            object_name,
            "Kustomization",
            "False",
            "ArtifactFailed",
            f"kustomization path not found: stat {workdir}/{tree_path}: no such file or directory",
        )
    return _Observed(
        object_name,
        "Kustomization",
        "True",
        "ReconciliationSucceeded",
        f"Applied revision: {label}@sha1:{state.applied_revision}",
    )


def _synced_commit(state: ConfigAgentState, label: str) -> str | None:
    """Arc's `sourceSyncedCommitId`: `<branch>/<sha>`."""
    return f"{label}/{state.applied_revision}" if state.applied_revision else None


def _publish(
    config: FluxConfig,
    state: ConfigAgentState,
    delivered: DeliveredConfig,
    now: datetime,
    *,
    observed: list[_Observed],
    label: str,
) -> None:
    conditions: dict[str, Condition] = {}
    statuses: list[ObjectStatus] = []
    for item in observed:
        previous = state.conditions.get(item.name)
        since = (
            previous.last_transition_time if previous is not None and previous.status == item.status else now
        )
        condition = Condition(
            status=item.status, reason=item.reason, message=item.message, last_transition_time=since
        )
        conditions[item.name] = condition
        statuses.append(
            ObjectStatus(
                name=item.name,
                namespace=delivered.spec.namespace,
                kind=item.kind,
                compliance_state=_COMPLIANCE[item.status],
                condition=condition,
            )
        )
    state.conditions = conditions
    failing = [item for item in observed if item.status == "False"]
    compliance: ComplianceState
    if failing:
        compliance = "Non-Compliant"
    elif observed and all(item.status == "True" for item in observed):
        compliance = "Compliant"
    else:
        compliance = "Pending"
    config.report = FluxReport(
        statuses=tuple(statuses),
        compliance_state=compliance,
        source_synced_commit_id=_synced_commit(state, label),
        source_updated_at=state.source_updated_at,
        status_updated_at=now,
        error_message=failing[0].message if failing else "",
    )
