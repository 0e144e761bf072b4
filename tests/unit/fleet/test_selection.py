"""Which panels a `target` selects, and which targets are refused (and how)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidInput, Unprocessable
from shared.models import Selector
from shared.services.fleet.selection import check_subscriptions, filter_panels, parse_selector, select
from tests.unit.fleet.fakes import SUB_A, SUB_B, make_panel

FLEET = [
    make_panel(1, ring="canary", site="munich"),
    make_panel(2, ring="canary", site="lyon", subscription=SUB_B, group="rg-ipc-site-lyon"),
    make_panel(3, ring="early", site="lyon", group="rg-ipc-site-lyon"),
    make_panel(4, ring="broad", site="munich", subscription=SUB_B),
]


def names(target: dict[str, Any]) -> list[str]:
    return [p.name for p in select(FLEET, parse_selector(target))]


def test_a_panel_is_selected_only_when_it_matches_every_criterion() -> None:
    assert names({"tags": {"ring": "canary"}}) == ["ipc-panel-0001", "ipc-panel-0002"]
    assert names({"tags": {"ring": "canary", "site": "lyon"}}) == ["ipc-panel-0002"]
    assert names({"tags": {"site": "lyon"}, "subscriptions": [SUB_A]}) == ["ipc-panel-0003"]
    assert names(
        {"resourceGroups": ["RG-IPC-SITE-LYON"], "clusters": ["ipc-panel-0003", "ipc-panel-0002"]}
    ) == [
        "ipc-panel-0002",
        "ipc-panel-0003",
    ]


def test_all_selects_the_whole_fleet_but_only_alone() -> None:
    assert len(names({"all": True})) == 4
    with pytest.raises(InvalidInput) as refused:
        parse_selector({"all": True, "tags": {"ring": "canary"}})
    assert refused.value.field == "target.all"


def test_an_empty_target_never_means_everything() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_selector({})
    assert refused.value.field == "target"
    with pytest.raises(InvalidInput):
        parse_selector({"all": False, "clusters": []})


def test_names_and_arm_ids_are_case_insensitive_tag_values_are_not() -> None:
    panel = FLEET[0]
    assert names({"clusters": [panel.id.upper()]}) == [panel.name]
    assert names({"clusters": ["IPC-PANEL-0001"]}) == [panel.name]
    assert names({"tags": {"RING": "canary"}}) == ["ipc-panel-0001", "ipc-panel-0002"]
    with pytest.raises(Unprocessable, match="matches no panel"):
        names({"tags": {"ring": "Canary"}})


def test_unknown_names_are_listed_in_the_422() -> None:
    with pytest.raises(Unprocessable) as refused:
        names({"clusters": ["ipc-panel-0001", "ipc-panel-0404", "nope"]})
    assert refused.value.field == "target.clusters"
    assert refused.value.context["unknown"] == ["ipc-panel-0404", "nope"]


def test_a_selection_matching_nothing_is_a_422() -> None:
    with pytest.raises(Unprocessable) as refused:
        names({"tags": {"ring": "canary"}, "resourceGroups": ["rg-elsewhere"]})
    assert refused.value.field == "target"


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"clusters": "ipc-panel-0001"}, "target.clusters"),
        ({"clusters": [""]}, "target.clusters"),
        ({"tags": {"ring": 1}}, "target.tags"),
        ({"tags": ["ring"]}, "target.tags"),
        ({"all": "yes"}, "target.all"),
        ({"resourceGroups": [3]}, "target.resourceGroups"),
        ({"cluster": ["x"]}, "target.cluster"),
        ({"clusters": ["/subscriptions/x/resourceGroups/y"]}, "target.clusters"),
        ([], "target"),
    ],
)
def test_malformed_targets_are_400s_naming_the_field(target: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_selector(target)
    assert refused.value.field == field
    assert refused.value.status == 400


def test_subscriptions_the_app_does_not_manage_are_refused() -> None:
    with pytest.raises(Unprocessable) as refused:
        check_subscriptions(Selector(subscriptions=("other",)), configured=(SUB_A, SUB_B))
    assert refused.value.field == "target.subscriptions"
    check_subscriptions(Selector(subscriptions=(SUB_A.upper(),)), configured=(SUB_A, SUB_B))


def test_listing_filters_without_errors() -> None:
    assert filter_panels(FLEET, Selector(tags={"ring": "none"})) == []
    assert len(filter_panels(FLEET, Selector())) == 4
