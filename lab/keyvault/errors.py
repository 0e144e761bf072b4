"""Key Vault's error catalogue: each error knows its HTTP status and Azure code and renders the envelope.

Key Vault answers every failure as `{"error": {"code", "message", "innererror"?: {"code"}}}`. The SDK maps
the status to an exception type (404 → ResourceNotFoundError, 401 → ClientAuthenticationError, ...) and the
app's error mapping reads `code`, `message` and sometimes the inner code (a disabled secret is `Forbidden`
outside and `SecretDisabled` inside), so the lab renders exactly that shape with the messages Key Vault
really sends (taken from recorded responses in public SDK test recordings).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar

from aiohttp import web

# Key Vault appends this pointer to its not-found messages; verbatim, so message matching behaves as in Azure.
_NOT_FOUND_HELP = (
    "If you recently deleted this secret you may be able to recover it using the correct recovery command. "
    "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
)


class KeyVaultError(Exception):
    """A failure Key Vault reports to the caller; `response()` renders it on the wire."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "BadParameter"

    def __init__(
        self, message: str, *, inner_code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.inner_code = inner_code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner_code is not None:
            error["innererror"] = {"code": self.inner_code}
        return {"error": error}

    def response(self) -> web.Response:
        headers = {"x-ms-request-id": str(uuid.uuid4()), "Cache-Control": "no-cache", **self.headers}
        return web.Response(
            status=self.status, text=json.dumps(self.body()), content_type="application/json", headers=headers
        )


class BadParameter(KeyVaultError):
    status = 400
    code = "BadParameter"


class Unauthorized(KeyVaultError):
    """401 with the challenge that makes the SDK's challenge-auth policy fetch a vault token and retry."""

    status = 401
    code = "Unauthorized"

    @classmethod
    def missing_token(cls, *, challenge: str) -> Unauthorized:
        return cls(
            "AKV10000: Request is missing a Bearer or PoP token.", headers={"WWW-Authenticate": challenge}
        )

    @classmethod
    def wrong_audience(cls, *, challenge: str, expected: str, found: str) -> Unauthorized:
        return cls(
            f"AKV10022: Invalid audience. Expected {expected}, found: {found}.",
            headers={"WWW-Authenticate": challenge},
        )

    @classmethod
    def invalid_token(cls, *, challenge: str) -> Unauthorized:
        return cls(
            "AKV10032: Invalid issuer or token. The token is unknown to this tenant or has expired.",
            headers={"WWW-Authenticate": challenge},
        )


class Forbidden(KeyVaultError):
    status = 403
    code = "Forbidden"

    @classmethod
    def disabled_secret(cls) -> Forbidden:
        return cls("Operation get is not allowed on a disabled secret.", inner_code="SecretDisabled")

    @classmethod
    def by_rbac(
        cls,
        *,
        object_id: str,
        app_id: str | None,
        tenant_id: str,
        action: str,
        resource: str,
        vault_name: str,
    ) -> Forbidden:
        # Key Vault's RBAC denial, line for line (CRLF-separated as the service sends it): the caller as
        # appid/oid/issuer, the ARM resource in lower case, and the deny-assignment line newer vaults add.
        caller = f"appid={app_id};" if app_id else ""
        message = (
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, "
            "please observe propagation time.\r\n"
            f"Caller: {caller}oid={object_id};iss=https://sts.windows.net/{tenant_id}/\r\n"
            f"Action: '{action}'\r\n"
            f"Resource: '{resource.lower()}'\r\n"
            "Assignment: (not found)\r\n"
            "DenyAssignmentId: null\r\n"
            "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
            f"Vault: {vault_name};location=westeurope\r\n"
        )
        return cls(message, inner_code="ForbiddenByRbac")


class SecretNotFound(KeyVaultError):
    status = 404
    code = "SecretNotFound"

    @classmethod
    def named(cls, name: str, version: str | None = None) -> SecretNotFound:
        name_or_id = f"{name}/{version}" if version else name
        return cls(f"A secret with (name/id) {name_or_id} was not found in this key vault. {_NOT_FOUND_HELP}")

    @classmethod
    def deleted(cls, name: str) -> SecretNotFound:
        return cls(f"Deleted Secret not found: {name}")


class Conflict(KeyVaultError):
    status = 409
    code = "Conflict"

    @classmethod
    def deleted_but_recoverable(cls, name: str) -> Conflict:
        return cls(
            f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
            "in this state, the secret can only be recovered or purged.",
            inner_code="ObjectIsDeletedButRecoverable",
        )
