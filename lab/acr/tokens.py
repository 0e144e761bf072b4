"""ACR's own tokens: the AAD → ACR refresh-token exchange and the refresh → access-token grant.

`azure-containerregistry` never sends an Entra token to the data plane. On a 401 challenge it posts the Entra
token to `/oauth2/exchange` (getting an ACR refresh token), then the refresh token and the challenged scope to
`/oauth2/token` (getting an access token for exactly that scope), then retries. The SDK reads the refresh
token's `exp` claim itself (`_parse_exp_time`: the JWT's middle segment through *standard* base64), so tokens
here are JWT-shaped with that segment decodable as the SDK decodes it. They are HMAC-signed with a key the lab
makes at start, so they are verified without a table, and they expire by real time (the SDK compares `exp`
with `time.time()`, not with the lab clock).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# ACR refresh tokens from the AAD exchange are valid for 3 hours; access tokens (as `az acr login
# --expose-token` shows) for 75 minutes.
REFRESH_TOKEN_LIFETIME_S = 3 * 3600
ACCESS_TOKEN_LIFETIME_S = 75 * 60
# A base64 group encodes 3 bytes as 4 characters: padding the JSON to a multiple of 3 bytes makes an encoding
# without "=" whose length is a multiple of 4, which the SDK's own padding arithmetic then leaves intact.
_BASE64_GROUP_BYTES = 3

TokenKind = Literal["refresh", "access"]


@dataclass(frozen=True)
class ScopeGrant:
    """One `type:name:actions` entry, e.g. `repository:ipc/opcua-gateway:metadata_read`."""

    type: str
    name: str
    actions: frozenset[str]

    def allows(self, type_: str, name: str, action: str) -> bool:
        return self.type == type_ and self.name == name and ("*" in self.actions or action in self.actions)

    def as_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}

    def as_scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scopes(scope: str) -> list[ScopeGrant]:
    """A space-separated list of `type:name:action[,action]`; names may contain `/` but not `:`."""
    grants = []
    for part in scope.split():
        type_, _, rest = part.partition(":")
        name, _, actions = rest.rpartition(":")
        if type_ and name and actions:
            grants.append(ScopeGrant(type_, name, frozenset(a for a in actions.split(",") if a)))
    return grants


@dataclass(frozen=True)
class TokenClaims:
    kind: TokenKind
    subject: str  # the Entra object id behind the token
    tenant: str
    expires: int
    access: tuple[ScopeGrant, ...] = ()

    def allows(self, type_: str, name: str, action: str) -> bool:
        return any(grant.allows(type_, name, action) for grant in self.access)


def _b64_json(document: dict[str, object]) -> str:
    raw = json.dumps(document, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % _BASE64_GROUP_BYTES)
    return base64.b64encode(raw).decode()


class AcrTokenIssuer:
    def __init__(self, *, service: str) -> None:
        self.service = service
        self._key = secrets.token_bytes(32)

    def _sign(self, signing_input: str) -> str:
        digest = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _issue(self, payload: dict[str, object]) -> str:
        signing_input = _b64_json({"typ": "JWT", "alg": "HS256"}) + "." + _b64_json(payload)
        return signing_input + "." + self._sign(signing_input)

    def issue_refresh_token(self, *, subject: str, tenant: str) -> str:
        now = int(time.time())
        return self._issue(
            {
                "jti": str(uuid.uuid4()),
                "sub": subject,
                "tenant": tenant,
                "aud": self.service,
                "iss": "Azure Container Registry",
                "grant_type": "refresh_token",
                "nbf": now,
                "iat": now,
                "exp": now + REFRESH_TOKEN_LIFETIME_S,
                "version": "1.0",
            }
        )

    def issue_access_token(self, *, subject: str, tenant: str, access: Iterable[ScopeGrant]) -> str:
        now = int(time.time())
        return self._issue(
            {
                "jti": str(uuid.uuid4()),
                "sub": subject,
                "tenant": tenant,
                "aud": self.service,
                "iss": "Azure Container Registry",
                "grant_type": "access_token",
                "access": [grant.as_claim() for grant in access],
                "nbf": now,
                "iat": now,
                "exp": now + ACCESS_TOKEN_LIFETIME_S,
                "version": "2.0",
            }
        )

    def verify(self, token: str, kind: TokenKind) -> TokenClaims | None:
        """The claims of a live token of `kind` this registry issued, else None."""
        header, _, rest = token.partition(".")
        payload_b64, _, signature = rest.partition(".")
        if not signature or not hmac.compare_digest(signature, self._sign(f"{header}.{payload_b64}")):
            return None
        try:
            payload = json.loads(base64.b64decode(payload_b64))
        except (binascii.Error, ValueError):
            return None
        expected_grant = "refresh_token" if kind == "refresh" else "access_token"
        if payload.get("grant_type") != expected_grant or payload.get("aud") != self.service:
            return None
        if int(payload.get("exp", 0)) < time.time():
            return None
        access = tuple(
            ScopeGrant(str(a["type"]), str(a["name"]), frozenset(a["actions"]))
            for a in payload.get("access", [])
        )
        return TokenClaims(
            kind=kind,
            subject=str(payload["sub"]),
            tenant=str(payload["tenant"]),
            expires=int(payload["exp"]),
            access=access,
        )
