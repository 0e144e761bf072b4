"""fluxfleet checks its image-automation runner (issue 15): the one cluster whose Flux commits new tags.

Every factory panel is read-only; the runner alone runs the image controllers and pushes with the
automation credential. When it cannot, no image rolls out anywhere and nothing on the factory panels
says why — so this check answers, for `GET /api/images/runner`, the questions an on-call engineer would
otherwise ask one `az` call at a time:

- is there exactly one runner (the cluster tagged `FLUXFLEET_RUNNER_TAG`)? None: `runner-not-configured`;
  several would race to make the same commit: `several-runners`;
- is it online? Arc's `connectivityStatus` other than `Connected`, with its last contact: `runner-offline`
  (Arc stops its agents, so the controllers neither scan nor push);
- does its `microsoft.flux` extension enable the image controllers? They are off by default on Arc
  (`image-automation-controller.enabled` / `image-reflector-controller.enabled` configurationSettings,
  "true"): `image-controllers-disabled`;
- does the extension serve the repository's image API versions? `image.toolkit.fluxcd.io/v1` needs the
  Flux 2.7 image controllers that 1.23.0 ships (`shared.image_policy.extension_support`); otherwise
  kustomize-controller fails the runner's kustomization with the RESTMapper's "no matches for kind"
  error: `image-api-unsupported-on-runner`, naming the objects, the extension version, the first release
  that serves them and the upgrade path (the release notes require 1.21.0 or later before 1.23.0);
- is the automation credential proven on it — the current Key Vault version, fetched with by the runner's
  agent after it was applied (the credential ledger, as the rollout records it)? Else
  `automation-credential-not-proven`.

Pure logic over ports; the reads are one connectedClusters list (the directory), one extension GET, one
ledger row, one Key Vault version list and the repository snapshot at HEAD. A read that fails is listed
in `unchecked` (scrubbed, in the service's words) rather than failing the whole check: the runner being
offline is exactly when an engineer asks, and ARM may answer while Azure DevOps does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from shared.errors import FluxfleetError, safe_text
from shared.image_policy.extension_support import (
    FIRST_EXTENSION_WITH_IMAGE_V1,
    RELEASES,
    UnservedObject,
    serves,
    unserved_objects,
    version_tuple,
)
from shared.image_policy.manifests import ImageObjects
from shared.models import Panel
from shared.models.credentials import PanelCredential, PanelCredentialState
from shared.models.runner import RunnerSelector
from shared.ports import PanelDirectory
from shared.timestamps import format_optional, format_time

log = logging.getLogger("fluxfleet.images.runner")

# The name the fleet declaration gives the microsoft.flux extension (kubernetes/fleet/flux.yaml, seed 2.2).
FLUX_EXTENSION_NAME = "flux"
# The configurationSettings that switch Arc's image controllers on (off by default in microsoft.flux).
IMAGE_CONTROLLER_SETTINGS = ("image-automation-controller.enabled", "image-reflector-controller.enabled")
# Arc's one connectivity value in which the cluster's agents (and so its Flux) run and report.
CONNECTED = "Connected"
# The microsoft.flux release notes: "Clusters must be running version 1.21.0 or higher in order to
# subsequently upgrade to version 1.23.0" (flux-gitops-release-notes.md).
UPGRADE_FLOOR = "1.21.0"
UPGRADE_GATE = "1.23.0"
# Enough runner names and unserved objects to act on in one answer (the seed has 21 image objects).
MAX_LISTED = 50


class RunnerProblemCode(StrEnum):
    RUNNER_NOT_CONFIGURED = "runner-not-configured"
    SEVERAL_RUNNERS = "several-runners"
    RUNNER_OFFLINE = "runner-offline"
    IMAGE_CONTROLLERS_DISABLED = "image-controllers-disabled"
    IMAGE_API_UNSUPPORTED_ON_RUNNER = "image-api-unsupported-on-runner"
    AUTOMATION_CREDENTIAL_NOT_PROVEN = "automation-credential-not-proven"


class ExtensionReader(Protocol):
    """ARM's extension resource of a cluster (`ArmFleet.get_extension`), None when it has none so named."""

    def get_extension(self, *, panel: Panel, name: str) -> dict[str, Any] | None: ...


class CredentialProofs(Protocol):
    """The credential ledger's row of one cluster for one secret (`CredentialLedger.panel_credential`)."""

    def panel_credential(self, secret: str, panel_key: str) -> PanelCredential | None: ...


@dataclass(frozen=True)
class RunnerProblem:
    code: RunnerProblemCode
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, **self.detail}


@dataclass(frozen=True)
class RunnerReport:
    """The answer of `GET /api/images/runner`: ok only with no problem and nothing left unchecked."""

    selector: str
    checked_at: datetime
    problems: tuple[RunnerProblem, ...]
    runner: Mapping[str, Any] | None = None  # the facts of the one runner
    runners: tuple[Mapping[str, Any], ...] = ()  # every cluster carrying the tag
    unchecked: tuple[Mapping[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unchecked

    @property
    def codes(self) -> list[str]:
        return [problem.code.value for problem in self.problems]

    def to_document(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "selector": self.selector,
            "checkedAt": format_time(self.checked_at),
            "runner": dict(self.runner) if self.runner is not None else None,
            "runners": [dict(r) for r in self.runners],
            "problems": [problem.to_json() for problem in self.problems],
            "unchecked": [dict(item) for item in self.unchecked],
        }


def _identity(panel: Panel) -> dict[str, Any]:
    return {
        "name": panel.name,
        "id": panel.id,
        "connectivity": panel.connectivity,
        "lastConnectivityTime": format_optional(panel.last_connectivity_time),
    }


def _enabled(settings: Mapping[str, Any], key: str) -> bool:
    return str(settings.get(key, "")).strip().lower() == "true"


def first_release_serving(kind: str, api_version: str, *, after: str | None = None) -> str | None:
    """The oldest `microsoft.flux` release (newer than `after`, if given) serving `kind` at `api_version`."""
    floor = version_tuple(after) if after else ()
    for release in RELEASES:
        if version_tuple(release.version) > floor and serves(release.version, kind, api_version):
            return release.version
    return None


def upgrade_path(running: str, target: str) -> list[str]:
    """The versions to step through from `running` to `target`: the newest release in [1.21.0, 1.23.0)
    first when the gate is crossed from below 1.21.0 (the release notes' one rule), then `target`."""
    now, goal = version_tuple(running), version_tuple(target)
    if now < version_tuple(UPGRADE_FLOOR) and goal >= version_tuple(UPGRADE_GATE):
        steps = [
            r.version
            for r in RELEASES
            if version_tuple(UPGRADE_FLOOR) <= version_tuple(r.version) < version_tuple(UPGRADE_GATE)
        ]
        return [max(steps, key=version_tuple), target]
    return [target]


class RunnerCheck:
    """Checks the one image-automation runner over its ports (see the module docstring)."""

    def __init__(
        self,
        *,
        directory: PanelDirectory,
        extensions: ExtensionReader,
        image_objects: Callable[[], ImageObjects],
        proofs: Callable[[], CredentialProofs],
        current_version: Callable[[], str | None],
        selector: RunnerSelector,
        secret_name: str,
        clock: Callable[[], datetime],
        extension_name: str = FLUX_EXTENSION_NAME,
    ) -> None:
        """`image_objects`, `proofs` and `current_version` are called once per check, so a deployment
        without Azure DevOps or Key Vault settings still answers the rest (listed as unchecked)."""
        self._directory = directory
        self._extensions = extensions
        self._image_objects = image_objects
        self._proofs = proofs
        self._current_version = current_version
        self._selector = selector
        self._secret_name = secret_name
        self._clock = clock
        self._extension_name = extension_name

    def check(self) -> RunnerReport:
        runners = self._selector.runners(self._directory.panels())
        now = self._clock()
        selector = str(self._selector)
        if not runners:
            problem = RunnerProblem(
                RunnerProblemCode.RUNNER_NOT_CONFIGURED,
                f"no cluster is tagged {self._selector.name}: {self._selector.value}; tag the one cluster "
                "that runs the image controllers (a designated panel or a hub)",
            )
            return RunnerReport(selector=selector, checked_at=now, problems=(problem,))
        listed = tuple(_identity(p) for p in runners[:MAX_LISTED])
        if len(runners) > 1:
            names = ", ".join(p.name for p in runners[:MAX_LISTED])
            problem = RunnerProblem(
                RunnerProblemCode.SEVERAL_RUNNERS,
                f"{len(runners)} clusters are tagged {selector} ({names}): exactly one may run the image "
                "automation (several race to make the same commit, and each holds a write credential); "
                "remove the tag from all but one",
                {"count": len(runners)},
            )
            return RunnerReport(selector=selector, checked_at=now, problems=(problem,), runners=listed)
        return self._check_one(runners[0], now, listed)

    def _check_one(self, panel: Panel, now: datetime, listed: tuple[Mapping[str, Any], ...]) -> RunnerReport:
        problems: list[RunnerProblem] = []
        unchecked: list[dict[str, str]] = []
        facts: dict[str, Any] = _identity(panel)
        if panel.connectivity != CONNECTED:
            last = format_optional(panel.last_connectivity_time)
            problems.append(
                RunnerProblem(
                    RunnerProblemCode.RUNNER_OFFLINE,
                    f"{panel.name} is {panel.connectivity} in Arc (last contact {last or 'never'}): its "
                    "agents do not run, so its image controllers neither scan the registry nor push",
                    {"connectivity": panel.connectivity, "lastConnectivityTime": last},
                )
            )
        version = self._extension_facts(panel, facts, problems, unchecked)
        if version:
            self._image_api(panel, version, problems, unchecked)
        self._credential(panel, facts, problems, unchecked)
        return RunnerReport(
            selector=str(self._selector),
            checked_at=now,
            problems=tuple(problems),
            runner=facts,
            runners=listed,
            unchecked=tuple(unchecked),
        )

    def _extension_facts(
        self,
        panel: Panel,
        facts: dict[str, Any],
        problems: list[RunnerProblem],
        unchecked: list[dict[str, str]],
    ) -> str | None:
        """Records the extension's facts and whether it enables the controllers; its version, if known."""
        try:
            extension = self._extensions.get_extension(panel=panel, name=self._extension_name)
        except FluxfleetError as error:
            unchecked.append({"check": "extension", "reason": safe_text(error.message)})
            facts["extension"] = None
            return None
        if extension is None:
            facts["extension"] = None
            problems.append(
                RunnerProblem(
                    RunnerProblemCode.IMAGE_CONTROLLERS_DISABLED,
                    f"{panel.name} has no microsoft.flux extension named {self._extension_name}: no Flux, "
                    "so no image controllers",
                    {"missing": list(IMAGE_CONTROLLER_SETTINGS)},
                )
            )
            return None
        props: Mapping[str, Any] = extension.get("properties") or {}
        settings: Mapping[str, Any] = props.get("configurationSettings") or {}
        version = str(props.get("currentVersion") or props.get("version") or "") or None
        controllers = {
            key.removesuffix(".enabled"): _enabled(settings, key) for key in IMAGE_CONTROLLER_SETTINGS
        }
        facts["extension"] = {
            "name": extension.get("name") or self._extension_name,
            "type": props.get("extensionType"),
            "version": version,
            "provisioningState": props.get("provisioningState"),
            # Only non-protected settings: ARM never returns configurationProtectedSettings' values.
            "configurationSettings": {str(k): str(v) for k, v in settings.items()},
            "imageControllers": controllers,
        }
        disabled = [key for key in IMAGE_CONTROLLER_SETTINGS if not _enabled(settings, key)]
        if disabled:
            wanted = ", ".join(f'{key}="true"' for key in disabled)
            problems.append(
                RunnerProblem(
                    RunnerProblemCode.IMAGE_CONTROLLERS_DISABLED,
                    f"{panel.name}'s microsoft.flux does not enable {', '.join(disabled)} (off by default on "
                    f"Arc): set the configurationSettings {wanted}, e.g. with the fleet declaration's "
                    "runner override (POST /api/fleet/conform)",
                    {"missing": disabled, "settings": {key: settings.get(key) for key in disabled}},
                )
            )
        return version

    def _image_api(
        self,
        panel: Panel,
        version: str,
        problems: list[RunnerProblem],
        unchecked: list[dict[str, str]],
    ) -> None:
        try:
            objects = self._image_objects()
        except FluxfleetError as error:
            unchecked.append({"check": "image-api", "reason": safe_text(error.message)})
            return
        unserved = unserved_objects(version, objects)
        if not unserved:
            return
        problems.append(_unsupported(panel, version, unserved))

    def _credential(
        self,
        panel: Panel,
        facts: dict[str, Any],
        problems: list[RunnerProblem],
        unchecked: list[dict[str, str]],
    ) -> None:
        try:
            record = self._proofs().panel_credential(self._secret_name, panel.key)
        except FluxfleetError as error:
            unchecked.append({"check": "automation-credential", "reason": safe_text(error.message)})
            return
        current: str | None = None
        try:
            current = self._current_version()
        except FluxfleetError as error:
            unchecked.append({"check": "automation-credential-current", "reason": safe_text(error.message)})
        facts["credential"] = {
            "secret": self._secret_name,
            "currentVersion": current,
            "version": record.version if record else None,
            "state": record.state.value if record else None,
            "updatedAt": format_optional(record.updated_at) if record else None,
            "detail": safe_text(record.detail) if record and record.detail else None,
        }
        why = _not_proven(record, current)
        if why is None:
            return
        problems.append(
            RunnerProblem(
                RunnerProblemCode.AUTOMATION_CREDENTIAL_NOT_PROVEN,
                f"the automation credential ({self._secret_name}) is not proven on {panel.name}: {why}",
                {"secret": self._secret_name},
            )
        )


def _not_proven(record: PanelCredential | None, current: str | None) -> str | None:
    """Why the runner's automation credential is not proven; None when it is."""
    if record is None:
        return (
            "no record of it on the runner yet (proven by the next automation rollout: POST "
            '/api/credentials/rollout {"purpose": "automation"}, or the daily check)'
        )
    if record.state is not PanelCredentialState.PROVEN:
        detail = f" ({safe_text(record.detail)})" if record.detail else ""
        return f"version {record.version} is {record.state.value} on it{detail}"
    if current is not None and record.version != current:
        return (
            f"it is proven on version {record.version}, not on the current version {current} "
            "(its rollout has not reached the runner yet, or halted)"
        )
    return None


def _unsupported(panel: Panel, version: str, unserved: Sequence[UnservedObject]) -> RunnerProblem:
    """`image-api-unsupported-on-runner`: what cannot be applied, and the release that would serve it."""
    needed = [first_release_serving(item.kind, item.api_version, after=version) for item in unserved]
    upgradable = [v for v in needed if v is not None]
    objects = [
        {
            "kind": item.kind,
            "namespace": item.namespace,
            "name": item.name,
            "apiVersion": item.api_version,
            "path": item.path,
            "firstServedIn": first,
        }
        for item, first in zip(unserved[:MAX_LISTED], needed[:MAX_LISTED], strict=True)
    ]
    apis = sorted({item.api_version for item in unserved})
    named = ", ".join(
        f"{item.kind}/{item.namespace}/{item.name} ({item.api_version})" for item in unserved[:5]
    )
    more = f" and {len(unserved) - 5} more" if len(unserved) > 5 else ""
    detail: dict[str, Any] = {
        "extensionVersion": version,
        "apiVersions": apis,
        "objects": objects,
        "count": len(unserved),
    }
    if len(upgradable) == len(needed):
        target = max(upgradable, key=version_tuple)
        path = upgrade_path(version, target)
        detail.update({"firstServingRelease": target, "upgradePath": path})
        gate = (
            f"; the release notes require {UPGRADE_FLOOR} or later before {UPGRADE_GATE}, "
            f"so step {' → '.join(path)}"
            if len(path) > 1
            else ""
        )
        advice = f"upgrade its microsoft.flux to {target} or later{gate}"
        if target == FIRST_EXTENSION_WITH_IMAGE_V1:
            advice += f" ({FIRST_EXTENSION_WITH_IMAGE_V1} ships Flux 2.7's image controllers)"
    else:
        # No newer release serves them (an API version the image controllers dropped): move the objects.
        detail["upgradePath"] = []
        advice = "no newer microsoft.flux serves them: move the objects to image.toolkit.fluxcd.io/v1"
    return RunnerProblem(
        RunnerProblemCode.IMAGE_API_UNSUPPORTED_ON_RUNNER,
        f"{panel.name}'s microsoft.flux {version} does not serve {named}{more}: Flux fails its "
        f'kustomization with "no matches for kind … in version …"; {advice}',
        detail,
    )
