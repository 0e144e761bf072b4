"""The requests conformance takes: `POST /api/fleet/conform|reset` bodies and the Event Grid event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidInput
from shared.services.fleet.requests import ChangeRequest, parse_change_request

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
CLUSTER_WRITE = "microsoft.kubernetes/connectedclusters/write"


def parse_conform_request(body: Mapping[str, Any], *, with_confirm: bool) -> tuple[ChangeRequest, bool]:
    """(the change request, confirm). The declaration names the configuration: a body may not."""
    fields = dict(body)
    if "configuration" in fields:
        raise InvalidInput("configuration", "unknown field: the declaration names the configuration")
    confirm = False
    if with_confirm and "confirm" in fields:
        confirm = fields.pop("confirm")
        if not isinstance(confirm, bool):
            raise InvalidInput("confirm", "must be true or false")
    return parse_change_request(fields), confirm


@dataclass(frozen=True)
class ClusterConnected:
    event_id: str
    cluster_id: str


def parse_cluster_event(envelope: Mapping[str, Any]) -> ClusterConnected | None:
    """A connectedClusters write from either schema's envelope; None for any other event."""
    kind = str(envelope.get("eventType") or envelope.get("type") or "")
    data = envelope.get("data")
    if kind != WRITE_SUCCESS or not isinstance(data, dict):
        return None
    operation = str(data.get("operationName") or (data.get("authorization") or {}).get("action") or "")
    if operation.lower() != CLUSTER_WRITE or str(data.get("status") or "Succeeded") != "Succeeded":
        return None
    resource = str(data.get("resourceUri") or envelope.get("subject") or "")
    event_id = str(envelope.get("id") or "")
    if not resource or not event_id:
        return None
    return ClusterConnected(event_id=event_id, cluster_id=resource)
