"""The runner check (issue 15): each problem code over in-memory fakes of its ports.

The seeded runner of the lab is the shape of the healthy case: tagged `fluxfleet-role: image-automation`,
Connected, microsoft.flux 1.23.3 with both image controllers enabled, the automation credential proven on
the current Key Vault version, and the repository's objects at `image.toolkit.fluxcd.io/v1`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import MissingSetting, NotFound
from shared.image_policy.manifests import ImageObjects, parse_image_objects
from shared.models import ClusterId, Panel, SubscriptionId
from shared.models.credentials import PanelCredential, PanelCredentialState, SecretVersionId
from shared.models.runner import RunnerSelector
from shared.ports import PanelDirectory
from shared.services.images.runner import RunnerCheck, RunnerReport, upgrade_path
from tests.unit.images.fakes import seed_files

T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
SECRET = "flux-gitops-automation-pat"
CURRENT = SecretVersionId("v2")
SUB = SubscriptionId("00000000-0000-0000-0000-000000000001")
ENABLED = {"image-automation-controller.enabled": "true", "image-reflector-controller.enabled": "true"}


def cluster(name: str, *, runner: bool = False, connectivity: str = "Connected", **extra: Any) -> Panel:
    tags = {"fluxfleet-role": "image-automation"} if runner else {"ring": "canary"}
    return Panel(
        id=ClusterId(
            f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/{name}"
        ),
        name=name,
        subscription=SUB,
        resource_group="rg",
        tags=tags,
        connectivity=connectivity,
        **extra,
    )


def extension(version: str = "1.23.3", settings: Mapping[str, str] = ENABLED) -> dict[str, Any]:
    """ARM's extension resource as `as_dict()` gives it (properties in the REST shape)."""
    return {
        "name": "flux",
        "properties": {
            "extensionType": "microsoft.flux",
            "version": version,
            "currentVersion": version,
            "provisioningState": "Succeeded",
            "configurationSettings": dict(settings),
        },
    }


def proven(
    panel: Panel, version: str = CURRENT, state: PanelCredentialState = PanelCredentialState.PROVEN
) -> PanelCredential:
    return PanelCredential(
        panel_id=panel.id,
        panel_name=panel.name,
        version=SecretVersionId(version),
        state=state,
        updated_at=T0,
        detail="authentication required: HTTP Basic: Access denied"
        if state is PanelCredentialState.FAILED
        else "",
    )


@dataclass
class World:
    panels: list[Panel] = field(
        default_factory=lambda: [cluster("ipc-factory-a"), cluster("hub", runner=True)]
    )
    extensions: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    records: dict[str, PanelCredential] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=seed_files)
    current: str | None = CURRENT
    repo_error: Exception | None = None

    def __post_init__(self) -> None:
        for panel in self.panels:
            if panel.tag("fluxfleet-role") == "image-automation":
                self.extensions.setdefault(panel.key, extension())
                self.records.setdefault(panel.key, proven(panel))

    # ports
    def panels_now(self) -> list[Panel]:
        return list(self.panels)

    def get_extension(self, *, panel: Panel, name: str) -> dict[str, Any] | None:
        assert name == "flux"
        return self.extensions.get(panel.key)

    def panel_credential(self, secret: str, panel_key: str) -> PanelCredential | None:
        assert secret == SECRET
        return self.records.get(panel_key)

    def objects(self) -> ImageObjects:
        if self.repo_error is not None:
            raise self.repo_error
        return parse_image_objects(self.files)

    def check(self) -> RunnerReport:
        world = self

        class Directory:
            def panels(self) -> list[Panel]:
                return world.panels_now()

        return RunnerCheck(
            directory=Directory(),
            extensions=self,
            image_objects=self.objects,
            proofs=lambda: self,
            current_version=lambda: self.current,
            selector=RunnerSelector(),
            secret_name=SECRET,
            clock=lambda: T0,
        ).check()

    @property
    def hub(self) -> Panel:
        return next(p for p in self.panels if p.name == "hub")


def test_the_seeded_runner_is_ok_with_its_facts() -> None:
    report = World().check()
    assert report.ok, report.problems
    document = report.to_document()
    runner = document["runner"]
    assert (runner["name"], runner["connectivity"]) == ("hub", "Connected")
    assert runner["extension"]["version"] == "1.23.3"
    assert runner["extension"]["imageControllers"] == {
        "image-automation-controller": True,
        "image-reflector-controller": True,
    }
    assert runner["credential"] == {**runner["credential"], "version": CURRENT, "state": "proven"}
    assert document["problems"] == []
    assert document["unchecked"] == []


def test_no_tagged_cluster_is_runner_not_configured() -> None:
    report = World(panels=[cluster("ipc-factory-a"), cluster("ipc-factory-b")]).check()
    assert report.codes == ["runner-not-configured"]
    assert report.runner is None
    assert "fluxfleet-role: image-automation" in report.problems[0].message


def test_two_tagged_clusters_are_several_runners_naming_both() -> None:
    world = World(panels=[cluster("hub", runner=True), cluster("hub-2", runner=True)])
    report = world.check()
    assert report.codes == ["several-runners"]
    assert [r["name"] for r in report.runners] == ["hub", "hub-2"]
    assert "hub, hub-2" in report.problems[0].message


def test_a_runner_arc_no_longer_hears_from_is_offline_with_its_last_contact() -> None:
    last = T0 - timedelta(minutes=40)
    world = World(panels=[cluster("hub", runner=True, connectivity="Offline", last_connectivity_time=last)])
    report = world.check()
    assert report.codes == ["runner-offline"]
    problem = report.to_document()["problems"][0]
    assert problem["connectivity"] == "Offline"
    assert problem["lastConnectivityTime"] == "2026-09-01T11:20:00.000Z"
    assert "last contact 2026-09-01T11:20:00.000Z" in problem["message"]


@pytest.mark.parametrize(
    "settings",
    [
        {},  # Arc's default: both off
        {"image-automation-controller.enabled": "true"},
        {**ENABLED, "image-reflector-controller.enabled": "false"},
    ],
)
def test_image_controllers_not_enabled_are_reported_by_setting(settings: dict[str, str]) -> None:
    world = World()
    world.extensions[world.hub.key] = extension(settings=settings)
    report = world.check()
    assert report.codes == ["image-controllers-disabled"]
    missing = [key for key in ENABLED if settings.get(key) != "true"]
    assert report.problems[0].detail["missing"] == missing
    assert all(key in report.problems[0].message for key in missing)


def test_a_runner_without_the_flux_extension_has_no_image_controllers() -> None:
    world = World()
    world.extensions[world.hub.key] = None
    report = world.check()
    assert report.codes == ["image-controllers-disabled"]
    assert report.runner is not None
    assert report.runner["extension"] is None


def test_an_extension_older_than_1_23_cannot_serve_image_v1_objects() -> None:
    world = World()
    world.extensions[world.hub.key] = extension(version="1.19.5")
    report = world.check()
    assert report.codes == ["image-api-unsupported-on-runner"]
    problem = report.to_document()["problems"][0]
    assert problem["extensionVersion"] == "1.19.5"
    assert problem["apiVersions"] == ["image.toolkit.fluxcd.io/v1"]
    assert problem["firstServingRelease"] == "1.23.0"
    # The release notes: 1.21.0 or later before 1.23.0 — the newest such release, then 1.23.0.
    assert problem["upgradePath"] == ["1.22.2", "1.23.0"]
    kinds = {(o["kind"], o["apiVersion"], o["firstServedIn"]) for o in problem["objects"]}
    assert kinds == {
        ("ImagePolicy", "image.toolkit.fluxcd.io/v1", "1.23.0"),
        ("ImageRepository", "image.toolkit.fluxcd.io/v1", "1.23.0"),
        ("ImageUpdateAutomation", "image.toolkit.fluxcd.io/v1", "1.23.0"),
    }
    assert problem["count"] == len(parse_image_objects(seed_files()).policies) * 2 + 1
    assert "ImagePolicy/flux-system/" in problem["message"]
    assert "1.22.2 → 1.23.0" in problem["message"]


def test_from_1_21_the_upgrade_to_1_23_is_one_step() -> None:
    world = World()
    world.extensions[world.hub.key] = extension(version="1.21.1")
    problem = world.check().to_document()["problems"][0]
    assert problem["upgradePath"] == ["1.23.0"]
    assert upgrade_path("1.16.3", "1.23.0") == ["1.22.2", "1.23.0"]


def test_v1beta2_objects_are_served_by_an_older_runner() -> None:
    world = World()
    world.files = {
        path: text.replace("image.toolkit.fluxcd.io/v1\n", "image.toolkit.fluxcd.io/v1beta2\n")
        for path, text in world.files.items()
    }
    world.extensions[world.hub.key] = extension(version="1.19.5")
    assert world.check().ok


@pytest.mark.parametrize(
    ("record", "current", "words"),
    [
        (None, CURRENT, "no record"),
        ("applying", CURRENT, "applying"),
        ("failed", CURRENT, "Access denied"),
        ("older", CURRENT, "not on the current version v2"),
    ],
)
def test_an_automation_credential_not_proven_on_the_runner_is_reported(
    record: str | None, current: str, words: str
) -> None:
    world = World()
    hub = world.hub
    if record is None:
        del world.records[hub.key]
    elif record == "older":
        world.records[hub.key] = proven(hub, version="v1")
    else:
        world.records[hub.key] = proven(hub, state=PanelCredentialState(record))
    report = world.check()
    assert report.codes == ["automation-credential-not-proven"]
    assert words in report.problems[0].message
    assert SECRET in report.problems[0].message


def test_problems_accumulate_on_one_runner() -> None:
    hub = cluster("hub", runner=True, connectivity="Offline", last_connectivity_time=T0)
    world = World(panels=[hub])
    world.extensions[hub.key] = extension(version="1.18.5", settings={})
    world.records[hub.key] = replace(proven(hub), state=PanelCredentialState.APPLYING)
    assert world.check().codes == [
        "runner-offline",
        "image-controllers-disabled",
        "image-api-unsupported-on-runner",
        "automation-credential-not-proven",
    ]


def test_an_unreadable_repository_is_unchecked_not_ok_and_the_rest_still_answers() -> None:
    world = World(repo_error=MissingSetting("FLUXFLEET_DEVOPS_ORG_URL"))
    report = world.check()
    assert not report.ok
    assert report.problems == ()
    assert [u["check"] for u in report.unchecked] == ["image-api"]
    assert "FLUXFLEET_DEVOPS_ORG_URL" in report.unchecked[0]["reason"]
    assert report.runner is not None
    assert report.runner["credential"]["state"] == "proven"


def test_a_vault_that_cannot_say_the_current_version_is_unchecked() -> None:
    world = World()

    def broken() -> str | None:
        raise NotFound("secret flux-gitops-automation-pat not found")

    report = RunnerCheck(
        directory=type("D", (), {"panels": lambda self: world.panels_now()})(),
        extensions=world,
        image_objects=world.objects,
        proofs=lambda: world,
        current_version=broken,
        selector=RunnerSelector(),
        secret_name=SECRET,
        clock=lambda: T0,
    ).check()
    assert not report.ok
    assert [u["check"] for u in report.unchecked] == ["automation-credential-current"]
    assert report.problems == ()


def runner_check_over_fakes(directory: PanelDirectory) -> RunnerCheck:
    """A runner check over `directory` and this file's fakes (the handler fuzz's container)."""
    world = World(panels=[])
    return RunnerCheck(
        directory=directory,
        extensions=world,
        image_objects=world.objects,
        proofs=lambda: world,
        current_version=lambda: world.current,
        selector=RunnerSelector(),
        secret_name=SECRET,
        clock=lambda: T0,
    )
