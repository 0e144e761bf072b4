"""Rings: the order in which a credential change reaches the fleet (canary, then early, then broad).

The ring of a panel is its `ring` tag. Panels without one, or with a value outside the configured
rings, join the *last* ring: a panel nobody classified should not be the first to try a new PAT.
Both credential strategies (rollout and the workload-identity migration) plan the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.models import Panel, Stage

RING_TAG = "ring"


def ring_of(panel: Panel, rings: Sequence[str]) -> str:
    value = (panel.tag(RING_TAG) or "").strip().lower()
    for ring in rings:
        if ring.lower() == value:
            return ring
    return rings[-1]


def plan_rings(panels: Sequence[Panel], *, rings: Sequence[str], threshold: float) -> list[Stage]:
    """One stage per ring that has panels, in ring order, each needing `threshold` to let the next start."""
    by_ring: dict[str, list[Panel]] = {ring: [] for ring in rings}
    for panel in panels:
        by_ring[ring_of(panel, rings)].append(panel)
    return [
        Stage(name=ring, panels=tuple(sorted(members, key=lambda p: p.key)), success_threshold=threshold)
        for ring, members in by_ring.items()
        if members
    ]
