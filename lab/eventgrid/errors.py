"""Event Grid's management errors, in ARM's envelope `{"error": {"code", "message"}}`.

Creating a subscription is an ARM call in Azure; when the webhook handshake fails, ARM answers 400 with code
`Url validation` and a message naming the endpoint and what went wrong. The lab's control API answers the
same way so tests and the demo see the reason as an operator would in the portal or CLI.
"""

from __future__ import annotations

import json
from typing import ClassVar

from aiohttp import web

_VALIDATION_HELP = "For troublehooting, visit https://aka.ms/esvalidation."  # sic: Azure's own spelling


class EventGridError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "InvalidRequest"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message}}
        return web.Response(status=self.status, text=json.dumps(body), content_type="application/json")


class InvalidRequest(EventGridError):
    status = 400
    code = "InvalidRequest"


class ValidationFailed(EventGridError):
    status = 400
    code = "Url validation"

    @classmethod
    def handshake(cls, *, endpoint: str, method: str, what: str) -> ValidationFailed:
        return cls(
            f"Webhook validation handshake failed for {endpoint}. Http {method} request {what}. "
            f"{_VALIDATION_HELP}"
        )


class SubscriptionNotFound(EventGridError):
    status = 404
    code = "ResourceNotFound"

    @classmethod
    def named(cls, name: str) -> SubscriptionNotFound:
        return cls(f"The event subscription '{name}' was not found.")
