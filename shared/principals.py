"""Who is calling, as the audit trail names them: a platform-authenticated principal or a function key.

Two sources, and only one is ever trusted for a request:

- **App Service authentication** ("Easy Auth"), only when the platform says it is on
  (`WEBSITE_AUTH_ENABLED=True`, which App Service sets). The front end then removes any client-sent
  `x-ms-client-*` headers and adds `x-ms-client-principal`: base64 of a JSON document
  `{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}`. The principal is read from those
  claims — never from the plain `x-ms-client-principal-name` header, which any caller can send when
  authentication is off. Source: "Access user claims in app code",
  learn.microsoft.com/azure/app-service/configure-authentication-user-identities.
- **A function key** otherwise: `function-key:<first 12 hex of sha256(key)>`. The worker is not told a
  key's name, and a hash is stable, auditable and useless to anyone reading the audit trail. An
  operator prints a key's id with `python -m shared.cli key-id` (reads the key from stdin) to put it in
  `FLUXFLEET_ALLOWED_PRINCIPALS`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping

FUNCTION_KEY_PREFIX = "function-key:"
ANONYMOUS = "anonymous"
# Longest principal kept: UPNs and object ids are far shorter; more is somebody's mistake or attack.
MAX_PRINCIPAL = 200
# Longest x-ms-client-principal read (bytes of base64): a token's claims fit well within this.
MAX_PRINCIPAL_HEADER = 16 * 1024

# Claim types, most to least readable, tried after the document's own `name_typ`. Service principals
# (a release pipeline's identity) have no name or UPN: their app id, then object id, name them.
_CLAIMS = (
    "preferred_username",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "upn",
    "name",
    "appid",
    "azp",
    "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "oid",
)


def function_key_id(key: str) -> str:
    """The audit id of a function key (never the key)."""
    return FUNCTION_KEY_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def platform_principal(header: str | None) -> str | None:
    """The principal in an `x-ms-client-principal` header, or None when absent or unreadable."""
    if not header or len(header) > MAX_PRINCIPAL_HEADER:
        return None
    try:
        document = json.loads(base64.b64decode(header.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        return None
    claims: dict[str, str] = {}
    for claim in document["claims"]:
        if isinstance(claim, dict):
            claim_type, value = claim.get("typ"), claim.get("val")
            if isinstance(claim_type, str) and isinstance(value, str):
                claims.setdefault(claim_type, value)
    name_type = document.get("name_typ")
    for claim_type in ((name_type,) if isinstance(name_type, str) else ()) + _CLAIMS:
        value = claims.get(claim_type, "").strip()
        if value and value.isprintable():
            return value[:MAX_PRINCIPAL]
    return None


def request_principal(
    headers: Mapping[str, str], *, function_key: str | None, platform_auth: bool
) -> str:
    """Who made a request: the platform's principal (only when `platform_auth`), else the key's id."""
    if platform_auth:
        principal = platform_principal(headers.get("x-ms-client-principal"))
        if principal:
            return principal
    if function_key:
        return function_key_id(function_key)
    return ANONYMOUS
