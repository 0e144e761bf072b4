"""The fan-out's queue messages: which panels (row keys) of which operation a worker should look at.

Messages carry ids only — never a secret, never a panel's state (the store has it, and a redelivered
message must not replay an old view). `v` lets a future format coexist with messages already queued.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from shared.errors import safe_text
from shared.queues import FLEET_APPLY_QUEUE

log = logging.getLogger("fluxfleet.fleet")

MESSAGE_VERSION = 1


class ApplyMessage(TypedDict):
    """`ff-fleet-apply`: apply the change to these panels (row keys) of one operation's stage."""

    v: int
    op: str
    stage: int
    panels: list[str]


class VerifyMessage(TypedDict):
    """`ff-fleet-verify`: check convergence of these panels (row keys) of one operation."""

    v: int
    op: str
    panels: list[str]


def batch_messages(
    queue: str, operation_id: str, keys: Sequence[str], *, stage: int, batch_size: int
) -> list[dict[str, Any]]:
    """The messages that carry `keys` in batches of `batch_size` (apply messages name their stage)."""
    messages: list[dict[str, Any]] = []
    for start in range(0, len(keys), batch_size):
        message: dict[str, Any] = {
            "v": MESSAGE_VERSION,
            "op": operation_id,
            "panels": list(keys[start : start + batch_size]),
        }
        if queue == FLEET_APPLY_QUEUE:
            message["stage"] = stage
        messages.append(message)
    return messages


def parse_message(message: Mapping[str, Any], *, with_stage: bool) -> tuple[str, list[str]] | None:
    """A queue message's operation id and panel keys; None (logged) for a message that is not ours."""
    operation_id = message.get("op")
    keys = message.get("panels")
    if (
        message.get("v") != MESSAGE_VERSION
        or not isinstance(operation_id, str)
        or not isinstance(keys, list)
        or not all(isinstance(k, str) for k in keys)
        or (with_stage and not isinstance(message.get("stage"), int))
    ):
        log.error("malformed fleet message dropped: %s", safe_text(json.dumps(message, default=str)))
        return None
    return operation_id, keys
