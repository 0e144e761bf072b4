"""The conform and reset steps over a fake ARM: which write comes next, and when a panel counts as done."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.errors import PermanentError
from shared.models import AppliedChange, ClusterId, Panel, SubscriptionId
from shared.ports import AcceptedWrite
from shared.services.conformance.declaration import Declaration, parse_declaration
from shared.services.conformance.strategy import ConformStrategy, ResetStrategy
from tests.unit.conformance.arm_shapes import GIT_URL, extension, flux_configuration
from tests.unit.conformance.fakes import REPO_FILE

REVISION = "2c0bc96346cc39627f6fd0da4f8288bce556c039"
PARAMS = {"revision": REVISION, "gitUrl": GIT_URL}
PAT_B64 = "cGF0LXZhbHVl"
PANEL = Panel(
    id=ClusterId("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/p"),
    name="p",
    subscription=SubscriptionId("s"),
    resource_group="rg",
    tags={"ring": "canary"},
)
ACCEPTED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


class FakeArm:
    def __init__(self, *, ext: dict[str, Any] | None = None, conf: dict[str, Any] | None = None) -> None:
        self.ext = ext
        self.conf = conf
        self.writes: list[tuple[str, Any]] = []

    def list_panels(self, *, subscriptions: Any) -> list[Panel]:
        return [PANEL]

    def get_extension(self, *, panel: Panel, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.ext)

    def get_flux_resource(self, *, panel: Panel, configuration: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.conf)

    def _accepted(self, kind: str, body: Any) -> AcceptedWrite:
        self.writes.append((kind, copy.deepcopy(body)))
        return AcceptedWrite(accepted_at=ACCEPTED)

    def put_extension(self, *, panel: Panel, name: str, body: Mapping[str, Any]) -> AcceptedWrite:
        self.ext = extension(provisioningState="Creating")
        return self._accepted("PUT extension", body)

    def patch_extension(self, *, panel: Panel, name: str, properties: Mapping[str, Any]) -> AcceptedWrite:
        return self._accepted("PATCH extension", properties)

    def put_flux_configuration(
        self, *, panel: Panel, configuration: str, body: Mapping[str, Any]
    ) -> AcceptedWrite:
        self.conf = flux_configuration(provisioningState="Creating")
        return self._accepted("PUT configuration", body)

    def begin_patch(self, *, panel: Panel, configuration: str, patch: Mapping[str, Any]) -> AcceptedWrite:
        return self._accepted("PATCH configuration", patch)

    def delete_flux_configuration(self, *, panel: Panel, configuration: str) -> AcceptedWrite:
        return self._accepted("DELETE configuration", None)


class Declarations:
    def __init__(self) -> None:
        self.declaration = parse_declaration(REPO_FILE.read_text(), revision=REVISION)

    def at(self, revision: str) -> Declaration:
        assert revision == REVISION
        return self.declaration


class Keys:
    def __init__(self) -> None:
        self.reads = 0

    def https_key(self, *, secret: str | None) -> str:
        self.reads += 1
        return PAT_B64


def strategies(arm: FakeArm) -> tuple[ConformStrategy, ResetStrategy, Keys]:
    keys = Keys()
    common: dict[str, Any] = {
        "arm": arm,
        "declarations": Declarations(),
        "keys": keys,
        "rings": ("canary", "broad"),
    }
    return ConformStrategy(**common), ResetStrategy(**common), keys


def applied() -> AppliedChange:
    return AppliedChange(accepted_at=ACCEPTED, attempt=1)


def step(strategy: ConformStrategy | ResetStrategy, *, reapply: bool = False) -> AcceptedWrite | None:
    return strategy.write_step(PANEL, PARAMS, configuration="ipc-platform-config", reapply=reapply)


def check(strategy: ConformStrategy | ResetStrategy) -> str:
    verdict = strategy.check_step(PANEL, applied(), PARAMS, configuration="ipc-platform-config")
    return verdict.outcome


def test_a_new_panel_gets_the_extension_then_the_configuration_then_is_proven_by_its_agent() -> None:
    arm = FakeArm()
    conform, _, keys = strategies(arm)
    step(conform)
    assert arm.writes[0][0] == "PUT extension"
    assert arm.writes[0][1]["properties"]["version"] == "1.16.3"
    assert check(conform) == "waiting"  # the extension's LRO runs
    waiting = step(conform)  # nothing to write while it runs, but the panel is tracked, not unchanged
    assert waiting is not None
    assert waiting.changed is False
    assert len(arm.writes) == 1
    arm.ext = extension()  # Succeeded
    assert check(conform) == "again"
    step(conform, reapply=True)
    kind, body = arm.writes[-1]
    assert kind == "PUT configuration"
    assert body["properties"]["configurationProtectedSettings"] == {"httpsKey": PAT_B64}
    assert keys.reads == 1
    assert check(conform) == "waiting"  # Creating
    arm.conf = flux_configuration(statusUpdatedAt="2026-11-02T07:59:00Z")  # a report from before the write
    assert check(conform) == "waiting"
    arm.conf = flux_configuration(
        statusUpdatedAt="2026-11-02T08:01:00Z", sourceSyncedCommitId=f"main/{REVISION}"
    )
    assert check(conform) == "converged"


def test_an_agent_on_another_revision_is_not_proof() -> None:
    arm = FakeArm(ext=extension(), conf=flux_configuration(statusUpdatedAt="2026-11-02T08:01:00Z"))
    conform, _, _ = strategies(arm)
    assert check(conform) == "waiting"


def test_drift_is_repaired_by_a_patch_of_only_that_field_and_no_pat_read() -> None:
    arm = FakeArm(ext=extension(), conf=flux_configuration(gitRepository__syncIntervalInSeconds=1800))
    conform, _, keys = strategies(arm)
    step(conform)
    assert arm.writes == [("PATCH configuration", {"gitRepository": {"syncIntervalInSeconds": 300}})]
    assert keys.reads == 0


def test_a_conformant_panel_is_not_written() -> None:
    arm = FakeArm(ext=extension(), conf=flux_configuration())
    conform, _, _ = strategies(arm)
    assert step(conform) is None
    assert arm.writes == []


def test_an_outdated_extension_is_upgraded_keeping_the_panels_own_settings() -> None:
    settings = {"multiTenancy.enforce": "false", "workloadIdentity.enable": "true"}
    arm = FakeArm(ext=extension(version="1.13.1", settings=settings), conf=flux_configuration())
    conform, _, _ = strategies(arm)
    step(conform)
    kind, body = arm.writes[0]
    assert kind == "PUT extension"
    assert body["properties"]["version"] == "1.16.3"
    assert body["properties"]["configurationSettings"]["workloadIdentity.enable"] == "true"


def test_a_failed_extension_fails_the_panel_in_arcs_words() -> None:
    error = {"code": "ExtensionOperationFailed", "message": "Helm install timed out"}
    arm = FakeArm(ext=extension(provisioningState="Failed", errorInfo=error))
    conform, _, _ = strategies(arm)
    verdict = conform.check_step(PANEL, applied(), PARAMS, configuration="ipc-platform-config")
    assert verdict.outcome == "failed"
    assert "Helm install timed out" in verdict.detail


def test_a_namespace_drift_is_refused_with_the_way_out() -> None:
    arm = FakeArm(ext=extension(), conf=flux_configuration(namespace="default"))
    conform, _, _ = strategies(arm)
    with pytest.raises(PermanentError, match="reset"):
        step(conform)


def test_reset_deletes_then_creates_and_waits_for_the_new_one() -> None:
    arm = FakeArm(ext=extension(), conf=flux_configuration())
    _, reset, keys = strategies(arm)
    step(reset)
    assert arm.writes[-1][0] == "DELETE configuration"
    assert check(reset) == "waiting"  # the old one (created before the delete) is still there
    arm.conf = None
    assert check(reset) == "again"
    step(reset, reapply=True)
    assert arm.writes[-1][0] == "PUT configuration"
    assert keys.reads == 1


def test_params_never_hold_the_pat() -> None:
    conform, _, _ = strategies(FakeArm())
    assert conform.validate_params(PARAMS) == PARAMS
    assert PAT_B64 not in str(conform.validate_params(PARAMS))
