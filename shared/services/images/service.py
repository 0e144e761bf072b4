"""Image checks: verdicts on pushes and preflights, follow-ups, and the read side of the API.

One service behind four triggers. `handle_push` (Event Grid) and `preflight` (HTTP) give the same
verdict; a push is also recorded once per event id (Event Grid delivers at least once), followed up
when it should roll out, and announced when it will not. `follow_up` (queue) re-checks Git and the
panels after the ETA, a bounded number of times. `current_latest` and the check reads serve the API.

Latency: a push needs the branch HEAD (Azure DevOps, re-read at most once a second, concurrently
with the rest) and the tag list (ACR); the repository snapshot of a known HEAD is cached, so a
verdict costs one registry listing plus one Table insert. The follow-up message is queued after
the verdict is stored.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.config import Settings
from shared.errors import Conflict, FluxfleetError, NotFound, safe_text
from shared.image_policy import (
    normalise_image,
)
from shared.models.images import (
    SHORT_SHA,
    CheckId,
    CheckRecord,
    CommitId,
    FollowUp,
    FollowUpOutcome,
    ImageRef,
    PushedImage,
    StoredCheck,
    Verdict,
    make_check_id,
    summarise_panels,
)
from shared.ports import Notifier
from shared.services.images.followup import (
    MAX_LISTED_PANELS,
    classify_panels,
    commits_since,
    holds_changes,
    not_applied_reason,
    snapshot_holds,
)
from shared.services.images.latest import PolicyStatus, policy_statuses
from shared.services.images.notifications import Notice, follow_up_notice, verdict_notice
from shared.services.images.ports import (
    CheckStore,
    FollowUpQueue,
    PanelReports,
    RepoReader,
    TagLister,
)
from shared.services.images.snapshot import RepoSnapshot, RepoSnapshots
from shared.services.images.verdict import judge
from shared.timestamps import format_time

log = logging.getLogger("fluxfleet.images")

# Azure Queue storage refuses a visibility timeout longer than 7 days.
MAX_QUEUE_DELAY_S = 7 * 24 * 3600
# Commits of the branch read to decide whether a panel's commit is at or after the automation's.
HISTORY_DEPTH = 200
# Commits touching a marker file walked back to find the one that wrote the tag.
LANDING_DEPTH = 50
# File texts by (path, commit) read while looking for the landing commit.
_FILE_CACHE_SIZE = 256
# Event ids this worker processed, remembered to answer Event Grid's redeliveries without I/O; a
# redelivery comes within minutes, long before a thousand other events pass.
RECENT_EVENTS_KEPT = 1024
# Hex digits of SHA-256(event id) in a push check id: enough to never collide within one millisecond.
_EVENT_SALT_HEX = 8


@dataclass(frozen=True)
class ImageCheckConfig:
    """The settings the checks use (from `shared.config.Settings`; the defaults here are the Settings
    defaults, documented there)."""

    branch: str = "main"
    login_server: str | None = None
    sync_interval_s: float = 300.0
    follow_up_margin_s: float = 120.0
    follow_up_max_checks: int = 6
    follow_up_recheck_s: float = 300.0
    # A push verdict may use a branch HEAD read up to this long ago (seconds). A verdict predicts what
    # the automation will do at its next run, minutes later, at whatever HEAD is then; a second of
    # staleness changes that prediction no more than a commit a second *after* the push would, and
    # the follow-up checks what really happened. Pushes come in bursts (a pipeline pushes every image
    # of a release), and one HEAD read per second serves the whole burst. The verdict names the
    # commit it judged. Preflights and follow-ups always read HEAD afresh.
    head_max_age_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageCheckConfig:
        return cls(
            branch=settings.git_branch,
            login_server=settings.acr_login_server,
            sync_interval_s=settings.flux_sync_interval_seconds,
            follow_up_margin_s=settings.images_follow_up_margin_seconds,
            follow_up_max_checks=settings.images_follow_up_max_checks,
            follow_up_recheck_s=settings.images_follow_up_recheck_seconds,
        )


@dataclass(frozen=True)
class PushOutcome:
    record: CheckRecord
    duplicate: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ImageChecks:
    def __init__(
        self,
        *,
        reader: RepoReader,
        registry: TagLister,
        store: CheckStore,
        follow_ups: FollowUpQueue,
        panels: PanelReports,
        notifier: Notifier,
        config: ImageCheckConfig,
        executor: Executor,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._reader = reader
        self._registry = registry
        self._store = store
        self._follow_ups = follow_ups
        self._panels = panels
        self._notifier = notifier
        self._config = config
        self._executor = executor
        self._clock = clock
        self.snapshots = RepoSnapshots(reader=reader, executor=executor)
        self._files: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._files_lock = threading.Lock()
        self._head_cache: tuple[CommitId, float] | None = None  # (sha, monotonic time of the read)
        self._head_lock = threading.Lock()
        self._recent_events: OrderedDict[str, None] = OrderedDict()
        self._events_lock = threading.Lock()

    # --- verdicts -------------------------------------------------------------------------------
    def handle_push(self, pushed: PushedImage) -> PushOutcome:
        """Judge a pushed tag once per event id; store it, schedule its follow-up, announce bad news.

        The check id derives from the event id and the store is insert-only, so of two deliveries of
        one event only the first stores a check, queues a follow-up and notifies; the other returns
        that check. A redelivery this worker has seen recently is answered without any remote call.
        """
        ref = pushed.ref
        canonical = normalise_image(ref.image)
        salt = hashlib.sha256(pushed.event_id.encode()).hexdigest()[:_EVENT_SALT_HEX]
        check_id = make_check_id(canonical_image=canonical, created_at=pushed.pushed_at, salt=salt)
        if self._recently_seen(pushed.event_id):
            stored = self._store.get_check(check_id=check_id)
            if stored is not None:
                return self._duplicate(pushed, stored)
        head_future = self._executor.submit(self._head, max_age_s=self._config.head_max_age_s)
        tags = self._list_tags(ref)
        verdict = self._judge(ref, head_future.result(), tags, pushed.pushed_at)
        record = CheckRecord(
            id=check_id,
            verdict=verdict,
            trigger="push",
            created_at=pushed.pushed_at,
            event_id=pushed.event_id,
            follow_up=self._first_follow_up(verdict),
        )
        existing = self._store.create_check(record=record, image=canonical)
        if existing is not None:
            self._ensure_first_follow_up(existing.record)
            return self._duplicate(pushed, existing)
        try:
            self._ensure_first_follow_up(record)
        except FluxfleetError:
            self._store.delete_check(check_id=record.id)  # both or neither: the redelivery starts afresh
            raise
        self._remember(pushed.event_id)
        log.info(
            "verdict %s for %s: %s",
            verdict.verdict,
            ref,
            verdict.reason,
            extra={"event_id": pushed.event_id, "check_id": check_id, "verdict": verdict.verdict},
        )
        self._announce(verdict_notice(record))
        return PushOutcome(record, duplicate=False)

    def _ensure_first_follow_up(self, record: CheckRecord) -> None:
        """Queue the first follow-up of a check that has not had one yet.

        Also called for a duplicate: its first delivery may have stored the check and died before
        queueing. A second message is harmless; the follow-up ignores attempts it has made.
        """
        follow_up = record.follow_up
        if follow_up is None or follow_up.done or follow_up.attempts > 0 or follow_up.next_check_at is None:
            return
        delay = max(0.0, (follow_up.next_check_at - self._clock()).total_seconds())
        self._follow_ups.schedule(check_id=record.id, attempt=1, delay_s=delay)

    def _recently_seen(self, event_id: str) -> bool:
        with self._events_lock:
            return event_id in self._recent_events

    def _remember(self, event_id: str) -> None:
        with self._events_lock:
            self._recent_events[event_id] = None
            while len(self._recent_events) > RECENT_EVENTS_KEPT:
                self._recent_events.popitem(last=False)

    def _duplicate(self, pushed: PushedImage, stored: StoredCheck) -> PushOutcome:
        log.info(
            "duplicate delivery of event %s ignored",
            pushed.event_id,
            extra={"event_id": pushed.event_id, "check_id": stored.record.id},
        )
        return PushOutcome(stored.record, duplicate=True)

    def preflight(self, *, ref: ImageRef, requested_by: str) -> CheckRecord:
        """The verdict for a tag before it is pushed (recorded; no follow-up, no webhook)."""
        canonical = normalise_image(ref.image)
        now = self._clock()
        head_future = self._executor.submit(self._head, max_age_s=0.0)
        tags = self._list_tags(ref)
        verdict = self._judge(ref, head_future.result(), tags, now)
        record = CheckRecord(
            id=make_check_id(canonical_image=canonical, created_at=now, salt=secrets.token_hex(4)),
            verdict=verdict,
            trigger="preflight",
            created_at=now,
            requested_by=requested_by,
        )
        self._store.create_check(record=record, image=canonical)
        return record

    def _head(self, *, max_age_s: float) -> CommitId:
        """The tracked branch's HEAD, re-read unless the last read started less than `max_age_s` ago."""
        started = time.monotonic()
        with self._head_lock:
            cached = self._head_cache
        if cached is not None and started - cached[1] <= max_age_s:
            return cached[0]
        head = self._reader.head_commit(branch=self._config.branch)
        with self._head_lock:
            if self._head_cache is None or self._head_cache[1] < started:
                self._head_cache = (head, started)
        return head

    def _judge(self, ref: ImageRef, head: CommitId, tags: Sequence[str], at: datetime) -> Verdict:
        snapshot = self.snapshots.at(head)
        verdict = judge(
            snapshot=snapshot,
            ref=ref,
            tags=tags,
            branch=self._config.branch,
            pushed_at=at,
            sync_interval_s=self._config.sync_interval_s,
        )
        if not self._is_our_registry(ref):
            note = (
                f"{ref.registry} is not the configured registry ({self._config.login_server}); "
                "its tags could not be listed, so only the pushed tag was considered"
            )
            verdict = replace(verdict, warnings=(*verdict.warnings, note))
        return verdict

    def _is_our_registry(self, ref: ImageRef) -> bool:
        login_server = self._config.login_server
        return login_server is None or ref.registry.lower() == login_server.lower()

    def _list_tags(self, ref: ImageRef) -> Sequence[str]:
        if not self._is_our_registry(ref):
            return ()
        try:
            return self._registry.list_tags(repository=ref.repository)
        except NotFound:
            return ()  # a repository with no image yet (a preflight before the first push)

    def _first_follow_up(self, verdict: Verdict) -> FollowUp | None:
        if not verdict.rolls_out:
            return None
        now = self._clock()
        due = verdict.eta.applied_by if verdict.eta else now
        delay = max(0.0, (due - now).total_seconds()) + self._config.follow_up_margin_s
        return FollowUp(
            status="scheduled", next_check_at=now + timedelta(seconds=min(delay, MAX_QUEUE_DELAY_S))
        )

    def _announce(self, notice: Notice | None) -> None:
        if notice is None:
            return
        try:
            self._notifier.notify(
                title=notice.title, text=notice.text, level=notice.level, facts=notice.facts
            )
        except FluxfleetError as error:
            # The record is stored and logged; a webhook outage must not make Event Grid redeliver.
            log.warning("webhook notice failed: %s", error.message)

    # --- follow-up -----------------------------------------------------------------------------
    def follow_up(self, *, check_id: CheckId, attempt: int) -> CheckRecord | None:
        """Re-check a `will-roll-out` check after its ETA: committed? applied by which panels?"""
        stored = self._store.get_check(check_id=check_id)
        if stored is None:
            log.warning("follow-up for unknown check %s dropped", check_id, extra={"check_id": check_id})
            return None
        record, current = stored.record, stored.record.follow_up
        if current is None or current.done or attempt <= current.attempts:
            log.info(
                "stale follow-up %s of check %s ignored", attempt, check_id, extra={"check_id": check_id}
            )
            return record
        verdict = record.verdict
        snapshot = self.snapshots.at(self._head(max_age_s=0.0))
        now = self._clock()
        if snapshot_holds(snapshot, verdict.markers):
            result = self._check_panels(record, snapshot, attempt, now)
        else:
            result = self._check_commit(record, snapshot, attempt, now)
        if not result.done:
            delay = self._config.follow_up_recheck_s
            result = replace(result, next_check_at=now + timedelta(seconds=delay))
            self._follow_ups.schedule(check_id=check_id, attempt=attempt + 1, delay_s=delay)
        updated = record.with_follow_up(result)
        try:
            self._store.update_check(
                record=updated, image=normalise_image(verdict.ref.image), etag=stored.etag
            )
        except Conflict:
            log.info(
                "follow-up %s of check %s lost a race; the other writer's result stands", attempt, check_id
            )
            return None
        log.info(
            "follow-up %s of %s: %s",
            attempt,
            verdict.ref,
            result.outcome or "waiting",
            extra={"check_id": check_id, "outcome": result.outcome, "attempt": attempt},
        )
        self._announce(follow_up_notice(updated))
        return updated

    def _check_commit(
        self, record: CheckRecord, snapshot: RepoSnapshot, attempt: int, now: datetime
    ) -> FollowUp:
        """The markers do not hold the tag yet: wait, or say why it will not come."""
        verdict = record.verdict
        tags = self._list_tags(verdict.ref)
        again = judge(
            snapshot=snapshot,
            ref=verdict.ref,
            tags=tags,
            branch=self._config.branch,
            pushed_at=record.created_at,
            sync_interval_s=self._config.sync_interval_s,
        )
        base = FollowUp(status="scheduled", attempts=attempt, checked_at=now)
        if again.verdict == "not-latest":
            return _final(base, "superseded", f"not committed: {again.reason}")
        if again.verdict == "already-deployed":
            # The markers hold the tag, spelled differently from the prediction (e.g. a moved line).
            return self._check_panels(record, snapshot, attempt, now)
        if again.verdict != "will-roll-out":
            return _final(base, "stuck", f"the automation will not commit it any more: {again.reason}")
        if attempt < self._config.follow_up_max_checks:
            return replace(base, reason=f"not committed yet at {snapshot.commit[:SHORT_SHA]}; checking again")
        eta = verdict.eta
        late = f" (expected by {format_time(eta.commit_by)})" if eta else ""
        cause = (
            f"no automation commit after {attempt} checks{late}, although Git and the registry still "
            f"call for {verdict.ref.tag}. Likely causes: image-reflector-controller and "
            "image-automation-controller are not enabled in the microsoft.flux extension (Arc leaves them "
            "off), the automation's Git credential cannot push (the PAT needs Code Read & Write), or the "
            "controllers cannot reach the registry"
        )
        return _final(base, "stuck", cause)

    def _check_panels(
        self, record: CheckRecord, snapshot: RepoSnapshot, attempt: int, now: datetime
    ) -> FollowUp:
        """The tag is in Git: find the commit that wrote it and count the panels at or after it."""
        landing = self._landing_commit(record, snapshot.commit)
        history = self._reader.recent_commits(branch=self._config.branch, top=HISTORY_DEPTH)
        applied = commits_since(history, landing)
        outcomes = classify_panels(self._panels.panel_reports(), applied)
        not_applied = [outcome for outcome in outcomes if outcome.state != "applied"]
        runners = list(self._panels.runner_names())
        base = FollowUp(
            status="scheduled",
            attempts=attempt,
            checked_at=now,
            commit=CommitId(landing),
            panels_total=len(outcomes),
            panels_applied=len(outcomes) - len(not_applied),
            panel_states=summarise_panels(outcomes),
            not_applied=tuple(not_applied[:MAX_LISTED_PANELS]),
            committed_by=runners[0] if len(runners) == 1 else None,
        )
        if not not_applied:
            whom = (
                f"all {len(outcomes)} panels report"
                if outcomes
                else "committed; no panel runs the configuration, at"
            )
            by = f" (committed by {base.committed_by})" if base.committed_by else ""
            return _final(base, "rolled-out", f"{whom} {landing[:SHORT_SHA]} or later{by}")
        behind = any(outcome.state == "behind" for outcome in not_applied)
        share = f"{base.panels_applied} of {len(outcomes)} panels applied it"
        by = f" by {base.committed_by}" if base.committed_by else ""
        summary = f"committed in {landing[:SHORT_SHA]}{by}; {share}; "
        if behind and attempt < self._config.follow_up_max_checks:
            return replace(base, reason=summary + "waiting for " + not_applied_reason(not_applied))
        return _final(
            base, "committed-not-applied", summary + "not applied: " + not_applied_reason(not_applied)
        )

    def _landing_commit(self, record: CheckRecord, head: CommitId) -> str:
        """The oldest commit in the unbroken run (from HEAD back) whose marker file holds the change."""
        changes = record.verdict.markers
        path = changes[0].file
        in_file = [change for change in changes if change.file == path]
        landing: str = head
        for commit in self._reader.recent_commits(branch=self._config.branch, top=LANDING_DEPTH, path=path):
            text = self._file_at(path, CommitId(commit))
            if text is None or not holds_changes({path: text}, in_file):
                break
            landing = commit
        return landing

    def _file_at(self, path: str, commit: CommitId) -> str | None:
        key = (path, commit)
        with self._files_lock:
            if key in self._files:
                return self._files[key]
        try:
            text: str | None = self._reader.read_file(path=path, commit=commit)
        except NotFound:
            text = None
        with self._files_lock:
            self._files[key] = text
            while len(self._files) > _FILE_CACHE_SIZE:
                self._files.popitem(last=False)
        return text

    # --- reads ----------------------------------------------------------------------------------
    def get_check(self, *, check_id: CheckId) -> CheckRecord:
        stored = self._store.get_check(check_id=check_id)
        if stored is None:
            raise NotFound(f"no image check {safe_text(check_id, limit=80)}", check_id=check_id)
        return stored.record

    def list_checks(self, *, image: str, tag: str | None, limit: int) -> Sequence[CheckRecord]:
        return self._store.list_checks(image=normalise_image(image), tag=tag, limit=limit)

    def current_latest(self) -> list[PolicyStatus]:
        """Every ImagePolicy at HEAD: what Flux selects from the registry now, and what Git holds."""
        snapshot = self.snapshots.at(self._head(max_age_s=0.0))
        return policy_statuses(
            snapshot,
            list_tags=lambda image: self._executor.submit(self._list_tags, ImageRef(image, "")),
        )


def _final(base: FollowUp, outcome: FollowUpOutcome, reason: str) -> FollowUp:
    return replace(base, status="done", outcome=outcome, reason=reason, next_check_at=None)


def _drain(*futures: Future[Any]) -> None:
    """Wait for work that is no longer needed, so its errors do not surface as unhandled."""
    for future in futures:
        try:
            future.result()
        except Exception as error:
            log.debug("discarded concurrent read failed: %s", type(error).__name__)
