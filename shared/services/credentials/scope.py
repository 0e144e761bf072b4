"""Which clusters each credential belongs on (issue 15: least privilege for image automation).

The fleet credential (read-only) is for every factory panel and never the image-automation runner; the
automation credential (read & write) is for the runner only, and there must be exactly one runner — two
would race to make the same commit, and every extra write credential is one more to steal. The runner
is found by its tag (`RunnerSelector`), as the lab's simulator and an operator find it.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import Unprocessable
from shared.models import Panel, Selector
from shared.models.credentials import CredentialPurpose
from shared.models.runner import RunnerSelector
from shared.services.fleet.selection import select


def scope_panels(
    panels: Sequence[Panel], *, purpose: CredentialPurpose, runner: RunnerSelector
) -> list[Panel]:
    """The clusters of `panels` a credential of `purpose` belongs on."""
    if purpose is CredentialPurpose.AUTOMATION:
        return runner.runners(panels)
    return runner.factory_panels(panels)


def require_one_runner(fleet: Sequence[Panel], runner: RunnerSelector) -> Panel:
    """The one image-automation runner, or 422 (`runner-not-configured`, or several runners)."""
    runners = runner.runners(fleet)
    if len(runners) == 1:
        return runners[0]
    if not runners:
        raise Unprocessable(
            "target",
            f"runner-not-configured: no cluster is tagged {runner}; tag the one cluster that runs the "
            "image controllers",
            reason="runner-not-configured",
        )
    names = ", ".join(p.name for p in runners[:10])
    raise Unprocessable(
        "target",
        f"{len(runners)} clusters are tagged {runner} ({names}): exactly one runner may hold the automation "
        "credential (several would race to make the same commit)",
        reason="several-runners",
    )


def rollout_panels(
    fleet: Sequence[Panel],
    *,
    selection: Selector | None,
    purpose: CredentialPurpose,
    runner: RunnerSelector,
) -> list[Panel]:
    """The panels a rollout of `purpose` goes to, chosen from the whole fleet by `selection`.

    422 naming `target` when the selection names clusters of the other credential (a fleet rollout that
    names the runner must not silently do less than asked), when nothing is left, and — for the
    automation credential — unless the fleet has exactly one runner.
    """
    if purpose is CredentialPurpose.AUTOMATION:
        require_one_runner(fleet, runner)
    explicit = selection is not None and not selection.all
    chosen = select(fleet, selection) if explicit and selection is not None else list(fleet)
    scoped = scope_panels(chosen, purpose=purpose, runner=runner)
    inside = {p.key for p in scoped}
    outside = sorted(p.name for p in chosen if p.key not in inside)
    if outside and explicit:
        whose = (
            "factory panels hold the read-only fleet credential, never the automation one"
            if purpose is CredentialPurpose.AUTOMATION
            else f"the image-automation runner ({runner}) holds the automation credential, "
            "never the fleet one"
        )
        raise Unprocessable("target", f"{', '.join(outside[:10])}: {whose}", outside=outside[:50])
    if not scoped:
        raise Unprocessable("target", "matches no panel this credential is for")
    return scoped
