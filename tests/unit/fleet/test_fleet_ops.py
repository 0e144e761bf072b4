"""Suspend/resume requests as pipelines send them, and what counts as a panel having converged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.errors import InvalidInput
from shared.models import AppliedChange, FluxState
from shared.services.fleet.requests import parse_change_request, parse_inventory_query
from shared.services.fleet.suspend import SuspendStrategy
from tests.unit.fleet.fakes import START, make_panel

GOOD = {"reason": "freeze for release 42", "target": {"tags": {"ring": "canary"}}}


def test_a_full_request_parses_into_its_parts() -> None:
    request = parse_change_request(
        {**GOOD, "configuration": "other-config", "dryRun": True, "waitSeconds": 30}
    )
    assert request.reason == "freeze for release 42"
    assert dict(request.target.tags) == {"ring": "canary"}
    assert (request.configuration, request.dry_run, request.wait_seconds) == ("other-config", True, 30.0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "reason": ""}, "reason"),
        ({**GOOD, "reason": "x" * 501}, "reason"),
        ({**GOOD, "reason": 5}, "reason"),
        ({"target": {"all": True}}, "reason"),
        ({"reason": "why"}, "target"),
        ({**GOOD, "dryrun": True}, "dryrun"),
        ({**GOOD, "dryRun": "false"}, "dryRun"),
        ({**GOOD, "waitSeconds": 121}, "waitSeconds"),
        ({**GOOD, "waitSeconds": True}, "waitSeconds"),
        ({**GOOD, "configuration": ""}, "configuration"),
        ({**GOOD, "target": {"clusters": "ipc-panel-0001"}}, "target.clusters"),
    ],
)
def test_bad_bodies_are_400s_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_change_request(body)
    assert refused.value.field == field
    assert refused.value.status == 400


def test_inventory_filters_read_from_the_query_string() -> None:
    selector = parse_inventory_query({"tags": "ring:canary,site:lyon", "clusters": "a,b", "code": "key"})
    assert dict(selector.tags) == {"ring": "canary", "site": "lyon"}
    assert selector.clusters == ("a", "b")
    assert parse_inventory_query({}).all
    with pytest.raises(InvalidInput):
        parse_inventory_query({"tags": "ring"})
    with pytest.raises(InvalidInput):
        parse_inventory_query({"ring": "canary"})


def state(*, suspended: bool, compliance: str, reported_after_s: float | None) -> FluxState:
    return FluxState(
        configuration="ipc-platform-config",
        suspended=suspended,
        compliance_state=compliance,
        status_updated_at=None if reported_after_s is None else START + timedelta(seconds=reported_after_s),
    )


APPLIED = AppliedChange(accepted_at=START, attempt=1, baseline_status_updated_at=START - timedelta(minutes=3))
PANEL = make_panel(1)


def test_suspend_converges_only_when_the_agent_reports_suspended_after_the_change() -> None:
    suspend = SuspendStrategy(suspended=True)
    assert suspend.desired_patch(
        PANEL, state(suspended=False, compliance="Compliant", reported_after_s=0), {}
    ) == {"suspend": True}
    assert (
        suspend.desired_patch(PANEL, state(suspended=True, compliance="Compliant", reported_after_s=0), {})
        is None
    )
    # ARM shows suspend=true at once; the agent has not reported since.
    waiting = suspend.check(
        PANEL, state(suspended=True, compliance="Compliant", reported_after_s=-200), APPLIED, {}
    )
    assert waiting.outcome == "waiting"
    done = suspend.check(
        PANEL, state(suspended=True, compliance="Suspended", reported_after_s=30), APPLIED, {}
    )
    assert done.outcome == "converged"


def test_resume_converges_when_the_agent_reports_anything_but_suspended_after_the_change() -> None:
    resume = SuspendStrategy(suspended=False)
    still = resume.check(
        PANEL, state(suspended=False, compliance="Suspended", reported_after_s=30), APPLIED, {}
    )
    assert still.outcome == "waiting"
    done = resume.check(
        PANEL, state(suspended=False, compliance="Non-Compliant", reported_after_s=30), APPLIED, {}
    )
    assert done.outcome == "converged"


def test_a_change_reverted_by_someone_else_fails_the_panel() -> None:
    verdict = SuspendStrategy(suspended=True).check(
        PANEL, state(suspended=False, compliance="Compliant", reported_after_s=30), APPLIED, {}
    )
    assert verdict.outcome == "failed"
    assert "resumed by someone else" in verdict.detail
    assert not verdict.halt_operation
