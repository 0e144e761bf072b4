"""In-memory fakes of the credential ports (never of an SDK), and builders for test values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import NotFound, PermanentError, TransientError
from shared.models import (
    AppliedChange,
    ClusterId,
    FluxState,
    ObjectStatus,
    OperationId,
    Panel,
    Selector,
    SubscriptionId,
)
from shared.models.credentials import (
    ExpiryWarning,
    PanelCredential,
    PreflightReport,
    ProbeResult,
    ProbeVerdict,
    SecretVersionId,
    SecretVersionInfo,
    SecretVersions,
    WorkloadIdentityFacts,
)
from shared.services.fleet.intake import StartResult
from tests.unit.fakes import RecordingNotifier  # noqa: F401  (re-exported: the credential tests import it from here)

NOW = datetime(2026, 8, 20, 6, 0, tzinfo=UTC)
SUBSCRIPTION = SubscriptionId("5b5c0000-0000-4000-8000-000000000001")
# Shaped like an Azure DevOps PAT (52 lowercase alphanumerics) so safe_text's redaction would apply too.
GOOD_PAT = "goodpat" + "a1" * 22 + "zz1"
BAD_PAT = "badpat0" + "b2" * 22 + "yy2"


def version(
    vid: str,
    *,
    days_left: float | None = 60,
    enabled: bool = True,
    created: datetime | None = None,
    authorization_id: str | None = None,
    name: str = "flux-gitops-pat",
    not_before: datetime | None = None,
) -> SecretVersionInfo:
    tags = {"authorizationId": authorization_id} if authorization_id else {}
    return SecretVersionInfo(
        name=name,
        version=SecretVersionId(vid),
        enabled=enabled,
        expires_on=None if days_left is None else NOW + timedelta(days=days_left),
        not_before=not_before,
        created_on=created or NOW - timedelta(days=1),
        tags=tags,
    )


class FakeSecretStore:
    """Versions newest first; values by version; counts value reads."""

    def __init__(self, *entries: tuple[SecretVersionInfo, str], observed_at: datetime = NOW) -> None:
        self.entries = list(entries)
        self.observed_at = observed_at
        self.value_reads: list[str] = []
        self.fail_reads_with: Exception | None = None

    @property
    def secret_name(self) -> str:
        return "flux-gitops-pat"

    def add(self, info: SecretVersionInfo, value: str) -> None:
        self.entries.insert(0, (info, value))

    def list_versions(self) -> SecretVersions:
        return SecretVersions(
            name=self.secret_name,
            versions=tuple(info for info, _ in self.entries),
            observed_at=self.observed_at,
        )

    def get_version(self, version: SecretVersionId) -> SecretVersionInfo:
        found = self.list_versions().find(version)
        if found is None:
            raise NotFound(f"no version {version}")
        return found

    def read_value(self, version: SecretVersionId) -> str:
        if self.fail_reads_with is not None:
            raise self.fail_reads_with
        for info, value in self.entries:
            if info.version == version:
                if not info.enabled:
                    raise PermanentError("Forbidden: SecretDisabled")
                self.value_reads.append(version)
                return value
        raise NotFound(f"no version {version}")


class FakeProbe:
    """Authenticates the passwords in `accepted`; lets those in `writers` push (git-receive-pack);
    `unreachable` simulates a network failure."""

    def __init__(
        self, accepted: Sequence[str] = (GOOD_PAT,), *, writers: Sequence[str] = (), unreachable: bool = False
    ) -> None:
        self.accepted = set(accepted) | set(writers)
        self.writers = set(writers)
        self.unreachable = unreachable
        self.calls: list[tuple[str, str]] = []
        self.services: list[str] = []

    def probe(
        self, *, url: str, username: str, password: str, service: str = "git-upload-pack"
    ) -> ProbeResult:
        self.calls.append((url, username))
        self.services.append(service)
        if self.unreachable:
            return ProbeResult(ProbeVerdict.UNREACHABLE, "dev.azure.com: ConnectionError")
        if service == "git-receive-pack":
            if password in self.writers:
                return ProbeResult(
                    ProbeVerdict.AUTHENTICATED, "dev.azure.com advertised git-receive-pack", 200
                )
            return ProbeResult(ProbeVerdict.REFUSED, "HTTP 403 from dev.azure.com", 403)
        if password in self.accepted:
            return ProbeResult(ProbeVerdict.AUTHENTICATED, "dev.azure.com advertised its refs", 200)
        return ProbeResult(ProbeVerdict.REFUSED, "HTTP 401 from dev.azure.com", 401)


class MemoryLedger:
    def __init__(self) -> None:
        self.map: dict[tuple[str, str], PanelCredential] = {}
        self.preflights: dict[tuple[str, str], PreflightReport] = {}
        self.warnings: dict[tuple[str, str, int], datetime] = {}
        self.rollouts: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0

    def panel_credentials(self, secret: str) -> list[PanelCredential]:
        return [record for (s, _), record in sorted(self.map.items()) if s == secret]

    def panel_credential(self, secret: str, panel_key: str) -> PanelCredential | None:
        return self.map.get((secret, panel_key))

    def save_panel_credential(self, secret: str, record: PanelCredential) -> None:
        from shared.models import cluster_key, parse_cluster_id

        self.writes += 1
        self.map[(secret, cluster_key(*parse_cluster_id(record.panel_id)))] = record

    def save_preflight(self, report: PreflightReport) -> None:
        self.preflights[(report.secret, report.version)] = report

    def preflight(self, secret: str, version: SecretVersionId) -> PreflightReport | None:
        return self.preflights.get((secret, version))

    def claim_warning(self, warning: ExpiryWarning, *, at: datetime) -> bool:
        key = (warning.secret, warning.version, warning.threshold_days)
        if key in self.warnings:
            return False
        self.warnings[key] = at
        return True

    def release_warning(self, warning: ExpiryWarning) -> None:
        self.warnings.pop((warning.secret, warning.version, warning.threshold_days), None)

    def sent_warnings(self, secret: str, version: SecretVersionId) -> Sequence[int]:
        return [t for (s, v, t) in self.warnings if s == secret and v == version]

    def save_rollout(self, secret: str, version: SecretVersionId, record: dict[str, Any]) -> None:
        self.rollouts[(secret, version)] = dict(record)

    def rollout(self, secret: str, version: SecretVersionId) -> dict[str, Any] | None:
        found = self.rollouts.get((secret, version))
        return dict(found) if found is not None else None


@dataclass
class FakeEngine:
    """Records `start` calls; answers with a running operation (or a dry-run plan)."""

    panels: list[Panel]
    started: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    conflict: Exception | None = None

    def start(self, **kwargs: Any) -> StartResult:
        if self.conflict is not None:
            raise self.conflict
        self.started.append(kwargs)
        if kwargs.get("dry_run"):
            return StartResult(operation_id=None, document={"dryRun": True, "clusters": []}, created=False)  # type: ignore[typeddict-item]
        key = kwargs.get("idempotency_key")
        for op_id, doc in self.operations.items():
            if key and doc.get("_key") == key:
                return StartResult(operation_id=OperationId(op_id), document=doc, created=False)  # type: ignore[arg-type]
        op_id = f"op-{len(self.operations) + 1}"
        doc = {
            "id": op_id,
            "status": "running",
            "summary": {},
            "clusters": [],
            "haltedReason": None,
            "_key": key,
        }
        self.operations[op_id] = doc
        return StartResult(operation_id=OperationId(op_id), document=doc, created=True)  # type: ignore[arg-type]

    def get_operation(self, operation_id: str) -> Any:
        if operation_id not in self.operations:
            raise NotFound(f"operation {operation_id} does not exist")
        return self.operations[operation_id]

    def list_fleet(self) -> list[Panel]:
        return list(self.panels)


class FakeDirectory:
    """The fleet (`PanelDirectory`): the panels it is given (the same list the fake engine holds)."""

    def __init__(self, panels: list[Panel]) -> None:
        self._panels = panels

    def panels(self) -> list[Panel]:
        return list(self._panels)


class FakeReadiness:
    def __init__(self, facts: dict[str, WorkloadIdentityFacts]) -> None:
        self._facts = facts

    def facts(self, *, panels: Sequence[Panel]) -> dict[str, WorkloadIdentityFacts]:
        return {p.key: self._facts[p.name] for p in panels if p.name in self._facts}


def panel(name: str, *, ring: str | None = "canary", connectivity: str = "Connected") -> Panel:
    rg = "rg-ipc-platform-arc"
    return Panel(
        id=ClusterId(
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.Kubernetes/connectedClusters/{name}"
        ),
        name=name,
        subscription=SUBSCRIPTION,
        resource_group=rg,
        tags={"ring": ring, "site": "munich"} if ring else {"site": "munich"},
        connectivity=connectivity,
        last_connectivity_time=NOW,
    )


def flux_state(
    *,
    reported_at: datetime | None = NOW,
    ready: bool | None = True,
    reason: str = "Succeeded",
    message: str = "stored artifact for revision 'main@sha1:abc'",
    suspended: bool = False,
    provider: str | None = None,
    https_user: str | None = "git",
) -> FluxState:
    statuses: tuple[ObjectStatus, ...] = ()
    if ready is not None:
        statuses = (
            ObjectStatus(
                kind="GitRepository",
                name="ipc-platform-config",
                namespace="flux-system",
                compliance_state="Compliant" if ready else "Non-Compliant",
                ready=ready,
                reason=reason,
                message=message,
                last_transition_time=reported_at,
            ),
        )
    return FluxState(
        configuration="ipc-platform-config",
        suspended=suspended,
        compliance_state="Suspended" if suspended else ("Compliant" if ready else "Non-Compliant"),
        statuses=statuses,
        status_updated_at=reported_at,
        https_user=https_user,
        provisioning_state="Succeeded",
        provider=provider,
    )


def applied(at: datetime = NOW, *, baseline: datetime | None = None) -> AppliedChange:
    return AppliedChange(accepted_at=at, attempt=1, baseline_status_updated_at=baseline)


def all_fleet() -> Selector:
    return Selector(all=True)


def later(record: PanelCredential, **changes: Any) -> PanelCredential:
    return replace(record, **changes)


def transient() -> TransientError:
    return TransientError("webhook answered HTTP 503")
