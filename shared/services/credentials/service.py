# Over 500 lines: the entry points of both credentials (rollout, events, timer, map, migration) share state.
"""The credential capability's entry points: what the timer, Key Vault events and HTTP routes call.

- `start_rollout`: preflight a version, then hand it to the fleet-change engine (one mechanism for every
  fleet-wide change) as a `credential-rollout` operation. A version that fails preflight is never
  rolled out; the reason is returned (HTTP 422), logged, and sent to the webhook.
- `on_secret_event`: `SecretNewVersionCreated` rolls the new version out; `SecretNearExpiry` and
  `SecretExpired` run the expiry warnings.
- `run_scheduled_check` (daily timer): expiry warnings, then a rollout of the current version to every
  panel not proven on it — which is also how the credential map is first established, and how a
  panel the app lost track of is brought back. A rollout that halted is not retried automatically:
  it failed for a reason a person must look at.
- `report`: the credential map for `GET /api/credentials`.
- `workload_identity_report` and `start_migration`: the way off PATs.

Two credentials, least privilege (issue 15): one service per `CredentialPurpose`, each over its own
Key Vault secret. The *fleet* credential (read-only) reaches factory panels only — never the
image-automation runner — and the *automation* credential (read & write) the runner only, of which
there must be exactly one. Everything the service reads of the fleet goes through `_scope`, so a
rollout, the daily check, the map and the revocation report of one credential never count the other's
clusters. `CredentialRouter` (shared.services.credentials.router) routes events and timers by secret.

Idempotency: an Event Grid event for a version always maps to the same engine idempotency key, so a
duplicate delivery returns the same operation; a rollout of a version to panels already proven on it
writes nothing to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import Conflict, InvalidInput, NotFound, PermanentError, TransientError, Unprocessable
from shared.models import OperationId, Panel, Selector
from shared.models.credentials import (
    CredentialPurpose,
    ExpiryWarning,
    PanelCredential,
    PreflightReport,
    SecretVersionId,
    SecretVersionInfo,
    SecretVersions,
)
from shared.models.runner import RunnerSelector
from shared.ports import Notifier, PanelDirectory
from shared.services.credentials.expiry import send_expiry_warnings
from shared.services.credentials.keyvault_events import SecretEvent, SecretEventKind
from shared.services.credentials.migration import MIGRATION_KIND
from shared.services.credentials.ports import (
    CredentialLedger,
    GitProbe,
    SecretStore,
    WorkloadIdentityReader,
)
from shared.services.credentials.preflight import run_preflight
from shared.services.credentials.report import build_report, classify
from shared.services.credentials.rollout import ROLLOUT_KIND, RolloutParams
from shared.services.credentials.scope import rollout_panels, scope_panels
from shared.services.credentials.workload_identity import assess
from shared.services.fleet.engine import FleetChangeEngine
from shared.services.fleet.intake import StartResult
from shared.services.fleet.selection import filter_panels
from shared.timestamps import format_time

log = logging.getLogger("fluxfleet.credentials")

# Who started a rollout that no person asked for, as the audit trail shows it.
EVENT_REQUESTER = "keyvault-event"
TIMER_REQUESTER = "scheduled-check"
SETTLED_FOR_REPORT = frozenset({"proven", "workload-identity"})


@dataclass(frozen=True)
class CredentialSettings:
    """The settings this capability reads (from `shared.config.Settings`)."""

    secret_name: str
    git_url: str
    https_user: str
    rings: tuple[str, ...]
    ring_threshold: float
    warning_days: tuple[int, ...]
    purpose: CredentialPurpose = CredentialPurpose.FLEET
    runner: RunnerSelector = field(default_factory=RunnerSelector)


@dataclass(frozen=True)
class RolloutRequest:
    reason: str
    requested_by: str
    trigger: str  # api | event | timer
    version: SecretVersionId | None = None  # None: the current (newest enabled) version
    selection: Selector | None = None  # None (and no panels): the whole fleet
    panels: Sequence[Panel] | None = None
    dry_run: bool = False
    idempotency_key: str | None = None
    purpose: CredentialPurpose = CredentialPurpose.FLEET  # which credential (the router picks the service)


@dataclass(frozen=True)
class RolloutStarted:
    version: SecretVersionInfo
    preflight: PreflightReport
    result: StartResult


@dataclass(frozen=True)
class MigrationRequest:
    reason: str
    requested_by: str
    selection: Selector
    dry_run: bool = False
    idempotency_key: str | None = None


@dataclass(frozen=True)
class MigrationStarted:
    result: StartResult | None  # None when no selected panel is ready
    not_ready: list[dict[str, Any]] = field(default_factory=list)


class PreflightRefused(Unprocessable):
    """The version failed preflight: nothing was rolled out."""

    code = "PreflightFailed"


@dataclass
class CredentialService:
    settings: CredentialSettings
    secrets: SecretStore
    probe: GitProbe
    ledger: CredentialLedger
    notifier: Notifier
    engine: FleetChangeEngine
    directory: PanelDirectory
    readiness: WorkloadIdentityReader | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    # --- preflight and rollout --------------------------------------------------------------------
    def preflight(self, version: SecretVersionInfo, *, now: datetime) -> PreflightReport:
        report = run_preflight(
            version=version,
            now=now,
            read_value=self.secrets.read_value,
            probe=self.probe,
            git_url=self.settings.git_url,
            https_user=self.settings.https_user,
            warn_below_days=min(self.settings.warning_days, default=0),
            purpose=self.settings.purpose,
        )
        self.ledger.save_preflight(report)
        return report

    def start_rollout(self, request: RolloutRequest) -> RolloutStarted:
        versions = self.secrets.list_versions()
        target = self._target_version(versions, request.version)
        report = self.preflight(target, now=versions.observed_at)
        if not report.passed:
            self._refused(report, request)
        current = versions.current
        if current is None or current.version != target.version:
            raise Unprocessable(
                "version",
                f"{target.version} is not the current version of {versions.name} "
                f"({current.version if current else 'none is enabled'}): only the newest enabled version is "
                "rolled out; disable newer versions in Key Vault to roll back",
            )
        for warning in report.warnings:
            log.warning("preflight of %s: %s", target.version, warning, extra={"version": target.version})
        panels = self._rollout_panels(request)
        params = RolloutParams(
            secret=versions.name,
            version=target.version,
            https_user=self.settings.https_user,
            rings=self.settings.rings,
            ring_threshold=self.settings.ring_threshold,
            trigger=request.trigger,
        ).to_json()
        try:
            result = self.engine.start(
                kind=ROLLOUT_KIND,
                params=params,
                reason=request.reason,
                requested_by=request.requested_by,
                selection=request.selection or Selector(all=True),
                panels=panels,
                idempotency_key=request.idempotency_key,
                dry_run=request.dry_run,
            )
        except Conflict as conflict:
            running = self._same_rollout_running(conflict, versions.name, target.version)
            if running is None:
                raise
            # The same version already rolling out (the Key Vault event got there first) is what the
            # caller asked for: answer with that operation, as for a replayed request.
            result = running
        if result.created and result.operation_id is not None:
            self.ledger.save_rollout(
                versions.name,
                target.version,
                {
                    "operationId": result.operation_id,
                    "kind": ROLLOUT_KIND,
                    "trigger": request.trigger,
                    "requestedBy": request.requested_by,
                    "reason": request.reason,
                    "startedAt": format_time(self.clock()),
                },
            )
            log.info(
                "credential rollout of %s version %s started as %s (%s)",
                versions.name,
                target.version,
                result.operation_id,
                request.trigger,
                extra={"operation_id": result.operation_id, "version": target.version},
            )
        return RolloutStarted(version=target, preflight=report, result=result)

    # --- which clusters this credential is for (shared.services.credentials.scope) -----------------
    def panels(self) -> list[Panel]:
        """Every cluster of the fleet this credential is for: factory panels, or the runner."""
        return scope_panels(
            self.directory.panels(), purpose=self.settings.purpose, runner=self.settings.runner
        )

    def _rollout_panels(self, request: RolloutRequest) -> list[Panel]:
        purpose, runner = self.settings.purpose, self.settings.runner
        if request.panels is not None:
            return scope_panels(request.panels, purpose=purpose, runner=runner)
        return rollout_panels(
            self.directory.panels(), selection=request.selection, purpose=purpose, runner=runner
        )

    def _same_rollout_running(self, conflict: Conflict, secret: str, version: str) -> StartResult | None:
        """The running operation a rollout conflicted with, when it rolls out this very version."""
        holder = conflict.context.get("operationId")
        if not isinstance(holder, str):
            return None
        try:
            document = self.engine.get_operation(holder)
        except NotFound:
            return None
        params = document.get("params") or {}
        same = (
            document.get("kind") == ROLLOUT_KIND
            and params.get("secret") == secret
            and params.get("version") == version
            and document.get("status") == "running"
        )
        return (
            StartResult(operation_id=OperationId(holder), document=document, created=False) if same else None
        )

    def _target_version(self, versions: SecretVersions, version: SecretVersionId | None) -> SecretVersionInfo:
        if version is None:
            if versions.current is None:
                raise Unprocessable("version", f"Key Vault secret {versions.name} has no enabled version")
            return versions.current
        found = versions.find(version)
        if found is None:
            raise Unprocessable("version", f"Key Vault secret {versions.name} has no version {version}")
        return found

    def _refused(self, report: PreflightReport, request: RolloutRequest) -> None:
        reasons = "; ".join(report.reasons)
        if not request.dry_run:
            log.error(
                "version %s of %s refused at preflight: %s",
                report.version,
                report.secret,
                reasons,
                extra={"version": report.version, "trigger": request.trigger},
            )
            self._notify(
                title="New Flux PAT refused at preflight: nothing was rolled out",
                text=reasons,
                level="error",
                facts={
                    "secret": report.secret,
                    "purpose": self.settings.purpose.value,
                    "version": report.version,
                    "trigger": request.trigger,
                },
            )
        if report.retryable:
            raise TransientError(
                f"version {report.version} could not be tested: {reasons}", preflight=report.to_json()
            )
        raise PreflightRefused(
            "version", f"{report.version} failed preflight: {reasons}", preflight=report.to_json()
        )

    # --- Key Vault events -------------------------------------------------------------------------
    def on_secret_event(self, event: SecretEvent) -> str:
        """Handle one Key Vault event; returns what was done (for the invocation log)."""
        if event.secret_name.lower() != self.settings.secret_name.lower():
            return f"ignored: secret {event.secret_name} is not {self.settings.secret_name}"
        if event.kind is SecretEventKind.NEW_VERSION:
            return self._rollout_new_version(event)
        versions = self.secrets.list_versions()
        now = (
            versions.observed_at if event.event_time is None else max(versions.observed_at, event.event_time)
        )
        sent = self.check_expiry(versions, now=now, extra_versions=(event.version,))
        return f"{len(sent)} expiry warning(s) sent"

    def _rollout_new_version(self, event: SecretEvent) -> str:
        request = RolloutRequest(
            reason=f"Key Vault created version {event.version} of {event.secret_name}",
            requested_by=EVENT_REQUESTER,
            trigger="event",
            version=event.version,
            idempotency_key=f"credential-rollout:{event.secret_name.lower()}:{event.version.lower()}",
        )
        try:
            started = self.start_rollout(request)
        except PreflightRefused:
            return f"version {event.version} refused at preflight"
        except Unprocessable as exc:
            log.info("event for version %s not rolled out: %s", event.version, exc.message)
            return f"not rolled out: {exc.message}"
        except Conflict as exc:
            if exc.context.get("field") == "target":
                # Another credential operation holds panels: Event Grid redelivers with backoff.
                raise TransientError(f"version {event.version} waits: {exc.message}") from exc
            raise
        return f"rollout {started.result.operation_id} of version {event.version}"

    # --- the daily check --------------------------------------------------------------------------
    def run_scheduled_check(self) -> dict[str, Any]:
        versions = self.secrets.list_versions()
        records = self.ledger.panel_credentials(versions.name)
        warnings = self.check_expiry(versions, now=versions.observed_at, records=records)
        outcome: dict[str, Any] = {"warnings": [w.threshold_days for w in warnings]}
        current = versions.current
        if current is None:
            log.error("Key Vault secret %s has no enabled version: nothing to roll out", versions.name)
            outcome["rollout"] = "no enabled version"
            return outcome
        by_key = {_record_key(record): record for record in records}
        panels = self.panels()
        unproven = [
            p for p in panels if classify(by_key.get(p.key), current.version) not in SETTLED_FOR_REPORT
        ]
        if not unproven:
            outcome["rollout"] = f"every panel is proven on version {current.version}"
            return outcome
        tracked = self._tracked_by_last_rollout(versions.name, current.version)
        if tracked is None:
            outcome["rollout"] = "a rollout of the current version is running or halted; not started again"
            return outcome
        unproven = [p for p in unproven if p.key not in tracked]
        if not unproven:
            outcome["rollout"] = "the last rollout still tracks every unproven (offline) panel"
            return outcome
        try:
            started = self.start_rollout(
                RolloutRequest(
                    reason=f"scheduled check: panels not proven on version {current.version}",
                    requested_by=TIMER_REQUESTER,
                    trigger="timer",
                    version=current.version,
                    panels=unproven,
                )
            )
        except (PreflightRefused, Conflict) as exc:
            outcome["rollout"] = f"not started: {exc.message}"
            return outcome
        outcome["rollout"] = f"started {started.result.operation_id} for {len(unproven)} panel(s)"
        return outcome

    def _tracked_by_last_rollout(self, secret: str, version: SecretVersionId) -> set[str] | None:
        """Keys of panels the last rollout of `version` still tracks; None when it is running or halted."""
        record = self.ledger.rollout(secret, version)
        operation_id = (record or {}).get("operationId")
        if not operation_id:
            return set()
        try:
            document = self.engine.get_operation(str(operation_id))
        except PermanentError:
            return set()
        if document["status"] == "running" or document.get("haltedReason") or (record or {}).get("halted"):
            return None
        from shared.models import cluster_key

        return {
            cluster_key(c["subscription"], c["resourceGroup"], c["name"])
            for c in document["clusters"]
            if c["state"] == "pending-offline"
        }

    # --- expiry warnings --------------------------------------------------------------------------
    def check_expiry(
        self,
        versions: SecretVersions,
        *,
        now: datetime,
        records: Sequence[PanelCredential] | None = None,
        extra_versions: Sequence[str] = (),
    ) -> list[ExpiryWarning]:
        """Warn about the current version and every older one a panel still depends on."""
        if records is None:
            records = self.ledger.panel_credentials(versions.name)
        return send_expiry_warnings(
            versions,
            now=now,
            records=records,
            thresholds=self.settings.warning_days,
            ledger=self.ledger,
            notifier=self.notifier,
            extra_versions=extra_versions,
        )

    def _notify(self, *, title: str, text: str, level: str, facts: dict[str, str]) -> None:
        try:
            self.notifier.notify(title=title, text=text, level=level, facts=facts)
        except (TransientError, PermanentError) as exc:
            log.warning("webhook notification failed: %s", exc.message)

    # --- reports ----------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        versions = self.secrets.list_versions()
        panels = self.panels()
        records = self.ledger.panel_credentials(versions.name)
        current = versions.current
        rollout: dict[str, Any] | None = None
        warnings_sent: Sequence[int] = ()
        preflight: PreflightReport | None = None
        if current is not None:
            rollout = self._rollout_summary(versions.name, current.version)
            warnings_sent = self.ledger.sent_warnings(versions.name, current.version)
            preflight = self.ledger.preflight(versions.name, current.version)
        body = build_report(
            versions=versions, panels=panels, records=records, rollout=rollout, warnings_sent=warnings_sent
        )
        if body["current"] is not None:
            body["current"]["preflight"] = preflight.to_json() if preflight else None
        return {"purpose": self.settings.purpose.value, **body}

    def _rollout_summary(self, secret: str, version: SecretVersionId) -> dict[str, Any] | None:
        record = self.ledger.rollout(secret, version)
        if not record or not record.get("operationId"):
            return None
        summary = {k: record.get(k) for k in ("operationId", "trigger", "requestedBy", "reason", "startedAt")}
        summary["statusUrl"] = f"/api/operations/{record['operationId']}"
        try:
            document = self.engine.get_operation(str(record["operationId"]))
        except PermanentError:
            summary["status"] = "unknown"
            return summary
        summary.update(
            status=document["status"],
            currentStage=document.get("currentStage"),
            haltedReason=document.get("haltedReason"),
            summary=document["summary"],
        )
        return summary

    def workload_identity_report(self, selection: Selector | None) -> dict[str, Any]:
        panels = self._select(selection)
        reader = self._require_readiness()
        facts = reader.facts(panels=panels)
        records = {_record_key(r): r for r in self.ledger.panel_credentials(self.settings.secret_name)}
        rows: list[dict[str, Any]] = []
        for panel in sorted(panels, key=lambda p: p.key):
            fact = facts.get(panel.key)
            readiness = assess(fact) if fact else None
            record = records.get(panel.key)
            rows.append(
                {
                    "id": panel.id,
                    "name": panel.name,
                    "ring": panel.tag("ring"),
                    "ready": bool(readiness and readiness.ready),
                    "reasons": list(readiness.reasons)
                    if readiness
                    else ["ARM did not answer for this panel"],
                    "fluxExtensionVersion": fact.flux_extension_version if fact else None,
                    "workloadIdentityEnabled": fact.workload_identity_enabled if fact else None,
                    "oidcIssuerEnabled": fact.oidc_issuer_enabled if fact else None,
                    "onWorkloadIdentity": classify(record, None) == "workload-identity",
                }
            )
        return {
            "provider": "Azure",
            "requirements": {
                "fluxExtension": ">= 1.15.1",
                "connectedCluster": ["securityProfile.workloadIdentity.enabled", "oidcIssuerProfile.enabled"],
            },
            "summary": {
                "total": len(rows),
                "ready": sum(1 for r in rows if r["ready"] and not r["onWorkloadIdentity"]),
                "notReady": sum(1 for r in rows if not r["ready"] and not r["onWorkloadIdentity"]),
                "onWorkloadIdentity": sum(1 for r in rows if r["onWorkloadIdentity"]),
            },
            "clusters": rows,
        }

    def start_migration(self, request: MigrationRequest) -> MigrationStarted:
        panels = self._select(request.selection)
        facts = self._require_readiness().facts(panels=panels)
        ready: list[Panel] = []
        not_ready: list[dict[str, Any]] = []
        for panel in panels:
            fact = facts.get(panel.key)
            readiness = assess(fact) if fact else None
            if readiness is not None and readiness.ready:
                ready.append(panel)
            else:
                reasons = list(readiness.reasons) if readiness else ["ARM did not answer for this panel"]
                not_ready.append({"id": panel.id, "name": panel.name, "reasons": reasons})
        if not ready:
            return MigrationStarted(result=None, not_ready=not_ready)
        result = self.engine.start(
            kind=MIGRATION_KIND,
            params={
                "secret": self.settings.secret_name,
                "rings": list(self.settings.rings),
                "ringThreshold": self.settings.ring_threshold,
                "trigger": "api",
            },
            reason=request.reason,
            requested_by=request.requested_by,
            selection=request.selection,
            panels=ready,
            idempotency_key=request.idempotency_key,
            dry_run=request.dry_run,
        )
        return MigrationStarted(result=result, not_ready=not_ready)

    def _select(self, selection: Selector | None) -> list[Panel]:
        panels = self.panels()
        return panels if selection is None or selection.all else filter_panels(panels, selection)

    def _require_readiness(self) -> WorkloadIdentityReader:
        if self.readiness is None:
            raise InvalidInput("target", "workload-identity readiness is not available in this deployment")
        return self.readiness


def _record_key(record: PanelCredential) -> str:
    from shared.models import cluster_key, parse_cluster_id

    try:
        return cluster_key(*parse_cluster_id(record.panel_id))
    except ValueError:
        return record.panel_id.lower()
