"""The follow-up's pure parts: reading panels' reports, placing their commits, matching markers."""

from __future__ import annotations

import pytest

from shared.errors import MissingSetting
from shared.models import ClusterId, FluxState, ObjectStatus, Panel, SubscriptionId
from shared.models.images import MarkerChange, PanelOutcome, PanelReport
from shared.services.fleet.inventory import FleetInventory
from shared.services.images.followup import (
    classify_panel,
    commit_sha,
    commits_since,
    holds_changes,
    not_applied_reason,
)
from shared.services.images.panels import FleetPanelReports, panel_report

SHA = "0ba6f0d3" + "0" * 32


@pytest.mark.parametrize(
    ("reported", "sha"),
    [(f"main/{SHA}", SHA), (f"main@sha1:{SHA}", SHA), (SHA.upper(), SHA), (None, None), ("", None)],
)
def test_source_synced_commit_id_gives_the_sha_in_either_spelling(
    reported: str | None, sha: str | None
) -> None:
    assert commit_sha(reported) == sha


def test_commits_since_the_landing_commit_include_it_and_everything_newer() -> None:
    history = ["c5", "c4", "c3", "c2", "c1"]
    assert commits_since(history, "c3") == {"c5", "c4", "c3"}
    assert commits_since(history, "older-than-the-window") == set(history)


def report(**overrides: object) -> PanelReport:
    fields: dict[str, object] = {"name": "p1", "id": "/x/p1", "connectivity": "Connected", "configured": True}
    fields.update(overrides)
    return PanelReport(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "state"),
    [
        ({"synced_commit": "new", "suspended": True}, "applied"),  # applied before it was suspended
        ({"configured": False}, "not-configured"),
        ({"connectivity": "Offline", "suspended": True}, "offline"),
        ({"suspended": True}, "suspended"),
        ({"compliance_state": "Non-Compliant"}, "failing"),
        ({"error": "authentication required"}, "failing"),
        ({"synced_commit": "old"}, "behind"),
    ],
)
def test_a_panel_is_classified_by_the_first_cause_that_applies(
    overrides: dict[str, object], state: str
) -> None:
    assert classify_panel(report(**overrides), {"new"}).state == state


def test_the_not_applied_reason_counts_and_names_panels_by_cause() -> None:
    outcomes = [PanelOutcome(f"p{i}", "offline") for i in range(7)] + [PanelOutcome("q", "suspended")]
    assert not_applied_reason(outcomes) == "7 offline (p0, p1, p2, p3, p4 and 2 more); 1 suspended (q)"


def test_markers_are_matched_by_file_and_setter_even_when_lines_moved() -> None:
    change = MarkerChange("d.yaml", 3, "flux-system:app", "r/app:v1", "r/app:v2")
    moved = '# a new comment line\nkind: X\nspec:\n  image: r/app:v2 # {"$imagepolicy": "flux-system:app"}\n'
    assert holds_changes({"d.yaml": moved}, [change])
    assert not holds_changes({"d.yaml": moved.replace("v2", "v1")}, [change])
    assert not holds_changes({"d.yaml": moved}, [])


PANEL = Panel(
    ClusterId("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/p1"),
    "p1",
    SubscriptionId("s"),
    "rg",
    connectivity="Connected",
)


def test_a_failing_git_source_is_reported_with_its_message_and_no_secret() -> None:
    source = ObjectStatus(
        "GitRepository",
        "ipc-platform-config",
        "flux-system",
        "Non-Compliant",
        False,
        "GitOperationFailed",
        "unable to clone: authentication required, pat=abcdef123",
        None,
    )
    state = FluxState(
        "ipc-platform-config", False, "Non-Compliant", (source,), source_synced_commit_id=f"main/{SHA}"
    )
    converted = panel_report(PANEL, state)
    assert converted.synced_commit == SHA
    assert converted.error is not None
    assert "authentication required" in converted.error
    assert "abcdef123" not in converted.error


def test_a_panel_without_the_configuration_is_not_configured() -> None:
    assert panel_report(PANEL, None).configured is False


def test_panel_reports_without_subscriptions_refuse_rather_than_report_nothing() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as executor:
        directory = FleetInventory(reader=None, subscriptions=(), configuration="c")  # type: ignore[arg-type]
        reports = FleetPanelReports(directory=directory, reader=None, configuration="c", executor=executor)  # type: ignore[arg-type]
        with pytest.raises(MissingSetting):
            reports.panel_reports()
