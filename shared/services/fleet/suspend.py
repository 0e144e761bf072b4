"""Suspend and resume: the two strategies release pipelines use to freeze and unfreeze Flux.

Proof of convergence: ARM shows `suspend: true` the moment it accepts the PATCH, which proves
nothing about the panel. A panel is `succeeded` only when its agent *reports* the new state after the
write: complianceState `Suspended` (suspend) or anything else (resume), with a report time no older
than the moment ARM accepted the change (both on ARM's clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.errors import InvalidInput
from shared.models import AppliedChange, Convergence, FluxState, Panel, Params, Stage
from shared.services.fleet.strategy import BaseStrategy
from shared.timestamps import format_optional

# Suspend and resume exclude each other on a panel while one is running.
SUSPEND_LOCK_GROUP = "flux-suspend"
SUSPENDED = "Suspended"


class SuspendStrategy(BaseStrategy):
    """Suspend (`suspended=True`) or resume (`suspended=False`) Flux on each selected panel."""

    lock_group = SUSPEND_LOCK_GROUP

    def __init__(self, *, suspended: bool) -> None:
        self.suspended = suspended
        self.kind = "suspend" if suspended else "resume"

    def validate_params(self, params: Params) -> Params:
        if params:
            raise InvalidInput("params", f"{self.kind} takes no parameters, got {', '.join(sorted(params))}")
        return {}

    def plan(self, panels: Sequence[Panel], params: Params) -> list[Stage]:
        # One stage: a freeze must reach every selected panel, and no panel's outcome gates another's.
        return [Stage(name="all", panels=tuple(panels), success_threshold=0.0)]

    def desired_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        if current.suspended == self.suspended:
            return None
        return {"suspend": self.suspended}

    def reapply_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        return {"suspend": self.suspended}

    def check(self, panel: Panel, current: FluxState, applied: AppliedChange, params: Params) -> Convergence:
        if current.suspended != self.suspended:
            other = "resumed" if self.suspended else "suspended"
            return Convergence.failed(f"the configuration was {other} by someone else after this change")
        reported = current.status_updated_at
        last = f"agent last reported {current.compliance_state} at {format_optional(reported) or 'never'}"
        if not reported_after(current, applied):
            return Convergence.waiting(last)
        if (current.compliance_state == SUSPENDED) == self.suspended:
            return Convergence.converged(
                f"agent reports {current.compliance_state} at {format_optional(reported)}"
            )
        return Convergence.waiting(last)


def reported_after(current: FluxState, applied: AppliedChange) -> bool:
    """Whether the agent's last report is from after the change (ARM-clock times only)."""
    reported = current.status_updated_at
    if reported is None:
        return False
    if reported >= applied.accepted_at:
        return True
    baseline = applied.baseline_status_updated_at
    return baseline is not None and reported > baseline


def suspend_strategies() -> tuple[SuspendStrategy, SuspendStrategy]:
    """Suspend and resume, for the engine."""
    return (SuspendStrategy(suspended=True), SuspendStrategy(suspended=False))
