"""What an operation's rows add up to: its summary, its final status, and the documents the API shows.

Pure functions over `OperationRecord`/`PanelRecord`, so the rules a release pipeline depends on (when
is an operation "succeeded"? what counts as done?) are stated once and unit-tested without storage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.models import DONE_STATES, SETTLED_STATES, OperationStatus
from shared.ports import OperationRecord, PanelRecord

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


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def operation_document(operation: OperationRecord, panels: Sequence[PanelRecord]) -> dict[str, Any]:
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
        "createdAt": iso(operation.created_at),
        "updatedAt": iso(max((p.updated_at for p in panels if p.updated_at), default=operation.updated_at)),
        "finishedAt": iso(operation.finished_at),
        "configuration": operation.configuration,
        "params": dict(operation.params),
        "target": dict(operation.selection),
        "stages": stage_docs,
        "currentStage": operation.stage_names[operation.current_stage] if operation.stage_names else None,
        "haltedReason": operation.halted_reason,
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
                "acceptedAt": iso(p.accepted_at),
                "updatedAt": iso(p.updated_at),
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
        "createdAt": iso(operation.created_at),
        "updatedAt": iso(operation.updated_at),
        "finishedAt": iso(operation.finished_at),
        "total": operation.total,
        "summary": dict(operation.summary),
        "haltedReason": operation.halted_reason,
    }
