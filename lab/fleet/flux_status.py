"""What an agent reports: Flux's objects and conditions, as Arc copies them into `fluxConfigurations`.

Every reason and message is Flux v2's own (sources pinned in each function):

- GitRepository (fluxcd/source-controller 39b711b, 2026-07-02,
  `internal/controller/gitrepository_controller.go`): `Ready` with reason `Succeeded` and "stored
  artifact for revision '%s'" (line 612, `main@sha1:<sha>`); not ready with `GitOperationFailed` and
  "failed to checkout and determine revision: %w" (line 1069) around go-git's "unable to clone '%s':
  %w" (fluxcd/pkg `git/gogit/clone.go` line 110), or `AuthenticationFailed` when the credential cannot
  be built (line 670, 683, 816);
- Kustomization (fluxcd/kustomize-controller 186fb3b, 2026-08-01,
  `internal/controller/kustomization_controller.go`): `ReconciliationSucceeded` "Applied revision: %s"
  (line 538-541); `ArtifactFailed` "Source artifact not found, retrying in %s" (line 235-237, the
  30 s `--requeue-dependency` default, main.go line 115) or "kustomization path not found: %w" (line
  378); `BuildFailed` (line 427-453, texts in `lab.fleet.kustomize`); `HealthCheckFailed` (line 528,
  texts in `lab.fleet.health`). Reason constants: fluxcd/pkg `apis/meta/conditions.go` line 83-146.

A condition's `lastTransitionTime` moves only when its status flips, as in Kubernetes. Arc rolls the
objects up into `complianceState` (`Compliant`, `Non-Compliant`, `Pending`, `Suspended`) and shows the
failing message in `errorMessage` (reference/azure-apis.md §1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lab.fleet.apply import KustomizationFailure
from lab.fleet.git_fetch import DEFAULT_BRANCH, FetchResult, normalise_path
from lab.fleet.kustomize import ARTIFACT_FAILED, work_dir_for
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
    source_reason: str | None = None,
    applied: Mapping[str, KustomizationFailure | None] | None = None,
) -> None:
    """Report a sync: the GitRepository's fetch, and each Kustomization's apply (`applied`, by name:
    a failure, or None for applied and healthy; a name missing there is judged by its path alone)."""
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
        reason = source_reason or ("AuthenticationFailed" if credential_problem else "GitOperationFailed")
        source = _Observed(config.name, "GitRepository", "False", reason, result.error or "fetch failed")
    observed = [
        source,
        *(
            _kustomization(
                config, state, label, k.name, k.path, outcome=(applied or {}).get(k.name, _UNJUDGED)
            )
            for k in delivered.spec.kustomizations
        ),
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


# Marks a kustomization `report_fetch` was given no apply outcome for.
_UNJUDGED = KustomizationFailure(reason="", message="")


def _kustomization(
    config: FluxConfig,
    state: ConfigAgentState,
    label: str,
    name: str,
    path: str,
    *,
    outcome: KustomizationFailure | None,
) -> _Observed:
    object_name = f"{config.name}-{name}"
    if state.applied_revision is None:
        return _Observed(
            object_name,
            "Kustomization",
            "False",
            ARTIFACT_FAILED,
            "Source artifact not found, retrying in 30s",
        )
    if outcome is not None and outcome is not _UNJUDGED:
        return _Observed(object_name, "Kustomization", "False", outcome.reason, outcome.message)
    tree_path = normalise_path(path)
    unknown_path = state.tree_dirs is not None and tree_path not in state.tree_dirs
    if outcome is _UNJUDGED and tree_path and unknown_path:
        # The revision's files are not known, only its folders: the path check alone.
        return _Observed(
            object_name,
            "Kustomization",
            "False",
            ARTIFACT_FAILED,
            f"kustomization path not found: stat {work_dir_for(object_name)}/{tree_path}: "
            "no such file or directory",
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
