"""`conform` and `flux-reset`: fleet-change kinds that write several resources per panel, one step at a time.

Why steps: a new panel needs the `microsoft.flux` extension installed (an LRO of minutes in Azure)
before ARM accepts its Flux configuration, and an outdated one may have to step through an upgrade
path. So each apply writes the *next* missing piece — extension PUT (install/upgrade), extension PATCH
(settings), configuration PUT (create, with the proven PAT read from Key Vault at that moment) or PATCH
(only the drifted fields) — and each verify reads ARM again: an LRO still running waits, a finished
step asks for the next (`Convergence.again`), and the panel is `succeeded` only when its agent reports
`Compliant` on the declaration's revision after the last write (ARM's clock).

Reset (seed 9.4) deletes the configuration and creates it again from the declaration, proven the same
way: by the agent's fresh fetch of the fleet's revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.errors import InvalidInput, PermanentError
from shared.models import AppliedChange, Convergence, FluxState, Panel, Params, Stage
from shared.ports import AcceptedWrite
from shared.services.conformance.declaration import Declaration, Desired
from shared.services.conformance.drift import (
    assess,
    configuration_body,
    current_version,
    extension_body,
)
from shared.services.conformance.ports import ConformanceArm, DeclarationSource, HttpsKeySource
from shared.services.fleet.strategy import BaseStrategy

CONFORM_KIND = "conform"
RESET_KIND = "flux-reset"
# Conform and reset both (re)write the whole Flux setup of a panel: never both at once on one panel.
CONFORMANCE_LOCK_GROUP = "flux-conformance"
RUNNING = ("Creating", "Updating", "Deleting", "Accepted", "Running")
PANELS_WITHOUT_RING = "other"


def _params(params: Params) -> tuple[str, str]:
    revision = params.get("revision")
    url = params.get("gitUrl")
    if not isinstance(revision, str) or not revision:
        raise InvalidInput("params.revision", "must name the declaration's commit")
    if not isinstance(url, str) or not url:
        raise InvalidInput("params.gitUrl", "must be the repository URL")
    return revision, url


class _Steps(BaseStrategy):
    """What conform and reset share: the declaration per panel, the rings, the proof."""

    lock_group = CONFORMANCE_LOCK_GROUP

    def __init__(
        self,
        *,
        arm: ConformanceArm,
        declarations: DeclarationSource,
        keys: HttpsKeySource,
        rings: Sequence[str],
    ) -> None:
        self._arm = arm
        self._declarations = declarations
        self._keys = keys
        self._rings = tuple(rings)

    def validate_params(self, params: Params) -> Params:
        revision, url = _params(params)
        return {"revision": revision, "gitUrl": url}

    def plan(self, panels: Sequence[Panel], params: Params) -> list[Stage]:
        # Ring by ring, no threshold: a panel that cannot be onboarded must not keep the others waiting.
        by_ring: dict[str, list[Panel]] = {}
        for panel in panels:
            ring = panel.tag("ring")
            by_ring.setdefault(ring if ring in self._rings else PANELS_WITHOUT_RING, []).append(panel)
        order = [*self._rings, PANELS_WITHOUT_RING]
        return [Stage(name=r, panels=tuple(by_ring[r]), success_threshold=0.0) for r in order if r in by_ring]

    def check(self, panel: Panel, current: FluxState, applied: AppliedChange, params: Params) -> Convergence:
        raise NotImplementedError("conformance kinds are checked by check_step")

    def _desired(self, panel: Panel, params: Params) -> Desired:
        revision, url = _params(params)
        declaration: Declaration = self._declarations.at(revision)
        return declaration.desired_for(panel, default_url=url)

    def _create(self, panel: Panel, desired: Desired, configuration: str) -> AcceptedWrite:
        want = desired.configuration
        body = configuration_body(want, https_key=self._keys.https_key(secret=want.credential_secret))
        return self._arm.put_flux_configuration(panel=panel, configuration=configuration, body=body)

    def _proof(
        self, panel: Panel, desired: Desired, applied: AppliedChange, params: Params, configuration: str
    ) -> Convergence:
        """The agent's report on the configuration, after the last write, on the declaration's revision."""
        revision, _ = _params(params)
        resource = self._arm.get_flux_resource(panel=panel, configuration=configuration)
        if resource is None:
            return Convergence.again(f"the Flux configuration {configuration} is missing")
        props = resource.get("properties") or {}
        state = props.get("provisioningState")
        if state in RUNNING:
            return Convergence.waiting(f"ARM's operation on the configuration is still running ({state})")
        if state in ("Failed", "Canceled"):
            return Convergence.again(
                f"ARM reported the configuration {state}: {props.get('errorMessage') or ''}"
            )
        synced = str(props.get("sourceSyncedCommitId") or "")
        reported = str(props.get("statusUpdatedAt") or "")
        compliance = props.get("complianceState")
        from shared.timestamps import parse_time

        when = parse_time(reported) if reported else None
        if when is None or when < applied.accepted_at:
            return Convergence.waiting("waiting for the panel's agent to report after the change")
        if compliance == "Compliant" and synced.endswith(revision):
            return Convergence.converged(f"agent applied {synced} ({compliance}) at {reported}")
        cause = props.get("errorMessage") or _ready_message(props) or compliance or "no report"
        return Convergence.waiting(f"agent reports {compliance} on {synced or 'no revision'}: {cause}")


def _in_flight(resource: dict[str, Any]) -> AcceptedWrite:
    """Nothing to write *yet* (an operation on the resource runs): the panel is tracked, not `unchanged`.
    Its last modification (ARM's clock) stands in for the time of the write."""
    from shared.timestamps import parse_time

    modified = parse_time((resource.get("systemData") or {}).get("lastModifiedAt"))
    return AcceptedWrite(accepted_at=modified or datetime.now(UTC), changed=False)


def _ready_message(props: dict[str, Any]) -> str | None:
    for status in props.get("statuses") or []:
        for condition in status.get("statusConditions") or []:
            if condition.get("type") == "Ready" and str(condition.get("status")).lower() != "true":
                return f"{status.get('kind')} {status.get('name')}: {condition.get('message')}"
    return None


class ConformStrategy(_Steps):
    """Install/upgrade the extension, create the configuration, repair drift — one step per apply."""

    kind = CONFORM_KIND

    def would_change(self, panel: Panel, current: FluxState, params: Params) -> bool:
        return True  # dry runs are answered by the conformance service from the differences

    def write_step(
        self, panel: Panel, params: Params, *, configuration: str, reapply: bool
    ) -> AcceptedWrite | None:
        desired = self._desired(panel, params)
        ext_want = desired.extension
        extension = self._arm.get_extension(panel=panel, name=ext_want.name)
        if extension is None:
            return self._arm.put_extension(
                panel=panel,
                name=ext_want.name,
                body=extension_body(ext_want, version=None, current_settings=None),
            )
        ext_props = extension.get("properties") or {}
        if ext_props.get("provisioningState") in RUNNING:
            return _in_flight(extension)  # its LRO runs: verify waits for it, then asks for the next step
        resource = self._arm.get_flux_resource(panel=panel, configuration=configuration)
        verdict = assess(desired, extension=extension, configuration=resource)
        settings = ext_props.get("configurationSettings") or {}
        if verdict.upgrade_path or ext_props.get("provisioningState") == "Failed":
            step = verdict.upgrade_path[0] if verdict.upgrade_path else current_version(extension)
            return self._arm.put_extension(
                panel=panel,
                name=ext_want.name,
                body=extension_body(ext_want, version=step, current_settings=settings),
            )
        if verdict.extension_patch:
            return self._arm.patch_extension(
                panel=panel, name=ext_want.name, properties=verdict.extension_patch
            )
        if resource is None:
            if ext_props.get("provisioningState") != "Succeeded":
                return _in_flight(extension)
            return self._create(panel, desired, configuration)
        if verdict.needs_reset:
            raise PermanentError(
                f"{', '.join(verdict.needs_reset)} differ from the declaration; a PATCH cannot change them: "
                "use POST /api/fleet/reset"
            )
        if verdict.configuration_patch:
            return self._arm.begin_patch(
                panel=panel, configuration=configuration, patch=verdict.configuration_patch
            )
        return None

    def check_step(
        self, panel: Panel, applied: AppliedChange, params: Params, *, configuration: str
    ) -> Convergence:
        desired = self._desired(panel, params)
        extension = self._arm.get_extension(panel=panel, name=desired.extension.name)
        if extension is None:
            return Convergence.again("the microsoft.flux extension is not installed")
        props = extension.get("properties") or {}
        state = props.get("provisioningState")
        if state in RUNNING:
            return Convergence.waiting(f"the extension's operation is still running ({state})")
        if state == "Failed":
            error = props.get("errorInfo") or {}
            return Convergence.failed(f"the extension failed: {error.get('code')}: {error.get('message')}")
        resource = self._arm.get_flux_resource(panel=panel, configuration=configuration)
        verdict = assess(desired, extension=extension, configuration=resource)
        if verdict.upgrade_path:
            return Convergence.again(
                f"extension at {current_version(extension)}; next {verdict.upgrade_path[0]}"
            )
        if verdict.extension_patch:
            return Convergence.again("the extension's settings differ")
        if resource is None:
            return Convergence.again("the extension is ready; creating the Flux configuration")
        if (
            verdict.configuration_patch
            and (resource.get("properties") or {}).get("provisioningState") not in RUNNING
        ):
            fields = ", ".join(d.field for d in verdict.differences)
            return Convergence.again(f"still differs: {fields}")
        return self._proof(panel, desired, applied, params, configuration)


class ResetStrategy(_Steps):
    """Seed 9.4: delete the configuration, create it again from the declaration with the current PAT."""

    kind = RESET_KIND

    def would_change(self, panel: Panel, current: FluxState, params: Params) -> bool:
        return True

    def write_step(
        self, panel: Panel, params: Params, *, configuration: str, reapply: bool
    ) -> AcceptedWrite | None:
        desired = self._desired(panel, params)
        resource = self._arm.get_flux_resource(panel=panel, configuration=configuration)
        if not reapply:
            if resource is not None:
                return self._arm.delete_flux_configuration(panel=panel, configuration=configuration)
            return self._create(panel, desired, configuration)
        if resource is None:
            return self._create(panel, desired, configuration)
        return None  # created already (a retry): verify proves it

    def check_step(
        self, panel: Panel, applied: AppliedChange, params: Params, *, configuration: str
    ) -> Convergence:
        desired = self._desired(panel, params)
        resource = self._arm.get_flux_resource(panel=panel, configuration=configuration)
        if resource is None:
            return Convergence.again("deleted; creating it again from the declaration")
        props = resource.get("properties") or {}
        if props.get("provisioningState") == "Deleting":
            return Convergence.waiting("ARM is deleting the configuration")
        from shared.timestamps import parse_time

        created = parse_time((resource.get("systemData") or {}).get("createdAt"))
        if created is not None and created < applied.accepted_at:
            return Convergence.waiting("the old configuration is still there")
        return self._proof(panel, desired, applied, params, configuration)
