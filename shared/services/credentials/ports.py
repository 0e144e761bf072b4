"""The ports of the credential capability: what its logic needs from the world, as small Protocols.

Adapters in `shared.adapters` implement them over the Azure SDKs (Key Vault, Table storage) and plain
HTTP (the Git probe); unit tests implement them in memory. The notifier is the app's one
`shared.ports.Notifier`. Only `SecretStore.read_value`
ever returns a secret, and only the rollout strategy calls it, at the moment it builds a patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from shared.models import Panel
from shared.models.credentials import (
    ExpiryWarning,
    PanelCredential,
    PreflightReport,
    ProbeResult,
    SecretVersionId,
    SecretVersionInfo,
    SecretVersions,
    WorkloadIdentityFacts,
)


class SecretStore(Protocol):
    """The Key Vault secret that holds the PAT."""

    @property
    def secret_name(self) -> str: ...

    def list_versions(self) -> SecretVersions:
        """Every version's attributes, newest first, with the vault's time of answer."""
        ...

    def get_version(self, version: SecretVersionId) -> SecretVersionInfo:
        """One version's attributes; `NotFound` when it does not exist."""
        ...

    def read_value(self, version: SecretVersionId) -> str:
        """The PAT of one version. Callers keep it in locals, never log, store or return it."""
        ...


class GitProbe(Protocol):
    """What a credential may do on the GitOps repository (Git smart-HTTP ref discovery).

    `service` is `git-upload-pack` (fetch: does it authenticate?) or `git-receive-pack` (can it push?).
    """

    def probe(
        self, *, url: str, username: str, password: str, service: str = "git-upload-pack"
    ) -> ProbeResult: ...


class CredentialLedger(Protocol):
    """The app's memory of credentials (Table storage): the map, preflights, warnings sent, rollouts.

    Every write is an idempotent upsert by a deterministic key, so a retried message or a second
    instance doing the same work changes nothing twice.
    """

    def panel_credentials(self, secret: str) -> list[PanelCredential]: ...

    def panel_credential(self, secret: str, panel_key: str) -> PanelCredential | None:
        """The row of one panel, by `Panel.key`."""
        ...

    def save_panel_credential(self, secret: str, record: PanelCredential) -> None: ...

    def save_preflight(self, report: PreflightReport) -> None: ...

    def preflight(self, secret: str, version: SecretVersionId) -> PreflightReport | None: ...

    def claim_warning(self, warning: ExpiryWarning, *, at: datetime) -> bool:
        """Record that `warning` is being sent; False when it was already claimed (send nothing)."""
        ...

    def release_warning(self, warning: ExpiryWarning) -> None:
        """Forget a claim whose message could not be delivered, so the next check sends it again."""
        ...

    def sent_warnings(self, secret: str, version: SecretVersionId) -> Sequence[int]:
        """Thresholds (days) already warned about for one version."""
        ...

    def save_rollout(self, secret: str, version: SecretVersionId, record: dict[str, Any]) -> None:
        """The latest rollout (operation id, kind, trigger, halted?) started for a version."""
        ...

    def rollout(self, secret: str, version: SecretVersionId) -> dict[str, Any] | None: ...


class WorkloadIdentityReader(Protocol):
    """What ARM says about panels' workload-identity support (connectedClusters and their extensions)."""

    def facts(self, *, panels: Sequence[Panel]) -> dict[str, WorkloadIdentityFacts]:
        """Facts per `Panel.key`; a panel ARM could not answer for is missing from the result."""
        ...
