"""Rolling a Key Vault version of the PAT out to the fleet: a `ChangeStrategy` of the fleet-change engine.

The engine (shared.services.fleet) does what every fleet-wide change needs — stages, rings,
queue fan-out, restart safety, offline tracking. This strategy says what is particular to a PAT:

- plan: rings in order (canary → early → broad, from the `ring` tag), each needing the configured
  share of its panels to succeed before the next starts;
- desired_patch (in the worker, at apply time): nothing for a panel already proven on this version;
  otherwise the value is read from Key Vault *by version*, only if that version passed preflight and
  is still the current one, and becomes `configurationProtectedSettings.httpsKey` (base64; always the
  complete protected settings) with `gitRepository.httpsUser`. The params stored with the operation
  name the version, never the value;
- check: proven by a successful fetch the agent reported after the change (`proof`); an authentication
  failure halts the whole operation, leaving panels not yet changed on their old, working PAT.

The credential map (the ledger) is updated as panels move: applying → proven | failed.

One strategy serves both credentials (issue 15: the fleet's read-only PAT and the runner's write PAT):
the operation's params name the secret, and the strategy reads from that secret's store. Which panels
each may reach is decided when the operation starts (`CredentialService`), not here.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import InvalidInput, PermanentError
from shared.models import AppliedChange, Convergence, FluxState, Panel, Params, Stage
from shared.models.credentials import (
    PanelCredential,
    PanelCredentialState,
    SecretVersionId,
    SecretVersions,
)
from shared.ports import Notifier, OperationRecord
from shared.services.credentials.ports import CredentialLedger, SecretStore
from shared.services.credentials.proof import FetchVerdict, judge_fetch
from shared.services.credentials.rings import plan_rings
from shared.services.fleet.strategy import BaseStrategy

log = logging.getLogger("fluxfleet.credentials.rollout")

ROLLOUT_KIND = "credential-rollout"
# Rollout and migration both change how a panel authenticates: they must never overlap on a panel.
CREDENTIAL_LOCK_GROUP = "flux-credential"
# What ARM's `gitRepository.provider` says for a panel on workload identity.
AZURE_PROVIDER = "Azure"
GENERIC_PROVIDER = "Generic"

# Key Vault version ids are 32 hex digits; accept any short id of that alphabet (emulators, other clouds).
VERSION_PATTERN = re.compile(r"^[0-9a-zA-Z]{1,64}$")
# The list of versions is re-read at most this often per worker (seconds): a version disabled in Key
# Vault stops a running rollout within this time, without one Key Vault call per panel.
VERSIONS_TTL_S = 30.0
# A version's value never changes in Key Vault, so it may be kept per worker while a rollout runs
# (seconds); it lives only in this process's memory.
VALUE_TTL_S = 300.0


class Superseded(PermanentError):
    """The version being rolled out is no longer the current one: a newer enabled version exists."""

    code = "Superseded"


class NotValidated(PermanentError):
    """The version has no passed preflight on record: it must never reach a panel."""

    code = "NotValidated"


@dataclass(frozen=True)
class RolloutParams:
    secret: str
    version: SecretVersionId
    https_user: str
    rings: tuple[str, ...]
    ring_threshold: float
    trigger: str

    def to_json(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "version": self.version,
            "httpsUser": self.https_user,
            "rings": list(self.rings),
            "ringThreshold": self.ring_threshold,
            "trigger": self.trigger,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RolloutParams:
        version = raw.get("version")
        if not isinstance(version, str) or not VERSION_PATTERN.match(version):
            raise InvalidInput("params.version", "must be a Key Vault secret version id")
        secret = raw.get("secret")
        if not isinstance(secret, str) or not secret:
            raise InvalidInput("params.secret", "must name the Key Vault secret")
        user = raw.get("httpsUser")
        if not isinstance(user, str) or not user:
            raise InvalidInput("params.httpsUser", "must be a non-empty string")
        return cls(
            secret=secret,
            version=SecretVersionId(version),
            https_user=user,
            rings=_rings(raw.get("rings")),
            ring_threshold=_threshold(raw.get("ringThreshold")),
            trigger=str(raw.get("trigger") or "api"),
        )


def _rings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value or not all(isinstance(r, str) and r for r in value):
        raise InvalidInput("params.rings", "must be a non-empty list of ring names")
    return tuple(value)


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise InvalidInput("params.ringThreshold", "must be a number from 0 to 1")
    return float(value)


class _TtlCache:
    """A tiny per-worker cache (thread-safe: queue invocations run in a thread pool)."""

    def __init__(self, ttl_s: float, monotonic: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        now = self._monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self._ttl_s:
                return entry[1]
        return self.refresh(key, load)

    def refresh(self, key: str, load: Callable[[], Any]) -> Any:
        now = self._monotonic()
        value = load()
        with self._lock:
            self._entries[key] = (now, value)
        return value


def https_key(value: str) -> str:
    """`configurationProtectedSettings.httpsKey`: the PAT, base64-encoded, as the Arc API wants it."""
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


class CredentialRolloutStrategy(BaseStrategy):
    """`ChangeStrategy` for `credential-rollout` operations."""

    kind = ROLLOUT_KIND
    lock_group = CREDENTIAL_LOCK_GROUP

    def __init__(
        self,
        *,
        secrets: SecretStore | Sequence[SecretStore],
        ledger: CredentialLedger,
        notifier: Notifier,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`secrets`: the store of every secret this strategy may roll out (one per purpose)."""
        stores = [secrets] if not isinstance(secrets, Sequence) else list(secrets)
        self._stores = {store.secret_name.lower(): store for store in stores}
        self._ledger = ledger
        self._notifier = notifier
        self._wall_clock = wall_clock
        self._versions = _TtlCache(VERSIONS_TTL_S, monotonic)
        self._values = _TtlCache(VALUE_TTL_S, monotonic)
        self._preflights = _TtlCache(VERSIONS_TTL_S, monotonic)

    # --- ChangeStrategy ---------------------------------------------------------------------------
    def validate_params(self, params: Params) -> Params:
        return RolloutParams.from_json(params).to_json()

    def plan(self, panels: Sequence[Panel], params: Params) -> list[Stage]:
        parsed = RolloutParams.from_json(params)
        return plan_rings(panels, rings=parsed.rings, threshold=parsed.ring_threshold)

    def would_change(self, panel: Panel, current: FluxState, params: Params) -> bool:
        """Whether `desired_patch` would write: no Key Vault read, no record (dry runs)."""
        parsed = RolloutParams.from_json(params)
        return self._needs_patch(parsed, panel, current)

    def desired_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        parsed = RolloutParams.from_json(params)
        if not self._needs_patch(parsed, panel, current):
            return None
        self._require_validated(parsed)
        self._require_current(parsed)
        value: str = self._values.get(
            f"{parsed.secret}/{parsed.version}", lambda: self._store(parsed.secret).read_value(parsed.version)
        )
        git_repository: dict[str, Any] = {"httpsUser": parsed.https_user}
        if _on_azure(current):
            # A panel whose move to workload identity did not work goes back to the PAT it needs.
            git_repository["provider"] = GENERIC_PROVIDER
        patch = {
            "gitRepository": git_repository,
            # ARM merges protected settings (JSON merge patch; sources in lab/arm/wire.py
            # `apply_patch_body`): `httpsKey` is replaced, nothing else on the panel is touched.
            "configurationProtectedSettings": {"httpsKey": https_key(value)},
        }
        del value
        return patch

    def _needs_patch(self, parsed: RolloutParams, panel: Panel, current: FluxState) -> bool:
        record = self._ledger.panel_credential(parsed.secret, panel.key)
        if record is None:
            return True
        if record.state is PanelCredentialState.WORKLOAD_IDENTITY and _on_azure(current):
            return False  # it holds no PAT any more, so there is nothing to rotate
        proven_here = (
            record.holds_proven(parsed.version)
            and current.https_user == parsed.https_user
            and not _on_azure(current)
        )
        return not proven_here

    def check(self, panel: Panel, current: FluxState, applied: AppliedChange, params: Params) -> Convergence:
        parsed = RolloutParams.from_json(params)
        judgement = judge_fetch(current, applied)
        record = self._ledger.panel_credential(parsed.secret, panel.key)
        if judgement.verdict is FetchVerdict.PROVEN:
            self._save(parsed, panel, record, PanelCredentialState.PROVEN, judgement.detail)
            return Convergence.converged(f"version {parsed.version} proven: {judgement.detail}")
        if judgement.verdict is FetchVerdict.AUTH_FAILED:
            self._save(parsed, panel, record, PanelCredentialState.FAILED, judgement.detail)
            cause = (
                f"the agent could not authenticate with version {parsed.version} ({judgement.detail}); "
                "rollout halted, panels not yet changed keep their previous PAT"
            )
            log.error(
                "credential rollout: authentication failure on %s",
                panel.name,
                extra={"cluster": panel.name, "version": parsed.version},
            )
            return Convergence.failed(cause, halt_operation=True)
        if judgement.verdict is FetchVerdict.SUSPENDED:
            self._save(
                parsed, panel, record, PanelCredentialState.APPLYING, "applied; unproven while suspended"
            )
            return Convergence.converged(
                f"version {parsed.version} applied; Flux is suspended here, so the proving fetch waits "
                "for it to resume"
            )
        if (
            record is None
            or record.version != parsed.version
            or record.state is not PanelCredentialState.APPLYING
        ):
            # Recorded once, at the first check after ARM accepted the write (not in desired_patch, which
            # dry runs call too): the panel now holds this version, unproven.
            self._save(
                parsed, panel, record, PanelCredentialState.APPLYING, "applied; waiting for the agent's fetch"
            )
        return Convergence.waiting(judgement.detail)

    def on_stage_done(self, operation: OperationRecord, stage: int, summary: Mapping[str, int]) -> None:
        params = operation.params
        log.info(
            "credential rollout %s: stage %s settled %s",
            operation.id,
            stage,
            dict(summary),
            extra={"operation_id": operation.id, "version": params.get("version")},
        )
        if not operation.halted_reason:
            return
        secret, version = str(params.get("secret")), SecretVersionId(str(params.get("version")))
        record = self._ledger.rollout(secret, version) or {}
        if record.get("haltNotified") == operation.id:
            return
        self._ledger.save_rollout(secret, version, {**record, "haltNotified": operation.id, "halted": True})
        self._notifier.notify(
            title="Flux PAT rollout halted",
            text=operation.halted_reason,
            level="error",
            facts={"secret": secret, "version": version, "operation": str(operation.id)},
        )

    # --- helpers ----------------------------------------------------------------------------------
    def _store(self, secret: str) -> SecretStore:
        store = self._stores.get(secret.lower())
        if store is None:
            raise PermanentError(f"no Key Vault secret {secret} is configured for credential rollouts")
        return store

    def _require_validated(self, parsed: RolloutParams) -> None:
        key = f"{parsed.secret}/{parsed.version}"
        report = self._preflights.get(key, lambda: self._ledger.preflight(parsed.secret, parsed.version))
        if report is None or not report.passed:  # a cached miss may predate the preflight: look again
            report = self._preflights.refresh(
                key, lambda: self._ledger.preflight(parsed.secret, parsed.version)
            )
        if report is None or not report.passed:
            raise NotValidated(f"version {parsed.version} has not passed preflight; it is never rolled out")

    def _require_current(self, parsed: RolloutParams) -> None:
        store = self._store(parsed.secret)
        versions: SecretVersions = self._versions.get(parsed.secret, store.list_versions)
        if _is_current(versions, parsed.version):
            return
        # The cached list may predate the version (it was created after this worker last looked):
        # only a fresh answer from Key Vault may call it superseded.
        versions = self._versions.refresh(parsed.secret, store.list_versions)
        if not _is_current(versions, parsed.version):
            current = versions.current
            raise Superseded(
                f"version {parsed.version} is no longer the current version of {parsed.secret} "
                f"(now {current.version if current else 'none enabled'}); not applied"
            )

    def _save(
        self,
        parsed: RolloutParams,
        panel: Panel,
        record: PanelCredential | None,
        state: PanelCredentialState,
        detail: str,
    ) -> None:
        self._ledger.save_panel_credential(
            parsed.secret,
            PanelCredential(
                panel_id=panel.id,
                panel_name=panel.name,
                version=parsed.version,
                state=state,
                updated_at=self._wall_clock(),
                previous_version=_working_version(record, parsed.version),
                detail=detail,
            ),
        )


def _is_current(versions: SecretVersions, version: str) -> bool:
    current = versions.current
    return current is not None and current.version == version


def _on_azure(current: FluxState) -> bool:
    return (current.provider or "").lower() == AZURE_PROVIDER.lower()


def _working_version(record: PanelCredential | None, new_version: str) -> SecretVersionId | None:
    """The version that still works on a panel while `new_version` is unproven there."""
    if record is None:
        return None
    if record.version != new_version and record.state is PanelCredentialState.PROVEN:
        return record.version
    return record.previous_version
