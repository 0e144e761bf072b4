"""Fleet health's classifier and report over realistic `statuses[]` (Flux's and Arc's exact texts).

The reasons and messages below are what source-controller, kustomize-controller and kustomize write
(lab/docs/agents.md lists the lines they come from); the lab tests (tests/lab/test_fleet_health.py)
prove the same causes through the real SDK against panels broken in the lab.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import InvalidInput, NotFound
from shared.models import ClusterId, FluxState, ObjectStatus, Panel, SubscriptionId
from shared.models.health import CAUSE_PRIORITY, Cause, PanelView
from shared.services.fleet.health import HINTS, applied_revision, classify
from shared.services.fleet.health_report import FleetHealth, parse_health_query

SUB = "00000000-0000-4000-8000-00000000000a"
SHA = "3f9c2a1b7d4e5f60718293a4b5c6d7e8f9012345"
T0 = datetime(2026, 8, 20, 9, 0, tzinfo=UTC)
URL = "https://dev.azure.com/contoso/ipc/_git/gitops"
WORK = "/tmp/kustomization-2837461"  # noqa: S108 - a path inside a message, as Flux writes it


def panel(name: str = "ipc-panel-0001", *, connectivity: str = "Connected", ring: str = "canary") -> Panel:
    return Panel(
        id=ClusterId(
            f"/subscriptions/{SUB}/resourceGroups/rg-ipc/providers/Microsoft.Kubernetes/connectedClusters/{name}"
        ),
        name=name,
        subscription=SubscriptionId(SUB),
        resource_group="rg-ipc",
        tags={"ring": ring},
        connectivity=connectivity,
        last_connectivity_time=T0 - timedelta(hours=2),
    )


def source(ready: bool, reason: str, message: str) -> ObjectStatus:
    return ObjectStatus("GitRepository", "ipc-platform-config", "flux-system",
                        "Compliant" if ready else "Non-Compliant", ready, reason, message, T0)  # fmt: skip


def kustomization(ready: bool | None, reason: str, message: str) -> ObjectStatus:
    return ObjectStatus("Kustomization", "ipc-platform-config-workloads", "flux-system",
                        "Compliant" if ready else "Non-Compliant", ready, reason, message,
                        T0 + timedelta(minutes=1))  # fmt: skip


GOOD_SOURCE = source(True, "Succeeded", f"stored artifact for revision 'main@sha1:{SHA}'")
GOOD_KUSTOMIZATION = kustomization(True, "ReconciliationSucceeded", f"Applied revision: main@sha1:{SHA}")


def view(
    *statuses: ObjectStatus,
    compliance: str = "Compliant",
    suspended: bool = False,
    connectivity: str = "Connected",
    extension_state: str = "Succeeded",
    configured: bool = True,
    name: str = "ipc-panel-0001",
    ring: str = "canary",
) -> PanelView:
    flux = FluxState(
        configuration="ipc-platform-config",
        suspended=suspended,
        compliance_state=compliance,
        statuses=statuses or (GOOD_SOURCE, GOOD_KUSTOMIZATION),
        source_synced_commit_id=f"main/{SHA}",
        status_updated_at=T0,
        provisioning_state="Succeeded",
        error_message=None,
    )
    return PanelView(
        panel=panel(name, connectivity=connectivity, ring=ring),
        flux=flux if configured else None,
        extension_version="1.16.2",
        extension_state=extension_state,
    )


def test_a_compliant_panel_is_ready_with_the_revision_it_applied() -> None:
    diagnosis = classify(view())

    assert diagnosis.cause is Cause.READY
    assert diagnosis.message == f"Applied revision: main@sha1:{SHA}"
    assert applied_revision(view().flux) == SHA


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (source(False, "GitOperationFailed", f"failed to checkout and determine revision: unable to clone "
                f"'{URL}': authentication required"), Cause.GIT_AUTH_FAILED),
        (source(False, "GitOperationFailed", f"failed to checkout and determine revision: unable to clone "
                f"'{URL}': authorization failed"), Cause.GIT_AUTH_FAILED),
        (source(False, "AuthenticationFailed", "failed to get secret 'flux-system/ipc-platform-config-auth': "
                'secrets "ipc-platform-config-auth" not found'), Cause.GIT_AUTH_FAILED),
        (source(False, "GitOperationFailed", f"failed to checkout and determine revision: unable to clone "
                f"'{URL}': repository not found"), Cause.GIT_SOURCE_NOT_FOUND),
        (source(False, "GitOperationFailed", f"failed to checkout and determine revision: unable to clone "
                f"'{URL}': couldn't find remote ref \"refs/heads/mian\""), Cause.GIT_SOURCE_NOT_FOUND),
        (source(False, "GitOperationFailed", f"failed to checkout and determine revision: unable to clone "
                f"'{URL}': dial tcp: lookup dev.azure.com: no such host"), Cause.GIT_FETCH_FAILED),
    ],
)  # fmt: skip
def test_a_failing_source_is_named_by_go_gits_words_before_what_is_built_from_it(
    status: ObjectStatus, cause: Cause
) -> None:
    stale = kustomization(False, "ArtifactFailed", "Source artifact not found, retrying in 30s")

    diagnosis = classify(view(status, stale, compliance="Non-Compliant"))

    assert diagnosis.cause is cause
    assert diagnosis.message == status.message
    assert diagnosis.object == "GitRepository/flux-system/ipc-platform-config"
    assert diagnosis.since == T0


@pytest.mark.parametrize(
    ("reason", "message", "cause"),
    [
        ("ArtifactFailed", f"kustomization path not found: stat {WORK}/kubernetes/workload: no such file or "
         "directory", Cause.KUSTOMIZATION_PATH_NOT_FOUND),
        ("BuildFailed", "error converting YAML to JSON: yaml: line 7: did not find expected '-' indicator",
         Cause.KUSTOMIZE_BUILD_FAILED),
        ("BuildFailed", "kustomize build failed: accumulating resources: accumulation err='accumulating "
         f"resources from 'conveyor.yaml': open {WORK}/kubernetes/workloads/conveyor.yaml: no such file or "
         "directory'", Cause.KUSTOMIZE_BUILD_FAILED),
        ("HealthCheckFailed", "health check failed after 10m0.004s: timeout waiting for: "
         "[Deployment/ipc-workloads/health-monitor status: 'InProgress']", Cause.HEALTH_CHECK_FAILED),
        ("HealthCheckFailed", "health check failed after 37ms: failed early due to stalled resources: "
         "[Deployment/ipc-workloads/opcua-gateway status: 'Failed']", Cause.HEALTH_CHECK_FAILED),
        ("Progressing", "Running health checks for revision 'main@sha1:" + SHA + "' with a timeout of 10m0s",
         Cause.RECONCILING),
    ],
)  # fmt: skip
def test_a_failing_kustomization_is_named_by_kustomize_controllers_reason(
    reason: str, message: str, cause: Cause
) -> None:
    failing = kustomization(False, reason, message)

    diagnosis = classify(view(GOOD_SOURCE, failing, compliance="Non-Compliant"))

    assert (diagnosis.cause, diagnosis.message) == (cause, message)
    assert diagnosis.since == failing.last_transition_time


def test_what_the_panel_cannot_do_at_all_comes_before_its_stale_flux_report() -> None:
    auth = source(False, "GitOperationFailed", f"unable to clone '{URL}': authentication required")

    assert classify(view(configured=False)).cause is Cause.NOT_ONBOARDED
    assert classify(view(auth, connectivity="Expired")).cause is Cause.AGENT_EXPIRED
    offline = classify(view(auth, connectivity="Offline"))
    assert offline.cause is Cause.OFFLINE
    assert offline.since == T0 - timedelta(hours=2), "since Arc last heard from it"
    assert classify(view(auth, extension_state="Failed")).cause is Cause.EXTENSION_FAILED
    assert classify(view(auth, suspended=True, compliance="Suspended")).cause is Cause.SUSPENDED
    assert classify(view(compliance="Pending")).cause is Cause.RECONCILING
    assert classify(view(compliance="Non-Compliant")).cause is Cause.UNKNOWN


def test_a_credential_in_a_message_never_reaches_the_answer() -> None:
    pat = "a" * 20 + "b2c3d4e5f6g7h2i3j4k5l6m7"  # 44 base32-ish characters, as a PAT looks
    leaked = source(
        False,
        "GitOperationFailed",
        f"unable to clone 'https://git:{pat}@dev.azure.com/x': authentication required",
    )

    diagnosis = classify(view(leaked, compliance="Non-Compliant"))

    assert diagnosis.cause is Cause.GIT_AUTH_FAILED
    assert pat not in diagnosis.message
    assert "[redacted]@dev.azure.com" in diagnosis.message


def test_every_cause_is_in_the_priority_and_has_a_hint() -> None:
    assert set(CAUSE_PRIORITY) == set(Cause)
    assert len(CAUSE_PRIORITY) == len(Cause)
    assert all(HINTS[cause].strip() for cause in Cause)


# --- the report ------------------------------------------------------------------------------------------
class FakeGraph:
    def __init__(self, views: list[PanelView]) -> None:
        self.views = views
        self.calls: list[list[str]] = []

    def panel_views(self, *, subscriptions: Any) -> list[PanelView]:
        self.calls.append(list(subscriptions))
        return list(self.views)


class NoArm:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the fleet-wide answer must not read ARM ({name})")


def health(views: list[PanelView]) -> tuple[FleetHealth, FakeGraph]:
    graph = FakeGraph(views)
    service = FleetHealth(
        graph=graph,
        arm=NoArm(),
        subscriptions=[SUB],
        configuration="ipc-platform-config",
        head=lambda: SHA,
        ledger=NoArm,
        secret_name="flux-gitops-pat",
        operations=NoArm,  # type: ignore[arg-type]
    )
    return service, graph


def fleet() -> list[PanelView]:
    auth = source(False, "GitOperationFailed", f"unable to clone '{URL}': authentication required")
    views = [view(name=f"ipc-panel-{i:04d}", ring="broad") for i in range(1, 8)]
    views.append(view(auth, name="ipc-panel-0008", compliance="Non-Compliant", ring="canary"))
    views.append(view(name="ipc-panel-0009", connectivity="Offline", ring="early"))
    return views


def test_the_report_counts_every_cause_and_pages_with_a_stable_cursor() -> None:
    service, graph = health(fleet())

    first = service.report(parse_health_query({"limit": "4"}))
    second = service.report(parse_health_query({"limit": "4", "cursor": first["nextCursor"]}))
    third = service.report(parse_health_query({"limit": "4", "cursor": second["nextCursor"]}))

    assert first["total"] == 9
    assert first["counts"]["ready"] == 7
    assert (first["counts"]["git-auth-failed"], first["counts"]["offline"]) == (1, 1)
    assert list(first["counts"]) == [c.value for c in CAUSE_PRIORITY]
    names = [p["name"] for page in (first, second, third) for p in page["panels"]]
    assert names == [f"ipc-panel-{i:04d}" for i in range(1, 10)]
    assert third["nextCursor"] is None
    row = next(p for p in second["panels"] if p["name"] == "ipc-panel-0008")
    assert (row["cause"], row["ring"], row["revision"], row["head"], row["atHead"]) == (
        "git-auth-failed", "canary", SHA, SHA, True,
    )  # fmt: skip
    assert graph.calls == [[SUB]] * 3


def test_the_report_takes_the_inventorys_selectors_and_a_cause_filter() -> None:
    service, _ = health(fleet())

    canary = service.report(parse_health_query({"tags": "ring:canary"}))
    failing = service.report(parse_health_query({"cause": "offline,git-auth-failed"}))

    assert [p["name"] for p in canary["panels"]] == ["ipc-panel-0008"]
    assert canary["total"] == 1
    assert [p["name"] for p in failing["panels"]] == ["ipc-panel-0008", "ipc-panel-0009"]
    assert failing["total"] == 9, "counts and total are the selection's; the cause filter only pages"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"cause": "broken"}, "cause"),
     ({"cursor": "not-a-cursor"}, "cursor"), ({"colour": "red"}, "colour")],
)  # fmt: skip
def test_bad_query_parameters_are_refused_naming_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_health_query(params)

    assert raised.value.field == field


def test_an_unknown_panel_is_not_found() -> None:
    service, _ = health(fleet())

    with pytest.raises(NotFound):
        service.panel("ipc-panel-9999")
    with pytest.raises(NotFound):
        service.panel(
            f"subscriptions/{SUB}/resourceGroups/rg-ipc/providers/Microsoft.Kubernetes/connectedClusters/x"
        )


def test_docs_health_md_lists_every_cause_in_priority_order_with_the_hint_served() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "health.md").read_text(encoding="utf-8")

    rows = [f"| {i} | `{cause.value}` | {HINTS[cause]} |" for i, cause in enumerate(CAUSE_PRIORITY, 1)]
    assert all(row in doc for row in rows)
