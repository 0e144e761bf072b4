"""The follow-up: did the automation commit the tag, and which panels applied that commit?

A `will-roll-out` verdict is a prediction; the follow-up checks it after the ETA. Two facts decide
it, both read from systems of record rather than from Flux's per-cluster status: Git (do the
markers now hold the new values, and which commit wrote them) and ARM (which commit each panel's
Flux configuration reports in `sourceSyncedCommitId`). A panel has the change when it reports the
landing commit or any later commit of the branch. These functions are pure; the service does the
reading.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from shared.image_policy import scan_markers
from shared.models.images import SHORT_SHA, MarkerChange, PanelOutcome, PanelReport
from shared.services.images.snapshot import RepoSnapshot

# Panels named one by one in a follow-up; the rest are counted (a Table entity holds at most 1 MB).
MAX_LISTED_PANELS = 50


def holds_changes(files: dict[str, str], changes: Sequence[MarkerChange]) -> bool:
    """Whether every expected change is in `files`: a marker with that setter holding the new value.

    Markers are matched by file and setter rather than by line, because other commits may move lines.
    """
    if not changes:
        return False
    scan = scan_markers({path: text for path, text in files.items() if path in {c.file for c in changes}})
    held = {(marker.path, marker.setter, marker.current_value) for marker in scan.markers}
    return all((change.file, change.setter, change.new) in held for change in changes)


def snapshot_holds(snapshot: RepoSnapshot, changes: Sequence[MarkerChange]) -> bool:
    return holds_changes(dict(snapshot.files), changes)


def commit_sha(source_synced_commit_id: str | None) -> str | None:
    """The sha in `sourceSyncedCommitId` (`main/<sha>` on Arc; `main@sha1:<sha>` in Flux's own form)."""
    if not source_synced_commit_id:
        return None
    value = source_synced_commit_id.strip()
    for separator in ("sha1:", "/"):
        if separator in value:
            value = value.rsplit(separator, 1)[1]
    return value.lower() or None


def commits_since(history: Sequence[str], landing: str) -> set[str]:
    """Commits of `history` (newest first) from the head down to and including `landing`.

    When `landing` is not in the window, every commit of the window is newer than it.
    """
    since: set[str] = set()
    for commit in history:
        since.add(commit.lower())
        if commit.lower() == landing.lower():
            break
    return since


def classify_panel(panel: PanelReport, applied_commits: Collection[str]) -> PanelOutcome:
    """Where one panel stands: it has the change, or why not (the first cause that applies)."""
    if panel.synced_commit and panel.synced_commit.lower() in applied_commits:
        return PanelOutcome(panel.name, "applied", f"reports {panel.synced_commit[:SHORT_SHA]}")
    if not panel.configured:
        return PanelOutcome(panel.name, "not-configured", "no Flux configuration of that name on this panel")
    if not panel.online:
        return PanelOutcome(panel.name, "offline", f"connectivity {panel.connectivity}")
    if panel.suspended:
        return PanelOutcome(panel.name, "suspended", "the Flux configuration is suspended")
    if panel.compliance_state == "Non-Compliant" or panel.error:
        return PanelOutcome(panel.name, "failing", panel.error or f"complianceState {panel.compliance_state}")
    synced = panel.synced_commit[:SHORT_SHA] if panel.synced_commit else "nothing yet"
    return PanelOutcome(panel.name, "behind", f"healthy but still reports {synced}")


def classify_panels(panels: Sequence[PanelReport], applied_commits: Collection[str]) -> list[PanelOutcome]:
    return [classify_panel(panel, applied_commits) for panel in sorted(panels, key=lambda item: item.name)]


def not_applied_reason(outcomes: Sequence[PanelOutcome]) -> str:
    """One sentence on the panels that do not have the commit, by cause."""
    pending = [outcome for outcome in outcomes if outcome.state != "applied"]
    by_state: dict[str, list[str]] = {}
    for outcome in pending:
        by_state.setdefault(outcome.state, []).append(outcome.name)
    parts = []
    for state, names in sorted(by_state.items()):
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"{len(names)} {state} ({shown})")
    return "; ".join(parts)
