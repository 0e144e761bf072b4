"""ACR's error catalogue: the Docker-registry-style envelope `{"errors": [{"code", "message", "detail"}]}`.

The ACR data plane (and the `azure-containerregistry` SDK, which deserialises `AcrErrors`) speaks the
distribution spec's error shape with upper-case codes. A 401 also carries the `WWW-Authenticate` challenge
that drives the SDK's AAD → ACR token exchange, so the challenge is part of the error here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar

from aiohttp import web


class AcrError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "UNSUPPORTED"

    def __init__(self, message: str, *, detail: object = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}

    def response(self) -> web.Response:
        headers = {"X-Ms-Correlation-Request-Id": str(uuid.uuid4()), **self.headers}
        return web.Response(
            status=self.status, text=json.dumps(self.body()), content_type="application/json", headers=headers
        )


class Unsupported(AcrError):
    status = 400
    code = "UNSUPPORTED"


class Unauthorized(AcrError):
    status = 401
    code = "UNAUTHORIZED"

    @classmethod
    def challenge(cls, *, realm: str, service: str, scope: str, detail: object) -> Unauthorized:
        header = f'Bearer realm="{realm}",service="{service}",scope="{scope}"'
        return cls(
            "authentication required, visit https://aka.ms/acr/authorization for more information.",
            detail=detail,
            headers={"WWW-Authenticate": header},
        )


class Denied(AcrError):
    status = 403
    code = "DENIED"


class NameUnknown(AcrError):
    status = 404
    code = "NAME_UNKNOWN"

    @classmethod
    def repository(cls, name: str) -> NameUnknown:
        return cls("repository name not known to registry", detail={"name": name})


class ManifestUnknown(AcrError):
    status = 404
    code = "MANIFEST_UNKNOWN"

    @classmethod
    def reference(cls, reference: str) -> ManifestUnknown:
        return cls(f"manifest {reference} is not found", detail={"Reference": reference})


class TagUnknown(AcrError):
    status = 404
    code = "TAG_UNKNOWN"

    @classmethod
    def tag(cls, tag: str) -> TagUnknown:
        return cls("the specified tag does not exist", detail={"Tag": tag})


class AuthenticationError(AcrError):
    """What /oauth2/exchange and /oauth2/token answer for a bad AAD token, refresh token or grant."""

    status = 401
    code = "UNAUTHORIZED"
