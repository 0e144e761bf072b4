"""Starting an operation: validate, select, refuse overlaps, honour `Idempotency-Key`, write, fan out.

Or, for a dry run, read each selected panel's state and say what would change — writing nothing.

Idempotency: a key is claimed in the store (insert-only) *before* the operation is created, with a
hash of the request; a retry with the same key and request finds the claim and answers with that
operation (waiting briefly while the first request is still writing it); the same key with another
request is a 409. A request refused after its claim (overlap, nothing selected) releases the claim, so
the pipeline may retry the same key once the conflict is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import Conflict, FluxfleetError, InvalidInput, NotFound, Unprocessable
from shared.models import (
    FluxState,
    OperationId,
    OperationStatus,
    Panel,
    PanelState,
    Params,
    Selector,
    Stage,
)
from shared.ports import Clock, FleetReader, OperationRecord, OperationStore, PanelDirectory, PanelRecord
from shared.queues import FLEET_APPLY_QUEUE
from shared.services.fleet.documents import (
    DryRunDoc,
    DryRunPanelDoc,
    OperationDoc,
    flux_state_document,
    summarize,
)
from shared.services.fleet.rows import PanelRows
from shared.services.fleet.selection import check_selector, check_subscriptions, select
from shared.services.fleet.strategy import ChangeStrategy

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.services.fleet.engine import EngineSettings

log = logging.getLogger("fluxfleet.fleet")

# Polling the store while a caller waits (waitSeconds, idempotent replays), in seconds.
POLL_INTERVAL_S = 0.5
# How long a replayed Idempotency-Key waits for the first request to finish creating its operation.
REPLAY_WAIT_S = 10.0
# A lock whose operation row does not exist yet belongs to a creation in progress for this long (s).
CREATION_GRACE_S = 60.0
IDEMPOTENCY_SCOPE = "fleet-change"
# A reason is for people reading the audit trail: required, and short.
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class StartResult:
    """What `FleetChangeEngine.start` returns."""

    operation_id: OperationId | None  # None for a dry run
    document: OperationDoc | DryRunDoc
    created: bool  # False for a dry run, and when an Idempotency-Key replay found the existing operation

    @property
    def status(self) -> str:
        """The operation's status (`running`, ...), or `planned` for a dry run."""
        document = self.document
        return "planned" if document.get("dryRun") else str(document.get("status"))


class Intake:
    """`FleetChangeEngine.start`, step by step (the engine looks strategies up and passes one in)."""

    def __init__(
        self,
        *,
        reader: FleetReader,
        directory: PanelDirectory,
        store: OperationStore,
        clock: Clock,
        rows: PanelRows,
        settings: EngineSettings,
        get_operation: Callable[[str], OperationDoc],
    ) -> None:
        self._reader = reader
        self._directory = directory
        self._store = store
        self._clock = clock
        self._rows = rows
        self._settings = settings
        self._get_operation = get_operation

    def start(
        self,
        strategy: ChangeStrategy,
        *,
        params: Params,
        reason: str,
        requested_by: str,
        selection: Selector | None,
        panels: Sequence[Panel] | None,
        configuration: str | None,
        idempotency_key: str | None,
        dry_run: bool,
    ) -> StartResult:
        reason = check_reason(reason)
        params = dict(strategy.validate_params(params))
        configuration = configuration or self._settings.configuration
        chosen, selection = self._choose(selection, panels)
        stages = self._plan(strategy, chosen, params)
        if dry_run:
            return StartResult(
                operation_id=None,
                document=self._dry_run(strategy, stages, params, configuration),
                created=False,
            )
        request_hash = _request_hash(strategy.kind, params, selection, configuration, reason)
        now = self._clock.now()
        operation_id = new_operation_id(now)
        if idempotency_key:
            existing = self._store.claim_idempotency(
                scope=IDEMPOTENCY_SCOPE,
                key=idempotency_key,
                request_hash=request_hash,
                operation_id=operation_id,
            )
            if existing is not None and not self._took_over(
                existing[0], idempotency_key, operation_id=operation_id, request_hash=request_hash
            ):
                return self._replay(existing, request_hash)
        try:
            record = self._create(
                operation_id=operation_id,
                strategy=strategy,
                stages=stages,
                params=params,
                selection=selection,
                configuration=configuration,
                reason=reason,
                requested_by=requested_by,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                now=now,
            )
        except BaseException:
            if idempotency_key:
                self._store.release_idempotency(
                    scope=IDEMPOTENCY_SCOPE, key=idempotency_key, operation_id=operation_id
                )
            raise
        log.info(
            "operation %s (%s) started on %d panels by %s: %s",
            record.id,
            strategy.kind,
            record.total,
            requested_by,
            reason,
            extra={"operation_id": record.id, "kind": strategy.kind},
        )
        return StartResult(operation_id=record.id, document=self._get_operation(record.id), created=True)

    def holds_panels(self, operation_id: str) -> bool:
        """Whether a lock holder still owns its panels: a running operation, or one being created."""
        record = self._store.get_operation(operation_id)
        if record is not None:
            return record.status == OperationStatus.RUNNING.value
        created = operation_created_at(operation_id)
        return created is not None and (self._clock.now() - created).total_seconds() < CREATION_GRACE_S

    # --- steps --------------------------------------------------------------------------------------
    def _choose(
        self, selection: Selector | None, panels: Sequence[Panel] | None
    ) -> tuple[list[Panel], Selector]:
        if panels is not None:
            chosen = list({p.key: p for p in panels}.values())
            if not chosen:
                raise Unprocessable("target", "matches no panel")
            return chosen, selection or Selector(clusters=tuple(p.id for p in chosen))
        if selection is None:
            raise InvalidInput("target", "is required")
        check_selector(selection)
        check_subscriptions(selection, configured=self._settings.subscriptions)
        return select(self._directory.panels(), selection), selection

    @staticmethod
    def _plan(strategy: ChangeStrategy, panels: list[Panel], params: Params) -> list[Stage]:
        stages = [stage for stage in strategy.plan(panels, params) if stage.panels]
        seen: set[str] = set()
        for stage in stages:
            for panel in stage.panels:
                if panel.key in seen:
                    raise ValueError(f"strategy {strategy.kind} planned panel {panel.name} twice")
                seen.add(panel.key)
        if not stages:
            raise Unprocessable("target", "the selected panels give this change nothing to do")
        return stages

    def _create(
        self,
        *,
        operation_id: OperationId,
        strategy: ChangeStrategy,
        stages: list[Stage],
        params: Params,
        selection: Selector,
        configuration: str,
        reason: str,
        requested_by: str,
        idempotency_key: str | None,
        request_hash: str,
        now: datetime,
    ) -> OperationRecord:
        keys = [panel.key for stage in stages for panel in stage.panels]
        holder = self._store.take_locks(
            group=strategy.lock_group, operation_id=operation_id, keys=keys, is_running=self.holds_panels
        )
        if holder is not None:
            raise Conflict(
                f"target: overlaps panels of running operation {holder}; wait for it to finish",
                field="target",
                operationId=holder,
            )
        rows = [
            PanelRecord(
                operation_id=operation_id,
                key=panel.key,
                panel_id=panel.id,
                name=panel.name,
                subscription=panel.subscription,
                resource_group=panel.resource_group,
                stage=index,
                state=PanelState.QUEUED,
                detail="waiting for its stage" if index else "queued",
                updated_at=now,
                tags=dict(panel.tags),
            )
            for index, stage in enumerate(stages)
            for panel in stage.panels
        ]
        record = OperationRecord(
            id=operation_id,
            kind=strategy.kind,
            status=OperationStatus.RUNNING.value,
            reason=reason,
            requested_by=requested_by,
            created_at=now,
            updated_at=now,
            configuration=configuration,
            params=dict(params),
            selection=selection.to_json(),
            stage_names=tuple(stage.name for stage in stages),
            stage_thresholds=tuple(stage.success_threshold for stage in stages),
            total=len(rows),
            summary=summarize(rows),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        self._store.create_operation(record, rows)
        self._rows.enqueue(FLEET_APPLY_QUEUE, record.id, [row.key for row in rows if row.stage == 0], stage=0)
        return record

    def _took_over(self, claimed_by: str, key: str, *, operation_id: str, request_hash: str) -> bool:
        """Take over a key whose claimant died before creating its operation.

        The claim is written before the operation; a process that dies in between leaves a key that
        names nothing. After `CREATION_GRACE_S` (no live request takes that long to create its rows)
        the key is free again, or every retry with it — and the Key Vault event path's fixed key —
        would wait and get 409 forever."""
        if self._store.get_operation(claimed_by) is not None:
            return False
        created = operation_created_at(claimed_by)
        if created is None or (self._clock.now() - created).total_seconds() < CREATION_GRACE_S:
            return False
        taken = self._store.take_over_idempotency(
            scope=IDEMPOTENCY_SCOPE,
            key=key,
            abandoned_id=claimed_by,
            operation_id=operation_id,
            request_hash=request_hash,
        )
        if taken:
            log.warning("Idempotency-Key of abandoned request %s taken over by %s", claimed_by, operation_id)
        return taken

    def _replay(self, existing: tuple[str, str], request_hash: str) -> StartResult:
        existing_id, existing_hash = existing
        if existing_hash != request_hash:
            raise Conflict(
                "Idempotency-Key: already used for a different request",
                field="Idempotency-Key",
                operationId=existing_id,
            )
        # The first request may still be writing its rows: give it a moment.
        deadline = self._clock.monotonic() + REPLAY_WAIT_S
        while self._store.get_operation(existing_id) is None:
            if self._clock.monotonic() > deadline:
                raise Conflict(
                    "Idempotency-Key: the first request with this key is still being processed",
                    field="Idempotency-Key",
                    operationId=existing_id,
                )
            self._clock.sleep(POLL_INTERVAL_S)
        return StartResult(
            operation_id=OperationId(existing_id), document=self._get_operation(existing_id), created=False
        )

    def _dry_run(
        self, strategy: ChangeStrategy, stages: list[Stage], params: Params, configuration: str
    ) -> DryRunDoc:
        jobs = [(stage.name, panel) for stage in stages for panel in stage.panels]

        def look(job: tuple[str, Panel]) -> DryRunPanelDoc:
            stage_name, panel = job
            current: FluxState | None = None
            reason: str
            would_change = False
            try:
                current = self._reader.get_flux_state(panel=panel, configuration=configuration)
                if current is None:
                    reason = f"skipped: no Flux configuration named {configuration}"
                else:
                    would_change = strategy.would_change(panel, current, params)
                    reason = "would change" if would_change else "already as requested"
            except NotFound:
                reason = "skipped: the cluster no longer exists in ARM"
            except FluxfleetError as exc:
                reason = f"could not read its state: {exc.message}"
            return {
                "id": panel.id,
                "name": panel.name,
                "subscription": panel.subscription,
                "resourceGroup": panel.resource_group,
                "stage": stage_name,
                "connectivity": panel.connectivity,
                "wouldChange": would_change,
                "current": flux_state_document(current) if current else None,
                "reason": reason,
            }

        with ThreadPoolExecutor(
            max_workers=self._settings.read_concurrency, thread_name_prefix="dryrun"
        ) as pool:
            clusters = list(pool.map(look, jobs))
        return {
            "dryRun": True,
            "kind": strategy.kind,
            "configuration": configuration,
            "total": len(clusters),
            "wouldChange": sum(1 for c in clusters if c["wouldChange"]),
            "stages": [
                {"name": s.name, "successThreshold": s.success_threshold, "total": len(s.panels)}
                for s in stages
            ],
            "clusters": clusters,
        }


def check_reason(reason: Any) -> str:
    """The audit trail's "why": required, trimmed, at most `MAX_REASON_CHARS`."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("reason", "is required: say why (1-500 characters)")
    text: str = reason.strip()
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput("reason", f"must be at most {MAX_REASON_CHARS} characters, got {len(text)}")
    return text


def new_operation_id(now: datetime) -> OperationId:
    """Time-ordered and unguessable: `20260820T101530Z-3f9c2a1b7d`."""
    return OperationId(f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(5)}")


def operation_created_at(operation_id: str) -> datetime | None:
    try:
        return datetime.strptime(operation_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _request_hash(kind: str, params: Params, selection: Selector, configuration: str, reason: str) -> str:
    canonical = json.dumps(
        {
            "kind": kind,
            "params": params,
            "target": selection.to_json(),
            "configuration": configuration,
            "reason": reason,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
