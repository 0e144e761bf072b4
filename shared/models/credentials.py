"""Values of the credential capability: what Key Vault says about a PAT, and what the app concluded.

None of these values ever holds the PAT itself. The value is read from Key Vault by version at the
moment a panel's Flux configuration is patched (`ports.SecretStore.read_value`) and lives only in that
call's locals; everything else — rows, messages, reports, logs — names a *version*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NewType

from shared.timestamps import format_time

# A Key Vault secret version id (32 hex digits in Azure).
SecretVersionId = NewType("SecretVersionId", str)

# The tag on a Key Vault version that names the Azure DevOps PAT it holds (`pat mint` writes it), so the
# app can say *which* PAT is safe to revoke without ever seeing another credential.
AUTHORIZATION_ID_TAG = "authorizationId"

SECONDS_PER_DAY = 86_400


class CredentialPurpose(StrEnum):
    """Which Git credential: each is its own Key Vault secret, rotated by the same machinery (issue 15).

    `fleet` is what every factory panel fetches with and must be read-only (Code: Read, `vso.code`): one
    stolen panel must not be able to push to the repository every panel applies. `automation` is what
    the one image-automation runner pushes its commits with (Code: Read & Write, `vso.code_write`).
    """

    FLEET = "fleet"
    AUTOMATION = "automation"

    @property
    def pat_scope(self) -> str:
        """The Azure DevOps PAT scope `pat mint --purpose` asks for."""
        return "vso.code_write" if self is CredentialPurpose.AUTOMATION else "vso.code"


@dataclass(frozen=True)
class SecretVersionInfo:
    """One version's attributes as Key Vault reports them (never the value)."""

    name: str
    version: SecretVersionId
    enabled: bool
    expires_on: datetime | None
    not_before: datetime | None = None
    created_on: datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def authorization_id(self) -> str | None:
        return self.tags.get(AUTHORIZATION_ID_TAG) or None

    def days_left(self, now: datetime) -> float | None:
        """Days until `exp` (negative once expired), or None when the version has no expiry."""
        if self.expires_on is None:
            return None
        return (self.expires_on - now).total_seconds() / SECONDS_PER_DAY

    def whole_days_left(self, now: datetime) -> int | None:
        """Days left rounded down, as a person counts them ("2 days left" until the 48th hour is gone)."""
        days = self.days_left(now)
        return None if days is None else math.floor(days)


@dataclass(frozen=True)
class SecretVersions:
    """Every version of the secret, newest first, and the time the vault answered (its `Date` header).

    Days left are counted against the vault's time, not the worker's: it is the clock next to the data,
    and it keeps one notion of "now" between Azure, the lab (whose clock can be advanced) and the app.
    """

    name: str
    versions: tuple[SecretVersionInfo, ...]
    observed_at: datetime

    @property
    def current(self) -> SecretVersionInfo | None:
        """The newest *enabled* version: what panels should hold. Disabling a version rolls back from it."""
        return next((version for version in self.versions if version.enabled), None)

    def find(self, version: str) -> SecretVersionInfo | None:
        wanted = version.lower()
        return next((v for v in self.versions if v.version.lower() == wanted), None)

    def older_than(self, version: SecretVersionId) -> tuple[SecretVersionInfo, ...]:
        """The versions created before `version` (the ones a proven rollout of it supersedes)."""
        names = [v.version for v in self.versions]
        if version not in names:
            return ()
        return self.versions[names.index(version) + 1 :]


class ProbeVerdict(StrEnum):
    """What the Git server said to a credential."""

    AUTHENTICATED = "authenticated"
    REFUSED = "refused"  # 401/403: wrong, revoked or expired PAT, or no access to the repository
    NOT_FOUND = "not-found"  # the repository URL is wrong (or hidden from this credential)
    UNREACHABLE = "unreachable"  # network, TLS, 5xx: says nothing about the credential


@dataclass(frozen=True)
class ProbeResult:
    verdict: ProbeVerdict
    detail: str
    status: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.verdict is ProbeVerdict.AUTHENTICATED


class CheckOutcome(StrEnum):
    PASSED = "passed"
    WARNING = "warning"  # rolled out anyway, reported
    FAILED = "failed"  # nothing is rolled out


@dataclass(frozen=True)
class PreflightCheck:
    name: str
    outcome: CheckOutcome
    detail: str


@dataclass(frozen=True)
class PreflightReport:
    """The verdict on one version before anyone depends on it."""

    secret: str
    version: SecretVersionId
    checked_at: datetime
    checks: tuple[PreflightCheck, ...]
    # True when the only failure says nothing about the PAT (the Git server could not be reached): the
    # same version may pass later, so timers and events should retry rather than give up on it.
    retryable: bool = False

    @property
    def passed(self) -> bool:
        return all(check.outcome is not CheckOutcome.FAILED for check in self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{c.name}: {c.detail}" for c in self.checks if c.outcome is CheckOutcome.FAILED)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{c.name}: {c.detail}" for c in self.checks if c.outcome is CheckOutcome.WARNING)

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "passed": self.passed,
            "checkedAt": format_time(self.checked_at),
            "checks": [{"name": c.name, "outcome": c.outcome.value, "detail": c.detail} for c in self.checks],
        }


class WarningLevel(StrEnum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class ExpiryWarning:
    """One threshold crossed by one version; sent once (the ledger claims it first)."""

    secret: str
    version: SecretVersionId
    threshold_days: int  # 0 means "expired"
    days_left: float
    expires_on: datetime
    level: WarningLevel
    authorization_id: str | None = None

    @property
    def expired(self) -> bool:
        return self.days_left <= 0

    def text(self) -> str:
        who = f" (authorizationId {self.authorization_id})" if self.authorization_id else ""
        if self.expired:
            return (
                f"The Flux Git PAT in Key Vault secret '{self.secret}' version {self.version}{who} "
                f"expired on {self.expires_on:%Y-%m-%d %H:%M} UTC. Panels that still hold it cannot sync. "
                "Mint a new one: `python -m shared.cli pat mint --org <org> --days 90`."
            )
        return (
            f"The Flux Git PAT in Key Vault secret '{self.secret}' version {self.version}{who} expires in "
            f"{max(0, math.floor(self.days_left))} days ({self.expires_on:%Y-%m-%d %H:%M} UTC; warning at "
            f"{self.threshold_days} days). Mint its successor: `python -m shared.cli pat mint --org <org> "
            "--days 90`; fluxfleet validates and rolls it out."
        )


class PanelCredentialState(StrEnum):
    """Where a panel stands with one version, as far as the app has proof."""

    APPLYING = "applying"  # the patch is being written or waits for the agent's report
    PROVEN = "proven"  # the agent fetched successfully after the change
    FAILED = "failed"  # the agent reported an authentication failure with this version
    WORKLOAD_IDENTITY = "workload-identity"  # migrated off PATs: holds no credential


@dataclass(frozen=True)
class PanelCredential:
    """One row of the credential map: the version a panel was given and whether it is proven."""

    panel_id: str
    panel_name: str
    version: SecretVersionId | None
    state: PanelCredentialState
    updated_at: datetime
    # The version the panel held (proven) before `version` was applied: still its working credential
    # until the new one is proven.
    previous_version: SecretVersionId | None = None
    detail: str = ""

    def holds_proven(self, version: str) -> bool:
        return self.state is PanelCredentialState.PROVEN and self.version == version


@dataclass(frozen=True)
class WorkloadIdentityFacts:
    """What ARM says about one panel's ability to use workload identity."""

    flux_extension_version: str | None  # None: no microsoft.flux extension found
    workload_identity_enabled: bool
    oidc_issuer_enabled: bool
