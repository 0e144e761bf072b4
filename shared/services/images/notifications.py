"""What the team's Teams/Slack channel hears about image checks: every push that will not roll out,
and every follow-up that found the rollout stuck.

A `will-roll-out` verdict is good news nobody needs pinged about; the silence users complain about
is the other verdicts, so those are sent as they happen. The wording is the verdict's own reason
(it names what to fix) plus a few facts; the shape per webhook host is `shared.adapters.notifier`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.models.images import SHORT_SHA, CheckRecord
from shared.timestamps import format_time

# Verdicts that are not news: the tag is on its way, or already there.
QUIET_VERDICTS = frozenset({"will-roll-out"})
# Follow-up outcomes worth a message (the brief: stuck follow-ups).
LOUD_OUTCOMES = frozenset({"stuck"})


@dataclass(frozen=True)
class Notice:
    title: str
    text: str
    level: str  # "warning" | "error"
    facts: dict[str, str]


def verdict_notice(record: CheckRecord) -> Notice | None:
    """The message for a pushed tag that will not roll out; None when there is nothing to say."""
    verdict = record.verdict
    if record.trigger != "push" or verdict.verdict in QUIET_VERDICTS:
        return None
    facts = {"verdict": verdict.verdict, "commit": verdict.commit[:SHORT_SHA], "check": record.id}
    if verdict.warnings:
        facts["warnings"] = " | ".join(verdict.warnings)
    return Notice(
        title=f"{verdict.ref} will not roll out ({verdict.verdict})",
        text=verdict.reason,
        level="warning",
        facts=facts,
    )


def follow_up_notice(record: CheckRecord) -> Notice | None:
    """The message for a follow-up that ended stuck; None for every other outcome."""
    follow_up = record.follow_up
    if follow_up is None or not follow_up.done or follow_up.outcome not in LOUD_OUTCOMES:
        return None
    verdict = record.verdict
    facts = {"outcome": str(follow_up.outcome), "check": record.id, "attempts": str(follow_up.attempts)}
    if verdict.eta is not None:
        facts["expected in Git by"] = format_time(verdict.eta.commit_by)
    return Notice(
        title=f"{verdict.ref} is stuck: the image automation did not commit it",
        text=follow_up.reason,
        level="error",
        facts=facts,
    )
