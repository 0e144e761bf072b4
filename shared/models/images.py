"""The values of an image check: what was pushed, the verdict, its follow-up, and the stored record.

A check answers "will this tag roll out, when, and if not, why?" once (the verdict, from Git at one
commit and the registry's tags at one moment) and then again later (the follow-up, from Git's new
HEAD and what the panels report). Both are plain frozen values so the verdict logic stays pure and
testable; `CheckRecord.to_document` is the one JSON shape that is stored and served, and
`CheckRecord.from_document` reads it back for the follow-up.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, NewType, TypedDict, cast, get_args

from shared.timestamps import format_time, parse_time

CheckId = NewType("CheckId", str)
CommitId = NewType("CommitId", str)

# Most hopeful first: `shared.services.images.verdict` takes this order as its priority.
VerdictKind = Literal[
    "will-roll-out",
    "already-deployed",
    "no-marker",
    "automation-suspended",
    "policy-suspended",
    "automation-missing",
    "not-latest",
    "filtered-out",
    "invalid-policy",
    "no-policy",
    "no-image-repository",
]
VERDICT_KINDS: tuple[VerdictKind, ...] = get_args(VerdictKind)

# Which rule rejected a tag for `filtered-out`: the ImageRepository's exclusion list, or the
# policy's own gates (shared.image_policy's `rejected_by`).
FilterRule = Literal["exclusion", "filter-pattern", "range", "not-a-version", "not-numeric"]

Trigger = Literal["push", "preflight"]

FollowUpStatus = Literal["scheduled", "done"]
FollowUpOutcome = Literal["rolled-out", "committed-not-applied", "stuck", "superseded"]
PanelState = Literal["applied", "offline", "suspended", "failing", "not-configured", "behind"]


# Commits are shown by their first 12 characters, as `git log --abbrev=12` would.
SHORT_SHA = 12
# Table RowKeys sort ascending; subtracting the creation time (ms) from this base makes the newest
# check of an image sort first, until the year 2286 when the base's 13 digits run out.
_INVERSION_BASE_MS = 10**13
# Hex digits of SHA-256 kept for an image's partition key: 64 bits, no collisions in any registry.
_IMAGE_KEY_HEX = 16
_CHECK_ID = re.compile(r"^([0-9a-f]{16})-([0-9]{13}-[0-9a-f]{8,32})$")


def image_key(canonical_image: str) -> str:
    """A Table-safe partition key for an image (repository names contain `/`, which keys may not)."""
    return hashlib.sha256(canonical_image.encode()).hexdigest()[:_IMAGE_KEY_HEX]


def make_check_id(*, canonical_image: str, created_at: datetime, salt: str) -> CheckId:
    """`<image key>-<inverted ms>-<salt>`: finds its partition by itself and sorts newest first.

    Push checks use a salt derived from the event id, so a redelivered event maps to the same check.
    """
    inverted = _INVERSION_BASE_MS - int(created_at.timestamp() * 1000)
    return CheckId(f"{image_key(canonical_image)}-{inverted:013d}-{salt}")


def split_check_id(check_id: str) -> tuple[str, str] | None:
    """(image key, the rest) of a well-formed check id, else None."""
    match = _CHECK_ID.match(check_id)
    return (match.group(1), match.group(2)) if match else None


def parse_iso(text: str) -> datetime:
    """A stored or received timestamp (`shared.timestamps`); ValueError when it is not one."""
    moment = parse_time(text)
    if moment is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    return moment


@dataclass(frozen=True)
class ImageRef:
    """A pushed (or about to be pushed) image: `image` is `host/repository` without tag or digest."""

    image: str
    tag: str
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The registry-relative repository (`ipc/opcua-gateway`), as ACR's data plane names it."""
        return self.image.split("/", 1)[1] if "/" in self.image else self.image

    @property
    def registry(self) -> str:
        return self.image.split("/", 1)[0] if "/" in self.image else ""

    def __str__(self) -> str:
        return f"{self.image}:{self.tag}"


@dataclass(frozen=True)
class PushedImage:
    """An ACR `ImagePushed` event reduced to what a verdict needs (never the raw payload)."""

    event_id: str
    ref: ImageRef
    pushed_at: datetime
    schema: Literal["EventGridSchema", "CloudEventSchemaV1_0"]


@dataclass(frozen=True)
class MarkerChange:
    """One setter-marked field the automation will rewrite (`file:line current → new`)."""

    file: str
    line: int
    setter: str
    current: str
    new: str

    def describe(self) -> str:
        return f"{self.file}:{self.line} {self.current} → {self.new}"

    def to_document(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "setter": self.setter,
            "current": self.current,
            "new": self.new,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> MarkerChange:
        return cls(
            str(doc["file"]), int(doc["line"]), str(doc["setter"]), str(doc["current"]), str(doc["new"])
        )


@dataclass(frozen=True)
class Eta:
    """When the change should be in Git and on the panels, if every Flux timer has just been missed.

    Flux runs three timers one after the other: image-reflector-controller scans the registry
    every ImageRepository `interval` (the policy then updates at once), image-automation-controller
    commits every automation `interval`, and each panel's source-controller fetches every
    `syncIntervalInSeconds` of its Flux configuration (kustomize-controller applies a new revision
    as soon as it is fetched). The worst case is the sum; nothing Flux does is slower than that
    unless something is broken, which is what the follow-up checks.
    """

    commit_by: datetime
    applied_by: datetime
    repository_interval_s: float
    automation_interval_s: float
    sync_interval_s: float

    def to_document(self) -> dict[str, Any]:
        return {
            "commitBy": format_time(self.commit_by),
            "appliedBy": format_time(self.applied_by),
            "basis": {
                "imageRepositoryIntervalSeconds": self.repository_interval_s,
                "automationIntervalSeconds": self.automation_interval_s,
                "syncIntervalSeconds": self.sync_interval_s,
            },
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Eta:
        basis = doc.get("basis") or {}
        return cls(
            parse_iso(doc["commitBy"]),
            parse_iso(doc["appliedBy"]),
            float(basis.get("imageRepositoryIntervalSeconds", 0)),
            float(basis.get("automationIntervalSeconds", 0)),
            float(basis.get("syncIntervalSeconds", 0)),
        )


@dataclass(frozen=True)
class PolicyVerdict:
    """The verdict for one ImagePolicy that watches the image (an image may have several)."""

    policy: str  # "namespace/name"
    image_repository: str  # "namespace/name"
    verdict: VerdictKind
    reason: str
    selected: str | None = None  # the tag the policy selects once this tag is in the registry
    rule: FilterRule | None = None
    markers: tuple[MarkerChange, ...] = ()
    automations: tuple[str, ...] = ()

    def to_document(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "imageRepository": self.image_repository,
            "verdict": self.verdict,
            "reason": self.reason,
            "selected": self.selected,
            "rule": self.rule,
            "markers": [marker.to_document() for marker in self.markers],
            "automations": list(self.automations),
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> PolicyVerdict:
        return cls(
            policy=str(doc["policy"]),
            image_repository=str(doc.get("imageRepository") or ""),
            verdict=cast(VerdictKind, doc["verdict"]),
            reason=str(doc.get("reason") or ""),
            selected=doc.get("selected"),
            rule=doc.get("rule"),
            markers=tuple(MarkerChange.from_document(item) for item in doc.get("markers") or ()),
            automations=tuple(str(item) for item in doc.get("automations") or ()),
        )


@dataclass(frozen=True)
class Verdict:
    """The answer for one `image:tag` at one commit: the deciding policy's verdict, and all of them."""

    ref: ImageRef
    verdict: VerdictKind
    reason: str
    commit: CommitId
    branch: str
    policies: tuple[PolicyVerdict, ...] = ()
    eta: Eta | None = None
    warnings: tuple[str, ...] = ()

    @property
    def markers(self) -> tuple[MarkerChange, ...]:
        """Every field that will change, over the policies that will roll out."""
        return tuple(
            marker
            for policy in self.policies
            if policy.verdict == "will-roll-out"
            for marker in policy.markers
        )

    @property
    def rolls_out(self) -> bool:
        return self.verdict == "will-roll-out"


@dataclass(frozen=True)
class PanelReport:
    """What ARM says about one panel and its Flux configuration (from the agent's last report)."""

    name: str
    id: str
    connectivity: str  # connectedClusters connectivityStatus: Connected | Connecting | Offline | Expired...
    configured: bool  # the Flux configuration exists on this panel
    suspended: bool = False
    compliance_state: str = "Unknown"
    synced_commit: str | None = None  # the sha from sourceSyncedCommitId ("main/<sha>")
    error: str | None = None  # errorMessage or the failing condition's message, already scrubbed

    @property
    def online(self) -> bool:
        return self.connectivity in ("Connected", "Connecting")


@dataclass(frozen=True)
class PanelOutcome:
    name: str
    state: PanelState
    detail: str = ""

    def to_document(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "detail": self.detail}


@dataclass(frozen=True)
class FollowUp:
    """The later check that the automation committed and the panels applied the commit."""

    status: FollowUpStatus
    attempts: int = 0
    next_check_at: datetime | None = None
    outcome: FollowUpOutcome | None = None
    reason: str = ""
    checked_at: datetime | None = None
    commit: CommitId | None = None  # the automation commit that wrote the tag
    panels_total: int = 0
    panels_applied: int = 0
    # Counts by state over every panel, and the first `MAX_LISTED_PANELS` panels that have not
    # applied the commit (a 10,000-panel fleet must still fit in one Table entity).
    panel_states: Mapping[str, int] = field(default_factory=dict)
    not_applied: tuple[PanelOutcome, ...] = ()
    # The cluster that made the automation commit: the one image-automation runner (issue 15), the only
    # cluster whose image-automation-controller runs and whose credential can push.
    committed_by: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"

    def to_document(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "attempts": self.attempts,
            "nextCheckAt": format_time(self.next_check_at) if self.next_check_at else None,
            "outcome": self.outcome,
            "reason": self.reason,
            "checkedAt": format_time(self.checked_at) if self.checked_at else None,
            "commit": self.commit,
            "committedBy": self.committed_by,
            "panels": {
                "total": self.panels_total,
                "applied": self.panels_applied,
                "byState": dict(self.panel_states),
                "notApplied": [panel.to_document() for panel in self.not_applied],
            },
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> FollowUp:
        panels = doc.get("panels") or {}
        return cls(
            status=cast(FollowUpStatus, doc.get("status") or "scheduled"),
            attempts=int(doc.get("attempts") or 0),
            next_check_at=parse_iso(doc["nextCheckAt"]) if doc.get("nextCheckAt") else None,
            outcome=doc.get("outcome"),
            reason=str(doc.get("reason") or ""),
            checked_at=parse_iso(doc["checkedAt"]) if doc.get("checkedAt") else None,
            commit=CommitId(doc["commit"]) if doc.get("commit") else None,
            panels_total=int(panels.get("total") or 0),
            panels_applied=int(panels.get("applied") or 0),
            panel_states={str(k): int(v) for k, v in (panels.get("byState") or {}).items()},
            not_applied=tuple(
                PanelOutcome(
                    str(item["name"]), cast(PanelState, item["state"]), str(item.get("detail") or "")
                )
                for item in panels.get("notApplied") or ()
            ),
            committed_by=str(doc["committedBy"]) if doc.get("committedBy") else None,
        )


@dataclass(frozen=True)
class CheckRecord:
    """A stored check: the verdict, who or what asked, and the follow-up (None when there is none)."""

    id: CheckId
    verdict: Verdict
    trigger: Trigger
    created_at: datetime
    event_id: str | None = None
    requested_by: str | None = None
    follow_up: FollowUp | None = None

    def with_follow_up(self, follow_up: FollowUp) -> CheckRecord:
        return replace(self, follow_up=follow_up)

    def to_document(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "id": self.id,
            "image": verdict.ref.image,
            "tag": verdict.ref.tag,
            "digest": verdict.ref.digest,
            "verdict": verdict.verdict,
            "reason": verdict.reason,
            "markers": [marker.to_document() for marker in verdict.markers],
            "eta": verdict.eta.to_document() if verdict.eta else None,
            "followUp": self.follow_up.to_document() if self.follow_up else None,
            "policies": [policy.to_document() for policy in verdict.policies],
            "warnings": list(verdict.warnings),
            "commit": verdict.commit,
            "branch": verdict.branch,
            "trigger": self.trigger,
            "eventId": self.event_id,
            "requestedBy": self.requested_by,
            "createdAt": format_time(self.created_at),
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> CheckRecord:
        verdict = Verdict(
            ref=ImageRef(str(doc["image"]), str(doc["tag"]), doc.get("digest")),
            verdict=cast(VerdictKind, doc["verdict"]),
            reason=str(doc.get("reason") or ""),
            commit=CommitId(str(doc.get("commit") or "")),
            branch=str(doc.get("branch") or ""),
            policies=tuple(PolicyVerdict.from_document(item) for item in doc.get("policies") or ()),
            eta=Eta.from_document(doc["eta"]) if doc.get("eta") else None,
            warnings=tuple(str(item) for item in doc.get("warnings") or ()),
        )
        return cls(
            id=CheckId(str(doc["id"])),
            verdict=verdict,
            trigger=cast(Trigger, doc.get("trigger") or "push"),
            created_at=parse_iso(str(doc["createdAt"])),
            event_id=doc.get("eventId"),
            requested_by=doc.get("requestedBy"),
            follow_up=FollowUp.from_document(doc["followUp"]) if doc.get("followUp") else None,
        )


def summarise_panels(outcomes: Sequence[PanelOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.state] = counts.get(outcome.state, 0) + 1
    return counts


# --- what the image ports exchange ------------------------------------------------------------------
@dataclass(frozen=True)
class RepoFile:
    """A file (blob) in a commit: repo-relative path without a leading `/`, and its Git object id."""

    path: str
    object_id: str


@dataclass(frozen=True)
class StoredCheck:
    record: CheckRecord
    etag: str


class FollowUpMessage(TypedDict):
    """The follow-up queue's message: which check, and which attempt this delivery is."""

    checkId: str
    attempt: int


def parse_follow_up_message(raw: Mapping[str, Any]) -> FollowUpMessage:
    """A follow-up message (its JSON object) as the queue trigger receives it; `ValueError` when it is
    not one."""
    check_id, attempt = raw.get("checkId"), raw.get("attempt")
    if not isinstance(check_id, str) or split_check_id(check_id) is None:
        raise ValueError("checkId is missing or malformed")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise ValueError("attempt must be a positive integer")
    return {"checkId": check_id, "attempt": attempt}
