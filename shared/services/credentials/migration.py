"""Moving panels off PATs: the `workload-identity-migration` `ChangeStrategy`.

The same engine and rings as a PAT rollout, one panel at a time: a ready panel's Flux configuration
gets `gitRepository.provider: Azure`, loses `httpsUser`, and its `httpsKey` protected setting is
removed explicitly (`null`: ARM merges protected settings, so no PAT is left on the panel to leak or to
expire). The move is proven like a rollout, by
a fetch the agent reported after the change; an authentication failure halts the migration, and the
panel can be put back on the PAT with a credential rollout targeting it (which restores
`provider: Generic` with the current PAT).

A panel that is not ready (extension too old, workload identity or OIDC issuer off) is never changed:
`desired_patch` refuses it with the reasons, before any write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.errors import InvalidInput, PermanentError
from shared.models import AppliedChange, Convergence, FluxState, Panel, Params, Stage
from shared.models.credentials import PanelCredential, PanelCredentialState
from shared.ports import Notifier, OperationRecord
from shared.services.credentials.ports import CredentialLedger, WorkloadIdentityReader
from shared.services.credentials.proof import FetchVerdict, judge_fetch
from shared.services.credentials.report import held_version
from shared.services.credentials.rings import plan_rings
from shared.services.credentials.rollout import AZURE_PROVIDER, CREDENTIAL_LOCK_GROUP, _rings, _threshold
from shared.services.credentials.workload_identity import assess
from shared.services.fleet.strategy import BaseStrategy

log = logging.getLogger("fluxfleet.credentials.migration")

MIGRATION_KIND = "workload-identity-migration"


class NotReady(PermanentError):
    """The panel cannot use workload identity yet; it keeps its PAT."""

    code = "NotReadyForWorkloadIdentity"


class WorkloadIdentityMigrationStrategy(BaseStrategy):
    kind = MIGRATION_KIND
    lock_group = CREDENTIAL_LOCK_GROUP

    def __init__(
        self,
        *,
        readiness: WorkloadIdentityReader,
        ledger: CredentialLedger,
        notifier: Notifier,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._readiness = readiness
        self._ledger = ledger
        self._notifier = notifier
        self._wall_clock = wall_clock

    def validate_params(self, params: Params) -> Params:
        secret = params.get("secret")
        if not isinstance(secret, str) or not secret:
            raise InvalidInput("params.secret", "must name the Key Vault secret whose map records the move")
        return {
            "secret": secret,
            "rings": list(_rings(params.get("rings"))),
            "ringThreshold": _threshold(params.get("ringThreshold")),
            "trigger": str(params.get("trigger") or "api"),
        }

    def plan(self, panels: Sequence[Panel], params: Params) -> list[Stage]:
        return plan_rings(
            panels, rings=_rings(params.get("rings")), threshold=_threshold(params.get("ringThreshold"))
        )

    def would_change(self, panel: Panel, current: FluxState, params: Params) -> bool:
        return (current.provider or "").lower() != AZURE_PROVIDER.lower()

    def desired_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        if not self.would_change(panel, current, params):
            return None
        facts = self._readiness.facts(panels=[panel]).get(panel.key)
        if facts is None:
            raise NotReady(f"{panel.name}: ARM did not say whether workload identity is available")
        readiness = assess(facts)
        if not readiness.ready:
            raise NotReady(
                f"{panel.name} is not ready for workload identity: " + "; ".join(readiness.reasons)
            )
        return {
            "gitRepository": {"provider": AZURE_PROVIDER, "httpsUser": None},
            # ARM merges a PATCH's protected settings (JSON merge patch): `{}` would keep the PAT on
            # the panel, live and never rotated again. `null` removes the key (see lab/arm/wire.py
            # `apply_patch_body` for the sources).
            "configurationProtectedSettings": {"httpsKey": None},
        }

    def check(self, panel: Panel, current: FluxState, applied: AppliedChange, params: Params) -> Convergence:
        judgement = judge_fetch(current, applied)
        if judgement.verdict is FetchVerdict.PROVEN:
            self._save(params, panel, PanelCredentialState.WORKLOAD_IDENTITY, judgement.detail)
            return Convergence.converged(f"fetching with workload identity: {judgement.detail}")
        if judgement.verdict is FetchVerdict.AUTH_FAILED:
            self._save(
                params, panel, PanelCredentialState.FAILED, f"workload identity failed: {judgement.detail}"
            )
            return Convergence.failed(
                f"the agent could not authenticate with workload identity ({judgement.detail}); migration "
                "halted. Put this panel back on the PAT with POST /api/credentials/rollout targeting it",
                halt_operation=True,
            )
        if judgement.verdict is FetchVerdict.SUSPENDED:
            return Convergence.converged("provider changed; Flux is suspended here, proof waits for resume")
        record = self._ledger.panel_credential(str(params.get("secret")), panel.key)
        if record is None or record.version is not None or record.state is not PanelCredentialState.APPLYING:
            self._save(
                params,
                panel,
                PanelCredentialState.APPLYING,
                "moved to workload identity; waiting for a fetch",
            )
        return Convergence.waiting(judgement.detail)

    def on_stage_done(self, operation: OperationRecord, stage: int, summary: Mapping[str, int]) -> None:
        if operation.halted_reason:
            self._notifier.notify(
                title="Workload identity migration halted",
                text=operation.halted_reason,
                level="error",
                facts={"operation": str(operation.id), "stage": str(stage)},
            )

    def _save(self, params: Params, panel: Panel, state: PanelCredentialState, detail: str) -> None:
        secret = str(params.get("secret"))
        previous = self._ledger.panel_credential(secret, panel.key)
        self._ledger.save_panel_credential(
            secret,
            PanelCredential(
                panel_id=panel.id,
                panel_name=panel.name,
                version=None,  # no PAT is on the panel once the change is applied
                state=state,
                updated_at=self._wall_clock(),
                previous_version=held_version(previous),
                detail=detail,
            ),
        )
