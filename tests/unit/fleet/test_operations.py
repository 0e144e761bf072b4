"""What an operation's panel outcomes add up to, as a release pipeline reads it."""

from __future__ import annotations

import pytest

from shared.models import ClusterId, OperationId, OperationStatus, PanelState
from shared.ports import PanelRecord
from shared.services.fleet.documents import final_status, summarize


def rows(*states: PanelState) -> list[PanelRecord]:
    return [
        PanelRecord(
            operation_id=OperationId("op"),
            key=f"k{i}",
            panel_id=ClusterId(f"/p/{i}"),
            name=f"p{i}",
            subscription="s",
            resource_group="g",
            stage=0,
            state=state,
        )
        for i, state in enumerate(states)
    ]


S, U, P, F, K, Q = (
    PanelState.SUCCEEDED,
    PanelState.UNCHANGED,
    PanelState.PENDING_OFFLINE,
    PanelState.FAILED,
    PanelState.SKIPPED,
    PanelState.VERIFYING,
)


def test_summary_counts_every_panel_once_and_adds_up() -> None:
    summary = summarize(rows(S, S, U, P, F, K, Q))
    assert summary == {
        "total": 7,
        "succeeded": 2,
        "unchanged": 1,
        "pending-offline": 1,
        "failed": 1,
        "skipped": 1,
        "in-progress": 1,
    }


@pytest.mark.parametrize(
    ("states", "halted", "expected"),
    [
        ((S, U), False, OperationStatus.SUCCEEDED),
        ((S, P), False, OperationStatus.PARTIALLY_SUCCEEDED),
        ((S, F), False, OperationStatus.PARTIALLY_SUCCEEDED),
        ((S, K), False, OperationStatus.PARTIALLY_SUCCEEDED),
        ((P, P), False, OperationStatus.PARTIALLY_SUCCEEDED),
        ((F, K), False, OperationStatus.FAILED),
        ((S, S), True, OperationStatus.FAILED),
    ],
)
def test_final_status(states: tuple[PanelState, ...], halted: bool, expected: OperationStatus) -> None:
    assert final_status(summarize(rows(*states)), halted=halted) is expected
