"""The HTTP requests of the fleet API, validated into typed values (4xx problems naming the field).

`POST /api/fleet/suspend|resume` takes `{"reason", "target", "configuration"?, "dryRun"?, "waitSeconds"?}`;
`GET /api/fleet` takes the same selectors as query parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidInput
from shared.models import Selector
from shared.services.fleet.intake import check_reason
from shared.services.fleet.selection import parse_selector

# A pipeline may wait this long (s) for a definite answer; beyond it, poll the status URL. Well under
# the 230 s an HTTP-triggered function may take in Azure.
MAX_WAIT_SECONDS = 120

REQUEST_FIELDS = frozenset({"reason", "target", "configuration", "dryRun", "waitSeconds"})


@dataclass(frozen=True)
class ChangeRequest:
    """A validated `POST /api/fleet/suspend|resume` body."""

    reason: str
    target: Selector
    configuration: str | None = None
    dry_run: bool = False
    wait_seconds: float = 0.0


def parse_change_request(body: Mapping[str, Any]) -> ChangeRequest:
    """Strict: unknown fields, wrong types and an empty reason are `InvalidInput` naming the field."""
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field (allowed: {', '.join(sorted(REQUEST_FIELDS))})")
    if "target" not in body:
        raise InvalidInput("target", "is required")
    reason = check_reason(body.get("reason"))
    configuration = body.get("configuration")
    if configuration is not None and (not isinstance(configuration, str) or not configuration.strip()):
        raise InvalidInput("configuration", "must be a non-empty string (a Flux configuration name)")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("dryRun", "must be true or false")
    wait = body.get("waitSeconds", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidInput("waitSeconds", f"must be a number from 0 to {MAX_WAIT_SECONDS}")
    return ChangeRequest(
        reason=reason,
        target=parse_selector(body["target"]),
        configuration=configuration.strip() if configuration else None,
        dry_run=dry_run,
        wait_seconds=float(wait),
    )


INVENTORY_QUERY = frozenset({"clusters", "tags", "resourceGroups", "subscriptions", "code"})


def parse_inventory_query(params: Mapping[str, str]) -> Selector:
    """`GET /api/fleet?clusters=a,b&tags=ring:canary,site:lyon&resourceGroups=..&subscriptions=..`."""
    unknown = sorted(set(params) - INVENTORY_QUERY)
    if unknown:
        raise InvalidInput(
            unknown[0], "unknown query parameter (allowed: clusters, tags, resourceGroups, subscriptions)"
        )

    def items(name: str) -> list[str]:
        return [item.strip() for item in params.get(name, "").split(",") if item.strip()]

    tags: dict[str, str] = {}
    for pair in items("tags"):
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise InvalidInput("tags", f"expected name:value pairs separated by commas, got {pair!r}")
        tags[name.strip()] = value.strip()
    raw: dict[str, Any] = {
        "clusters": items("clusters"),
        "tags": tags,
        "resourceGroups": items("resourceGroups"),
        "subscriptions": items("subscriptions"),
    }
    if not any(raw.values()):
        return Selector(all=True)
    return parse_selector(raw, field="query")
