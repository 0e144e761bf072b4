"""The demo's live view: per-ring progress tables and a short log, rendered with rich."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

RINGS = ("canary", "early", "broad")
# Final per-panel states of a fleet change, and the ones still moving.
DONE = ("succeeded", "unchanged", "skipped", "failed", "pending-offline")
STATE_STYLE = {
    "succeeded": "green",
    "unchanged": "cyan",
    "pending-offline": "yellow",
    "failed": "bold red",
    "skipped": "magenta",
}

# In a terminal rich uses its width; piped to a file or CI log it would fall back to 80 columns, too
# narrow for the per-ring tables.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def ring_of(panel: Mapping[str, Any]) -> str:
    return str((panel.get("tags") or {}).get("ring", "untagged"))


def fleet_table(inventory: Mapping[str, Any]) -> Table:
    table = Table(
        title=f"Fleet: {inventory['total']} panels, Flux configuration {inventory['configuration']}",
        title_justify="left",
    )
    for column in ("ring", "panels", "online", "compliant", "suspended", "synced revision"):
        table.add_column(column, justify="right" if column not in ("ring", "synced revision") else "left")
    by_ring: dict[str, list[Mapping[str, Any]]] = {}
    for panel in inventory["clusters"]:
        by_ring.setdefault(ring_of(panel), []).append(panel)
    for ring in sorted(by_ring, key=lambda r: RINGS.index(r) if r in RINGS else 99):
        panels = by_ring[ring]
        revisions = Counter(str(p.get("sourceSyncedCommitId") or "-").split("/")[-1][:10] for p in panels)
        table.add_row(
            ring,
            str(len(panels)),
            str(sum(p["connectivity"] == "Connected" for p in panels)),
            str(sum(p.get("complianceState") == "Compliant" for p in panels)),
            str(sum(bool(p.get("suspended")) for p in panels)),
            ", ".join(f"{rev} ×{n}" for rev, n in revisions.most_common(2)),
        )
    return table


def progress_table(title: str, states_by_ring: Mapping[str, Iterable[str]]) -> Table:
    """One row per ring: a bar of panels in a final state, and the count of each state."""
    table = Table(title=title, title_justify="left")
    table.add_column("ring")
    table.add_column("progress", width=32)
    table.add_column("done", justify="right")
    for state in DONE:
        table.add_column(state, justify="right", style=STATE_STYLE[state])
    table.add_column("in flight", justify="right")
    for ring in sorted(states_by_ring, key=lambda r: RINGS.index(r) if r in RINGS else 99):
        states = Counter(states_by_ring[ring])
        total = sum(states.values())
        done = sum(states[s] for s in DONE)
        table.add_row(
            ring,
            ProgressBar(total=max(total, 1), completed=done, width=30),
            f"{done}/{total}",
            *(str(states[s] or "") for s in DONE),
            str(total - done or ""),
        )
    return table


def scene(title: str, text: str) -> Panel:
    return Panel(text, title=f"[bold]{title}", title_align="left", border_style="blue")


def group(*items: Any) -> Group:
    return Group(*items)
