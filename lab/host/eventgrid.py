"""The Event Grid trigger webhook, and the project's declared Event Grid subscriptions.

Webhook (`/runtime/webhooks/eventgrid?functionName=NAME`, as the Event Grid extension serves it):
- the `eventgrid_extension` system key (or the master key) in `code`/`x-functions-key`, else 401;
- `OPTIONS`: the CloudEvents abuse-protection handshake, answered with `WebHook-Allowed-Origin`;
- `aeg-event-type: SubscriptionValidation`: the Event Grid schema handshake, `{"validationResponse": code}`;
- `aeg-event-type: Notification`: a JSON array or a single event; one invocation per event, run in
  parallel; 202 when all succeed, 500 when any fails (so Event Grid retries the delivery);
- `aeg-event-type: Unsubscribe`: 202; anything else: 400; unknown function: 404.

Subscriptions: which function receives which topic's events is declared once in
`infra/event-subscriptions.json` (format in lab/docs/host.md). On start the host creates exactly those
whose function exists, through the lab's control API, pointing at its own webhook with the system key,
and deletes them again on a clean shutdown. A topic alias that names several system topics (lab.json
`eventgrid.topics.subscriptions`: every lab subscription's) becomes one Event Grid subscription per
topic, named `<name>-1`, `<name>-2`, ... in the alias's order, as one Azure event subscription listens
to one topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from lab.host import triggers
from lab.host.errors import HostStartupError
from lab.host.indexing import IndexedFunction
from lab.host.invocation import Invoker

log = logging.getLogger("lab.host.eventgrid")

WEBHOOK_PATH = "/runtime/webhooks/eventgrid"
EVENT_TYPE_HEADER = "aeg-event-type"
# The Event Grid extension answers the abuse-protection handshake only for the public clouds' origins.
PUBLIC_CLOUD_ORIGIN = "eventgrid.azure.net"
KNOWN_ORIGINS = frozenset(
    {
        PUBLIC_CLOUD_ORIGIN,
        "eventgrid.azure.us",
        "eventgrid.azure.eaglex.ic.gov",
        "eventgrid.azure.microsoft.scloud",
        "eventgrid.azure.cn",
    }
)
SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")
# Azure event subscription names: 3-64 letters, digits and dashes.
_SUBSCRIPTION_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")
CONTROL_TIMEOUT_S = 30.0

Schema = Literal["EventGridSchema", "CloudEventSchemaV1_0"]


@dataclass(frozen=True)
class WebhookResponse:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def allowed_origin(request_origin: str | None) -> str:
    return request_origin if request_origin in KNOWN_ORIGINS else PUBLIC_CLOUD_ORIGIN


def validation_code(payload: Any) -> str:
    """The code of a SubscriptionValidation request (an EG array, or a CloudEvent with data maybe as text)."""
    if isinstance(payload, list) and payload:
        data = payload[0].get("data") if isinstance(payload[0], dict) else None
    elif isinstance(payload, dict):
        data = payload.get("data")
        if isinstance(data, str):
            data = json.loads(data)
    else:
        raise ValueError("the validation request must be a JSON object or array")
    if not isinstance(data, dict) or "validationCode" not in data:
        raise ValueError("the validation request has no data.validationCode")
    return str(data["validationCode"])


async def handle_webhook(
    *,
    method: str,
    event_type_header: str | None,
    origin_header: str | None,
    body: bytes,
    function: IndexedFunction,
    invoker: Invoker,
) -> WebhookResponse:
    """Everything after key and function lookup: handshakes and dispatch."""
    if method == "OPTIONS":
        return WebhookResponse(
            status=200, headers=(("WebHook-Allowed-Origin", allowed_origin(origin_header)),)
        )
    kind = (event_type_header or "").lower()
    if kind == "subscriptionvalidation":
        try:
            code = validation_code(json.loads(body))
        except ValueError as exc:
            return WebhookResponse(status=400, body=str(exc).encode())
        log.info("perform handshake with eventGrid for function: %s", function.name)
        return WebhookResponse(
            status=200,
            body=json.dumps({"validationResponse": code}).encode(),
            headers=(("Content-Type", "application/json; charset=utf-8"),),
        )
    if kind == "unsubscribe":
        return WebhookResponse(status=202)
    if kind != "notification":
        return WebhookResponse(status=400)
    try:
        payload = json.loads(body)
    except ValueError:
        return WebhookResponse(
            status=400, body=b"The request content should be parseable into a JSON object or array"
        )
    events = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(event, dict) for event in events):
        return WebhookResponse(status=400, body=b"every event must be a JSON object")
    outcomes = await asyncio.gather(
        *(dispatch_event(event, function=function, invoker=invoker) for event in events)
    )
    failed = [outcome for outcome in outcomes if not outcome.succeeded]
    if failed:
        # The extension answers with the exception message; the lab names only its type (no app text leaks).
        error = failed[0].error
        return WebhookResponse(status=500, body=f"function failed: {type(error).__name__}".encode())
    return WebhookResponse(status=202)


async def dispatch_event(event: Mapping[str, Any], *, function: IndexedFunction, invoker: Invoker) -> Any:
    pytype = function.trigger_pytype
    return await invoker.invoke(
        function,
        trigger_label="eventGrid",
        make_trigger=lambda _: triggers.event_grid_event(event, pytype=pytype),
    )


# --- subscriptions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionDeclaration:
    """One entry of infra/event-subscriptions.json."""

    name: str
    topic: str
    """A topic alias from lab.json `eventgrid.topics` (`acr`, `keyvault`) or an ARM resource id."""
    function: str
    event_types: tuple[str, ...]
    schema: Schema


def parse_declarations(doc: Any, *, source: str) -> list[SubscriptionDeclaration]:
    if not isinstance(doc, list):
        raise HostStartupError(f"{source} must hold a JSON array of subscriptions")
    declarations: list[SubscriptionDeclaration] = []
    for index, entry in enumerate(doc):
        where = f"{source}[{index}]"
        if not isinstance(entry, dict):
            raise HostStartupError(f"{where} must be an object")
        name, topic, function = entry.get("name"), entry.get("topic"), entry.get("function")
        if not isinstance(name, str) or not _SUBSCRIPTION_NAME.match(name):
            raise HostStartupError(f"{where}.name must be 3-64 letters, digits or dashes")
        for field_name, value in (("topic", topic), ("function", function)):
            if not isinstance(value, str) or not value:
                raise HostStartupError(f"{where}.{field_name} must be a non-empty string")
        event_types = entry.get("eventTypes", [])
        if not isinstance(event_types, list) or not all(isinstance(item, str) for item in event_types):
            raise HostStartupError(f"{where}.eventTypes must be a list of strings")
        schema = entry.get("schema", "EventGridSchema")
        if schema not in SCHEMAS:
            raise HostStartupError(f"{where}.schema must be one of {', '.join(SCHEMAS)}")
        declarations.append(
            SubscriptionDeclaration(
                name=name,
                topic=str(topic),
                function=str(function),
                event_types=tuple(event_types),
                schema="EventGridSchema" if schema == "EventGridSchema" else "CloudEventSchemaV1_0",
            )
        )
    names = [declaration.name for declaration in declarations]
    if len(set(names)) != len(names):
        raise HostStartupError(f"{source} declares a subscription name twice")
    return declarations


def load_declarations(path: Path) -> list[SubscriptionDeclaration]:
    if not path.exists():
        log.info("no Event Grid subscriptions declared (%s does not exist)", path)
        return []
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise HostStartupError(f"{path} is not valid JSON: {exc}") from exc
    return parse_declarations(doc, source=str(path))


# Azure event subscription names are at most 64 characters; a group member's name adds "-<n>".
_MAX_SUBSCRIPTION_NAME = 64


def resolve_topics(topic: str, lab_doc: Mapping[str, Any]) -> tuple[list[str], bool] | None:
    """The topic ids a declaration's topic stands for, and whether it was a group alias (a list in
    lab.json `eventgrid.topics`, such as `subscriptions`); None for an unknown alias."""
    aliases = dict((lab_doc.get("eventgrid") or {}).get("topics") or {})
    if topic in aliases:
        value = aliases[topic]
        if isinstance(value, list):
            return [str(item) for item in value], True
        return [str(value)], False
    return ([topic], False) if topic.startswith("/subscriptions/") else None


def subscription_names(name: str, topics: Sequence[str], *, grouped: bool) -> list[str]:
    """One Event Grid subscription name per topic: the declared name, or `<name>-<n>` for a group alias."""
    if not grouped:
        return [name]
    names = [f"{name}-{index}" for index in range(1, len(topics) + 1)]
    too_long = [candidate for candidate in names if len(candidate) > _MAX_SUBSCRIPTION_NAME]
    if too_long:
        raise HostStartupError(f"event subscription name {too_long[0]!r} is longer than 64 characters")
    return names


class SubscriptionManager:
    """Creates the declared subscriptions in the lab's Event Grid and removes them on shutdown."""

    def __init__(self, *, lab_doc: Mapping[str, Any], host_url: str, eventgrid_key: str) -> None:
        self._lab_doc = lab_doc
        self._control = str(lab_doc.get("endpoints", {}).get("control", ""))
        self._host_url = host_url
        self._key = eventgrid_key
        self._created: dict[str, str] = {}  # name -> endpoint
        ca = lab_doc.get("ca_bundle")
        self._ssl = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()

    def endpoint_for(self, function_name: str) -> str:
        return (
            f"{self._host_url}{WEBHOOK_PATH}?functionName={quote(function_name, safe='')}"
            f"&code={quote(self._key, safe='')}"
        )

    async def create(
        self, declarations: Sequence[SubscriptionDeclaration], functions: Mapping[str, IndexedFunction]
    ) -> None:
        wanted: list[tuple[SubscriptionDeclaration, str, IndexedFunction, str]] = []
        for declaration in declarations:
            function = functions.get(declaration.function.lower())
            if function is None or function.trigger_type != "eventGridTrigger":
                log.warning(
                    "event subscription %s names function %r, which is not an Event Grid function of this "
                    "app; not creating it",
                    declaration.name,
                    declaration.function,
                )
                continue
            resolved = resolve_topics(declaration.topic, self._lab_doc)
            if not resolved or not resolved[0]:
                log.warning(
                    "event subscription %s: topic %r is neither an alias in lab.json eventgrid.topics nor "
                    "a resource id (is the lab's Event Grid service running?); not creating it",
                    declaration.name,
                    declaration.topic,
                )
                continue
            topics, grouped = resolved
            names = subscription_names(declaration.name, topics, grouped=grouped)
            wanted.extend(
                (declaration, name, function, topic) for name, topic in zip(names, topics, strict=True)
            )
        if not wanted:
            return
        timeout = aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for declaration, name, function, topic in wanted:
                endpoint = self.endpoint_for(function.name)
                body = {
                    "name": name,
                    "topic": topic,
                    "endpoint": endpoint,
                    "eventTypes": list(declaration.event_types),
                    "schema": declaration.schema,
                }
                try:
                    async with session.post(
                        f"{self._control}/_lab/eventgrid/subscriptions", json=body, ssl=self._ssl
                    ) as response:
                        if response.status >= 400:
                            log.warning(
                                "the lab refused event subscription %s (HTTP %d); events for %s will not "
                                "arrive (is the lab's Event Grid service running?)",
                                name,
                                response.status,
                                function.name,
                            )
                            continue
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning(
                        "creating event subscription %s failed (%s); events for %s will not arrive",
                        name,
                        type(exc).__name__,
                        function.name,
                    )
                    continue
                self._created[name] = endpoint
                log.info(
                    "event subscription %s: %s events %s -> %s (%s)",
                    name,
                    topic,
                    ",".join(declaration.event_types) or "(all)",
                    function.name,
                    declaration.schema,
                )

    async def delete_all(self) -> None:
        """Remove what this host created, unless another host has since pointed it at itself."""
        if not self._created:
            return
        timeout = aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_S)
        base = f"{self._control}/_lab/eventgrid/subscriptions"
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(base, ssl=self._ssl) as response:
                    listed = await response.json(content_type=None) if response.status == 200 else {}
            except (aiohttp.ClientError, TimeoutError, ValueError):
                listed = {}
            # The list shows each endpoint without its query (the key): compare that part.
            current = {
                str(item.get("name", "")).lower(): item.get("endpointBaseUrl")
                for item in (listed.get("subscriptions") or [])
                if isinstance(item, dict)
            }
            for name, endpoint in list(self._created.items()):
                owner = current.get(name.lower())
                if owner is not None and owner != endpoint.split("?", 1)[0]:
                    log.info("event subscription %s now belongs to another host; leaving it", name)
                    continue
                try:
                    async with session.delete(f"{base}/{quote(name, safe='')}", ssl=self._ssl) as response:
                        if response.status >= 400 and response.status != 404:
                            log.warning("deleting event subscription %s: HTTP %d", name, response.status)
                        else:
                            log.info("deleted event subscription %s", name)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("deleting event subscription %s failed (%s)", name, type(exc).__name__)
        self._created.clear()
