"""Opaque bearer tokens bound to a principal and an audience.

Azure services accept Entra tokens only for their own audience; the lab reproduces that: the identity
endpoint issues an opaque random token for one (principal, audience), and every emulated service asks
`TokenStore.authenticate` for its own audience. A token for another audience, an unknown token and a
missing one are all refused, each service answering with its own real error shape.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

PrincipalKind = Literal["managedIdentity", "user", "servicePrincipal"]

# Entra access tokens live about an hour; the SDKs refresh 5 minutes before `expires_on`.
TOKEN_LIFETIME_S = 3600

# Audiences as the services check them (a trailing "/" is not significant, as in Entra).
ARM_AUDIENCE = "https://management.azure.com"
KEYVAULT_AUDIENCE = "https://vault.azure.net"
DEVOPS_AUDIENCE = "499b84ac-1321-427f-aa17-267ca6975798"
ACR_AUDIENCE = "https://containerregistry.azure.net"


@dataclass(frozen=True)
class Principal:
    object_id: str
    kind: PrincipalKind
    name: str
    tenant_id: str


@dataclass(frozen=True)
class _Grant:
    principal: Principal
    audience: str
    expires_at: float  # real Unix time: SDK token caches compare against the real clock


def normalise_audience(value: str) -> str:
    value = value.strip()
    if value.endswith("/.default"):
        value = value[: -len("/.default")]
    return value.rstrip("/")


class TokenStore:
    def __init__(self) -> None:
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def issue(self, principal: Principal, audience: str) -> tuple[str, int]:
        """Return (token, expires_on as Unix seconds)."""
        token = "lab." + secrets.token_urlsafe(32)
        expires_at = int(time.time()) + TOKEN_LIFETIME_S
        with self._lock:
            self._grants[token] = _Grant(principal, normalise_audience(audience), expires_at)
        return token, expires_at

    def resolve(self, token: str) -> tuple[Principal, str] | None:
        """The principal and audience of a live token, or None."""
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.expires_at < time.time():
            return None
        return grant.principal, grant.audience

    def authenticate(self, authorization: str | None, audience: str) -> Principal | None:
        """The principal behind an `Authorization: Bearer` header valid for `audience`, else None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        resolved = self.resolve(token.strip())
        if resolved is None or resolved[1] != normalise_audience(audience):
            return None
        return resolved[0]

    def reset(self) -> None:
        with self._lock:
            self._grants.clear()
