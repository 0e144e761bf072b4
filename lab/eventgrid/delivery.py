"""Push delivery as Event Grid does it: handshake on creation, then at-least-once delivery with retries.

Publishers (Key Vault, ACR, any thread) only hand an event to the loop; fan-out, HTTP and retries run as
tasks, so a slow or failing subscriber never blocks a publisher. Each matching subscription gets its own
attempt sequence: success is a 2xx Event Grid accepts; 400, 401, 403 and 413 are not retried (the event is
dead-lettered at once, as Event Grid does for webhooks); anything else, a timeout or a refused connection is
retried on Event Grid's schedule (10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h)
by the lab clock, until `maxDeliveryAttempts` or the event's time-to-live, then dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import ssl
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp

from lab.core.clock import LabClock
from lab.core.events import TopicEvent
from lab.eventgrid.errors import ValidationFailed
from lab.eventgrid.models import DeliveryRecord, EventGridBackend, EventSubscription
from lab.eventgrid.schemas import (
    CLOUD_EVENT_SCHEMA,
    WEBHOOK_REQUEST_ORIGIN,
    event_time,
    notification,
    rendered,
    validation_event,
    validation_headers,
)

log = logging.getLogger("lab.eventgrid")

# Event Grid's documented retry schedule (lab seconds after the failed attempt): 10 s, 30 s, 1 min, 5 min,
# 10 min, 30 min, 1 h, 3 h, 6 h, then "every 12 to 24 hours" (the lab repeats the 12-hour lower bound).
RETRY_SCHEDULE_S = (10, 30, 60, 5 * 60, 10 * 60, 30 * 60, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
# Responses Event Grid takes as delivered.
SUCCESS_STATUSES = frozenset({200, 201, 202, 203, 204})
# Webhook responses Event Grid does not retry (the endpoint will never accept the event).
NOT_RETRIED_STATUSES = frozenset({400, 401, 403, 413})
# Event Grid waits this long (real seconds: it is a network timeout) for a webhook to answer.
DELIVERY_TIMEOUT_S = 30.0
# At most this many deliveries in flight at once, so a burst of events cannot exhaust sockets.
MAX_CONCURRENT_DELIVERIES = 64
# The api-version Event Grid puts in a subscription's validationUrl.
VALIDATION_API_VERSION = "2018-05-01-preview"

_OUTCOMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    408: "TimedOut",
    413: "RequestEntityTooLarge",
    503: "Busy",
}
# Only the first is attested in Azure's answers; the others follow its pattern.
_UNDELIVERABLE_REASONS = {
    400: "UndeliverableDueToHttpBadRequest",
    401: "UndeliverableDueToHttpUnauthorized",
    403: "UndeliverableDueToHttpForbidden",
    413: "UndeliverableDueToHttpRequestEntityTooLarge",
}


def retry_delay(attempts_made: int) -> float:
    return float(RETRY_SCHEDULE_S[min(attempts_made, len(RETRY_SCHEDULE_S)) - 1])


def outcome_of(status: int | None, *, timed_out: bool = False) -> str:
    if status in SUCCESS_STATUSES:
        return "Delivered"
    if timed_out:
        return "TimedOut"
    if status is None:
        return "GenericError"  # no HTTP answer at all (refused, reset, TLS failure)
    return _OUTCOMES.get(status, "GenericError")


@dataclass(frozen=True)
class PendingDelivery:
    subscription: EventSubscription
    event: TopicEvent
    published_at: datetime  # lab time, for the time-to-live
    attempt: int = 1
    duplicate: bool = False


class Deliverer:
    def __init__(self, *, backend: EventGridBackend, clock: LabClock) -> None:
        self.backend = backend
        self.clock = clock
        self.validation_base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        self._random = random.Random(0x5EED)  # deterministic duplicates: a test's pattern is repeatable
        # validation id -> (token, validated through the validationUrl?) while a handshake is running
        self._validations: dict[str, tuple[str, bool]] = {}

    async def start(self, *, client_ssl: ssl.SSLContext, validation_base_url: str) -> None:
        """Open the HTTP client (trusting `client_ssl`'s CAs); validationUrls go to `validation_base_url`."""
        self._loop = asyncio.get_running_loop()
        self.validation_base_url = validation_base_url
        connector = aiohttp.TCPConnector(ssl=client_ssl, limit=MAX_CONCURRENT_DELIVERIES)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
        )

    async def stop(self) -> None:
        self.cancel_all()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._random.seed(0x5EED)

    # --- publishing side: called from any thread, never blocks ------------------------------------------
    def publish(self, event: TopicEvent) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event: TopicEvent) -> None:
        now = self.clock.now()
        for subscription in self.backend.matching(event):
            self._spawn(self._attempt(PendingDelivery(subscription, event, published_at=now)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one attempt and what follows it -----------------------------------------------------------------
    async def _attempt(self, pending: PendingDelivery) -> None:
        subscription, event = pending.subscription, pending.event
        if not self.backend.is_current(subscription):
            return  # the subscription was deleted or replaced: Event Grid drops its pending events
        body, headers = notification(
            event,
            schema=subscription.schema,
            subscription=subscription.name,
            delivery_count=pending.attempt - 1,
        )
        status, timed_out = await self._post(subscription, body, headers)
        outcome = outcome_of(status, timed_out=timed_out)
        self.backend.record_delivery(
            DeliveryRecord(
                event_id=event.id,
                event_type=event.event_type,
                subscription=subscription.name,
                attempt=pending.attempt,
                status=status,
                outcome=outcome,
                time=event_time(self.clock.now()),
                duplicate=pending.duplicate,
            )
        )
        if status in SUCCESS_STATUSES:
            if not pending.duplicate and self._random.random() < subscription.duplicate_rate:
                self._spawn(self._attempt(replace(pending, duplicate=True)))  # at-least-once, same id
            return
        if status in NOT_RETRIED_STATUSES:
            self._dead_letter(
                pending,
                reason=_UNDELIVERABLE_REASONS[status],
                attempts=pending.attempt,
                status=status,
                outcome=outcome,
            )
            return
        if pending.attempt >= subscription.max_delivery_attempts:
            self._dead_letter(
                pending,
                reason="MaxDeliveryAttemptsExceeded",
                attempts=pending.attempt,
                status=status,
                outcome=outcome,
            )
            return
        self._spawn(
            self._retry_later(
                replace(pending, attempt=pending.attempt + 1),
                retry_delay(pending.attempt),
                last=(status, outcome),
            )
        )

    async def _retry_later(
        self, pending: PendingDelivery, delay_s: float, *, last: tuple[int | None, str]
    ) -> None:
        await self.clock.sleep(delay_s)
        ttl = timedelta(minutes=pending.subscription.event_ttl_minutes)
        if self.clock.now() - pending.published_at > ttl:
            status, outcome = last
            self._dead_letter(
                pending,
                reason="TimeToLiveExceeded",
                attempts=pending.attempt - 1,
                status=status,
                outcome=outcome,
            )
            return
        await self._attempt(pending)

    async def _post(
        self, subscription: EventSubscription, body: object, headers: dict[str, str]
    ) -> tuple[int | None, bool]:
        """(HTTP status or None, timed out?) of one POST; never raises for the endpoint's failures."""
        assert self._session is not None, "Deliverer.start() was not awaited"
        async with self._slots:
            try:
                async with self._session.post(
                    subscription.endpoint, json=body, headers={**subscription.headers, **headers}
                ) as response:
                    await response.read()
                    return response.status, False
            except TimeoutError:
                return None, True
            except (aiohttp.ClientError, OSError) as exc:
                log.info(
                    "delivery to %s for %s failed: %s",
                    subscription.endpoint_base_url,
                    subscription.name,
                    type(exc).__name__,
                )
                return None, False

    def _dead_letter(
        self,
        pending: PendingDelivery,
        *,
        reason: str,
        attempts: int,
        status: int | None = None,
        outcome: str | None = None,
    ) -> None:
        now = event_time(self.clock.now())
        record = {
            **rendered(pending.event, pending.subscription.schema),
            "subscription": pending.subscription.name,
            "deadLetterReason": reason,
            "deliveryAttempts": attempts,
            "lastDeliveryOutcome": outcome or "GenericError",
            "lastHttpStatusCode": status,
            "publishTime": event_time(pending.published_at),
            "lastDeliveryAttemptTime": now,
        }
        self.backend.record_dead_letter(record)

    # --- subscription validation -------------------------------------------------------------------------
    def mark_validated(self, validation_id: str, token: str) -> bool:
        """The receiver called the validationUrl (manual validation); True if the link was live."""
        pending = self._validations.get(validation_id)
        if pending is None or not secrets.compare_digest(token, pending[0]):
            return False
        self._validations[validation_id] = (pending[0], True)
        return True

    async def validate(self, subscription: EventSubscription, *, topic: str) -> None:
        """Event Grid's webhook handshake; raises ValidationFailed with Azure's reason if it fails."""
        if subscription.schema == CLOUD_EVENT_SCHEMA:
            await self._validate_cloud_events(subscription)
        else:
            await self._validate_event_grid(subscription, topic=topic)

    async def _validate_event_grid(self, subscription: EventSubscription, *, topic: str) -> None:
        assert self._session is not None, "Deliverer.start() was not awaited"
        code, validation_id, token = str(uuid.uuid4()).upper(), str(uuid.uuid4()), secrets.token_urlsafe(16)
        query = urlencode(
            {
                "id": validation_id,
                "t": event_time(self.clock.now()),
                "apiVersion": VALIDATION_API_VERSION,
                "token": token,
            }
        )
        url = f"{self.validation_base_url}/eventsubscriptions/{subscription.name}/validate?{query}"
        body = validation_event(
            event_id=str(uuid.uuid4()), topic=topic, code=code, url=url, at=self.clock.now()
        )
        self._validations[validation_id] = (token, False)
        try:
            try:
                async with self._session.post(
                    subscription.endpoint,
                    json=body,
                    headers={**subscription.headers, **validation_headers(subscription.name)},
                ) as response:
                    status = response.status
                    answer: object = await response.json(content_type=None) if status == 200 else None
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                raise ValidationFailed.handshake(
                    endpoint=subscription.endpoint_base_url,
                    method="POST",
                    what=f"failed: {type(exc).__name__}",
                ) from exc
            if isinstance(answer, dict) and answer.get("validationResponse") == code:
                return
            if self._validations.get(validation_id, ("", False))[1]:
                return
            what = (
                "retuned 2XX response with invalid response"
                if status == 200  # sic: Azure's wording
                else f"failed with response code {status}"
            )
            raise ValidationFailed.handshake(
                endpoint=subscription.endpoint_base_url, method="POST", what=what
            )
        finally:
            self._validations.pop(validation_id, None)

    async def _validate_cloud_events(self, subscription: EventSubscription) -> None:
        """The CloudEvents abuse-protection handshake: OPTIONS, expecting the origin to be allowed."""
        assert self._session is not None, "Deliverer.start() was not awaited"
        headers = {**subscription.headers, "WebHook-Request-Origin": WEBHOOK_REQUEST_ORIGIN}
        try:
            async with self._session.options(subscription.endpoint, headers=headers) as response:
                status, allowed = response.status, response.headers.get("WebHook-Allowed-Origin")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ValidationFailed.handshake(
                endpoint=subscription.endpoint_base_url,
                method="OPTIONS",
                what=f"failed: {type(exc).__name__}",
            ) from exc
        if status != 200:
            raise ValidationFailed.handshake(
                endpoint=subscription.endpoint_base_url,
                method="OPTIONS",
                what=f"failed with response code {status}",
            )
        if allowed not in (WEBHOOK_REQUEST_ORIGIN, "*"):
            raise ValidationFailed.handshake(
                endpoint=subscription.endpoint_base_url,
                method="OPTIONS",
                what=f"returned WebHook-Allowed-Origin {allowed!r}, not {WEBHOOK_REQUEST_ORIGIN!r}",
            )
