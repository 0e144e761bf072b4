"""What a kind of fleet-wide change is: the `ChangeStrategy` the engine drives, and its defaults."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from shared.models import AppliedChange, Convergence, FluxState, Panel, Params, Stage
from shared.ports import AcceptedWrite, OperationRecord


@runtime_checkable
class ChangeStrategy(Protocol):
    """One kind of fleet-wide change. Implementations are stateless apart from their collaborators."""

    @property
    def kind(self) -> str:
        """The operation kind, e.g. "suspend"; unique among strategies; stored with the operation."""
        ...

    @property
    def lock_group(self) -> str:
        """Operations in one group may not overlap panels while running (409); e.g. suspend and
        resume share "flux-suspend", so a resume cannot race a running suspend on the same panel."""
        ...

    def validate_params(self, params: Params) -> Params:
        """Check and normalise the kind-specific params (raise `InvalidInput` naming the field).
        The result is stored with the operation: JSON-able, never a secret."""
        ...

    def plan(self, panels: Sequence[Panel], params: Params) -> list[Stage]:
        """Split the selected panels into ordered stages, each with a success threshold."""
        ...

    def desired_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        """The `properties` of the PATCH to send to this panel now, or None if it already is as
        desired (the panel is then `unchanged` and nothing is written). Called in the worker at apply
        time, so a strategy may read a secret here; it never travels in a message or a row."""
        ...

    def reapply_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        """The PATCH that re-sends a change ARM already holds: Arc dropped it after 48 hours offline, or
        ARM's last update of it failed. `desired_patch` would say "nothing to do" for a change ARM shows
        as desired (`suspend: true` is already in the resource), so a kind whose patch depends on the
        current state says here what to send regardless."""
        ...

    def would_change(self, panel: Panel, current: FluxState, params: Params) -> bool:
        """What a dry run shows: whether `desired_patch` would write, without its side effects (a
        credential strategy must not read the secret value just to answer a dry run)."""
        ...

    def check(self, panel: Panel, current: FluxState, applied: AppliedChange, params: Params) -> Convergence:
        """Has the panel's agent reported the change? Compare ARM-clock times from `applied`
        with the agent's report times in `current` (never the app's clock)."""
        ...

    def on_stage_done(self, operation: OperationRecord, stage: int, summary: Mapping[str, int]) -> None:
        """Called once a stage is settled (may be called more than once: make it idempotent)."""
        ...


@runtime_checkable
class SelfWritingStrategy(Protocol):
    """A kind that writes more than the one Flux configuration PATCH (conformance: the extension, then
    the configuration; reset: a DELETE, then a PUT). The engine then reads nothing itself: the strategy
    reads and writes what it needs through its own ARM port, one step per apply, and `check_step`
    answers `Convergence.again(...)` when the next step must be written (the panel goes back to apply).
    """

    def write_step(
        self, panel: Panel, params: Params, *, configuration: str, reapply: bool
    ) -> AcceptedWrite | None:
        """Write the next step to this panel now (None: nothing to write, the panel is as desired)."""
        ...

    def check_step(
        self, panel: Panel, applied: AppliedChange, params: Params, *, configuration: str
    ) -> Convergence:
        """Converged (the agent applied it), waiting, failed, or `again` (write the next step)."""
        ...


class BaseStrategy:
    """Defaults for the optional parts of `ChangeStrategy`; subclass it and override what you need.

    A subclass must define `kind`, `lock_group`, `plan`, `desired_patch` and `check`.
    """

    kind: str = ""
    lock_group: str = ""

    def validate_params(self, params: Params) -> Params:
        return dict(params)

    def desired_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        raise NotImplementedError(f"{type(self).__name__} must say what to write")

    def on_stage_done(self, operation: OperationRecord, stage: int, summary: Mapping[str, int]) -> None:
        return None

    def would_change(self, panel: Panel, current: FluxState, params: Params) -> bool:
        """Default: ask `desired_patch`; strategies whose patch has side effects override this."""
        return self.desired_patch(panel, current, params) is not None

    def reapply_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        """Default: `desired_patch`, which is right for changes that always write (e.g. a credential)."""
        return self.desired_patch(panel, current, params)
