"""The personal access tokens of the lab's Azure DevOps organization (shared by `devops` and `vssps`).

In Azure DevOps one PAT store serves two hosts: the Git server and REST API (dev.azure.com) check a PAT
on every request, and the PAT Lifecycle API (vssps.dev.azure.com) creates, lists, updates and revokes
them. The lab keeps that single store here; the `devops` service owns it and `vssps` reaches it through
`lab.service("devops").pats`. Like the real service, the store keeps only a SHA-256 of each token, so a
token value can be read back nowhere (the two tokens the lab must hand out itself, to the factory panels
and to the automation runner's Flux configuration, are held by the `devops` service, not here). Validity
is judged by the lab clock, so a test expires a PAT by advancing the clock.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from lab.core.clock import LabClock
    from lab.core.tokens import Principal

# A PAT's value: 32 random bytes in lower-case base32 without padding, i.e. the 52-character shape
# of classic Azure DevOps PATs, so clients that sanity-check a token's length see a familiar value.
_TOKEN_BYTES = 32

# What a PAT scope grants: a request needing the key is allowed by any scope in the value.
# `app_token` is what the portal calls "Full access". Scopes are the documented `vso.*` names.
_SCOPE_GRANTS: dict[str, frozenset[str]] = {
    "vso.code": frozenset({"vso.code", "vso.code_write", "vso.code_manage", "vso.code_full", "app_token"}),
    "vso.code_write": frozenset({"vso.code_write", "vso.code_manage", "vso.code_full", "app_token"}),
}

# Scopes the PAT Lifecycle API accepts on create/update (a subset of Azure DevOps' catalogue that is
# enough for a Git/GitOps organization; anything else is `invalidScope`).
KNOWN_SCOPES = frozenset(
    {
        "app_token",
        "vso.agentpools",
        "vso.analytics",
        "vso.auditlog",
        "vso.build",
        "vso.build_execute",
        "vso.code",
        "vso.code_full",
        "vso.code_manage",
        "vso.code_status",
        "vso.code_write",
        "vso.connected_server",
        "vso.graph",
        "vso.identity",
        "vso.memberentitlementmanagement",
        "vso.packaging",
        "vso.packaging_manage",
        "vso.packaging_write",
        "vso.profile",
        "vso.project",
        "vso.project_manage",
        "vso.release",
        "vso.release_execute",
        "vso.securefiles_read",
        "vso.serviceendpoint",
        "vso.serviceendpoint_manage",
        "vso.taskgroups_read",
        "vso.tokenadministration",
        "vso.tokens",
        "vso.variablegroups_read",
        "vso.work",
        "vso.work_full",
        "vso.work_write",
    }
)

PatStatus = Literal["active", "expired", "revoked"]


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a token value: what the store keeps instead of the value."""
    return hashlib.sha256(token.encode()).hexdigest()


def fingerprint(token_sha256: str) -> str:
    """A token's public fingerprint: the first 16 hex digits of its SHA-256 (safe for logs and state)."""
    return token_sha256[:16]


def scopes_of(scope: str) -> frozenset[str]:
    """A PAT's scope string is space-separated, as Azure DevOps stores it."""
    return frozenset(part for part in scope.split() if part)


def scope_is_known(scope: str) -> bool:
    parts = scopes_of(scope)
    return bool(parts) and parts <= KNOWN_SCOPES


def scope_allows(scope: str, needed_scope: str) -> bool:
    granting = _SCOPE_GRANTS.get(needed_scope, frozenset({needed_scope, "app_token"}))
    return bool(scopes_of(scope) & granting)


@dataclass(frozen=True)
class PatRecord:
    """One PAT as the organization knows it; never the value, only its hash."""

    authorization_id: str
    display_name: str
    scope: str
    owner: Principal
    org: str | None  # None: valid for all of the owner's organizations (`allOrgs`)
    valid_from: datetime
    valid_to: datetime
    revoked: bool
    token_hash: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.token_hash)

    def status(self, now: datetime) -> PatStatus:
        if self.revoked:
            return "revoked"
        return "expired" if self.valid_to <= now else "active"


class PatStore:
    """Every PAT of the organization, keyed by authorization id, with a hash index for checks."""

    def __init__(self, clock: LabClock) -> None:
        self._clock = clock
        self._records: dict[str, PatRecord] = {}
        self._by_hash: dict[str, str] = {}
        # Git requests are checked on the event loop, but `mint`/`revoke` may be called from the
        # simulators' threads; one lock keeps the two indexes consistent.
        self._lock = threading.Lock()

    def mint(
        self, owner: Principal, scope: str, valid_to: datetime, display_name: str, org: str | None
    ) -> tuple[str, PatRecord]:
        """Issue a new PAT; returns (token value, record). The value is not kept."""
        token = base64.b32encode(secrets.token_bytes(_TOKEN_BYTES)).decode().lower().rstrip("=")
        record = PatRecord(
            authorization_id=str(uuid.uuid4()),
            display_name=display_name,
            scope=scope,
            owner=owner,
            org=org,
            valid_from=self._clock.now(),
            valid_to=valid_to,
            revoked=False,
            token_hash=token_hash(token),
        )
        with self._lock:
            self._records[record.authorization_id] = record
            self._by_hash[record.token_hash] = record.authorization_id
        return token, record

    def check(self, token: str, needed_scope: str, org: str) -> PatRecord | None:
        """The record of a token that may be used now, in `org`, for `needed_scope`; else None."""
        record = self.find(token)
        if record is None or record.status(self._clock.now()) != "active":
            return None
        if record.org is not None and record.org.lower() != org.lower():
            return None
        return record if scope_allows(record.scope, needed_scope) else None

    def find(self, token: str) -> PatRecord | None:
        """The record of a token value whatever its state (to tell "expired" from "unknown")."""
        with self._lock:
            authorization_id = self._by_hash.get(token_hash(token))
            return self._records.get(authorization_id) if authorization_id else None

    def get(self, authorization_id: str) -> PatRecord | None:
        with self._lock:
            return self._records.get(authorization_id.lower())

    def list(self, owner: Principal | None = None) -> list[PatRecord]:
        with self._lock:
            records = list(self._records.values())
        return [r for r in records if owner is None or r.owner.object_id == owner.object_id]

    def update(
        self, authorization_id: str, *, display_name: str, scope: str, valid_to: datetime, org: str | None
    ) -> PatRecord:
        with self._lock:
            record = replace(
                self._records[authorization_id],
                display_name=display_name,
                scope=scope,
                valid_to=valid_to,
                org=org,
            )
            self._records[authorization_id] = record
        return record

    def revoke(self, authorization_id: str) -> PatRecord | None:
        """Revoke a PAT (idempotent); None if there is no such PAT."""
        with self._lock:
            record = self._records.get(authorization_id.lower())
            if record is None:
                return None
            record = replace(record, revoked=True)
            self._records[record.authorization_id] = record
        return record

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._by_hash.clear()
