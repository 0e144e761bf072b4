"""What an operation's rows add up to: its summary, its final status, and the documents the API shows.

Pure functions over `OperationRecord`/`PanelRecord`, so the rules a release pipeline depends on (when
is an operation "succeeded"? what counts as done?) are stated once and unit-tested without storage.
The documents' wire shapes are the `TypedDict`s below; every timestamp is `shared.timestamps`'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

from shared.errors import safe_text
from shared.models import DONE_STATES, SETTLED_STATES, FluxState, OperationStatus
from shared.ports import OperationRecord, PanelRecord
from shared.timestamps import format_optional, format_time


class ClusterDoc(TypedDict):
    id: str
    name: str
    subscription: str
    resourceGroup: str
    stage: str | None
    state: str
    detail: str
    attempts: int
    acceptedAt: str | None
    updatedAt: str | None


class OperationDoc(TypedDict):
    """`GET /api/operations/{id}`."""

    id: str
    kind: str
    status: str
    reason: str
    requestedBy: str
    createdAt: str
    updatedAt: str
    finishedAt: str | None
    configuration: str
    params: dict[str, Any]
    target: dict[str, Any]
    stages: list[dict[str, Any]]
    currentStage: str | None
    haltedReason: str | None
    cancelledBy: str | None
    summary: dict[str, int]
    clusters: list[ClusterDoc]


class DryRunPanelDoc(TypedDict):
    id: str
    name: str
    subscription: str
    resourceGroup: str
    stage: str
    connectivity: str
    wouldChange: bool
    current: dict[str, Any] | None
    reason: str


class DryRunDoc(TypedDict):
    """What a dry run answers: the plan, each panel with its current state; nothing is written."""

    dryRun: bool
    kind: str
    configuration: str
    total: int
    wouldChange: int
    stages: list[dict[str, Any]]
    clusters: list[DryRunPanelDoc]


# Summary keys, as `GET /api/operations/{id}` spells them. "in-progress" counts panels not yet
# settled (queued, applying, verifying), so the numbers always add up to "total".
SUMMARY_KEYS = ("succeeded", "unchanged", "pending-offline", "failed", "skipped", "in-progress")


def summarize(panels: Iterable[PanelRecord]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    total = 0
    for panel in panels:
        total += 1
        counts[panel.state.value if panel.state in SETTLED_STATES else "in-progress"] += 1
    summary = {"total": total}
    summary.update({key: counts.get(key, 0) for key in SUMMARY_KEYS})
    return summary


def final_status(summary: dict[str, int], *, halted: bool) -> OperationStatus:
    """The status of an operation whose panels are all settled.

    succeeded: every panel succeeded or was already as requested. failed: the operation was halted,
    or no panel changed, was already right, or is still on its way (pending-offline). Anything in
    between is partially-succeeded — the pipeline should look at the per-panel list.
    """
    total = summary["total"]
    done = summary["succeeded"] + summary["unchanged"]
    if halted:
        return OperationStatus.FAILED
    if done == total:
        return OperationStatus.SUCCEEDED
    if done == 0 and summary["pending-offline"] == 0:
        return OperationStatus.FAILED
    return OperationStatus.PARTIALLY_SUCCEEDED


def stage_share_done(panels: Sequence[PanelRecord]) -> float:
    """Share of a stage's panels that succeeded or were unchanged (1.0 for an empty stage)."""
    if not panels:
        return 1.0
    return sum(1 for p in panels if p.state in DONE_STATES) / len(panels)


def operation_document(operation: OperationRecord, panels: Sequence[PanelRecord]) -> OperationDoc:
    """`GET /api/operations/{id}`: the operation and one entry per panel (summary from the rows)."""
    summary = summarize(panels)
    stage_docs = []
    for index, (name, threshold) in enumerate(
        zip(operation.stage_names, operation.stage_thresholds, strict=True)
    ):
        stage_panels = [p for p in panels if p.stage == index]
        stage_docs.append(
            {
                "name": name,
                "successThreshold": threshold,
                "total": len(stage_panels),
                "settled": sum(1 for p in stage_panels if p.settled),
                "done": sum(1 for p in stage_panels if p.state in DONE_STATES),
            }
        )
    return {
        "id": operation.id,
        "kind": operation.kind,
        "status": operation.status,
        "reason": operation.reason,
        "requestedBy": operation.requested_by,
        "createdAt": format_time(operation.created_at),
        "updatedAt": format_time(
            max((p.updated_at for p in panels if p.updated_at), default=operation.updated_at)
        ),
        "finishedAt": format_optional(operation.finished_at),
        "configuration": operation.configuration,
        "params": dict(operation.params),
        "target": dict(operation.selection),
        "stages": stage_docs,
        "currentStage": operation.stage_names[operation.current_stage] if operation.stage_names else None,
        "haltedReason": operation.halted_reason,
        "cancelledBy": operation.cancelled_by,
        "summary": summary,
        "clusters": [
            {
                "id": p.panel_id,
                "name": p.name,
                "subscription": p.subscription,
                "resourceGroup": p.resource_group,
                "stage": operation.stage_names[p.stage] if p.stage < len(operation.stage_names) else None,
                "state": p.state.value,
                "detail": p.detail,
                "attempts": p.attempts,
                "acceptedAt": format_optional(p.accepted_at),
                "updatedAt": format_optional(p.updated_at),
            }
            for p in sorted(panels, key=lambda p: (p.stage, p.name, p.key))
        ],
    }


def operation_listing(operation: OperationRecord) -> dict[str, Any]:
    """One line of `GET /api/operations`: no per-panel list (the summary is the last one recorded)."""
    return {
        "id": operation.id,
        "kind": operation.kind,
        "status": operation.status,
        "reason": operation.reason,
        "requestedBy": operation.requested_by,
        "createdAt": format_optional(operation.created_at),
        "updatedAt": format_optional(operation.updated_at),
        "finishedAt": format_optional(operation.finished_at),
        "total": operation.total,
        "summary": dict(operation.summary),
        "haltedReason": operation.halted_reason,
    }


def flux_state_document(state: FluxState) -> dict[str, Any]:
    """The parts of a FluxState a person or pipeline reads (no secrets exist in it)."""
    git = state.git_repository
    return {
        "suspended": state.suspended,
        "complianceState": state.compliance_state,
        "sourceSyncedCommitId": state.source_synced_commit_id,
        "statusUpdatedAt": format_optional(state.status_updated_at),
        "provisioningState": state.provisioning_state,
        "source": None
        if git is None
        else {"ready": git.ready, "reason": git.reason, "message": safe_text(git.message or "")},
    }
