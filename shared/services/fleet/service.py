"""Suspend/resume for the HTTP handlers: start the change on the engine, wait a little if asked.

What this adds to the engine: the pipeline-facing answer — 200 with the final document when the
operation ended within `waitSeconds`, else 202 pointing at its status. Who may call is decided once,
for every route, by `functions.http.authorize`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.models import Selector
from shared.services.fleet.engine import FleetChangeEngine
from shared.services.fleet.intake import StartResult
from shared.services.fleet.inventory import FleetInventory
from shared.services.fleet.requests import ChangeRequest


@dataclass(frozen=True)
class ChangeAnswer:
    """What the handler turns into a response: 200 with a document, or 202 pointing at the operation."""

    status: int
    document: Mapping[str, Any]
    operation_id: str | None


class FleetService:
    """Suspend/resume requests and the inventory, for the HTTP handlers."""

    def __init__(self, *, engine: FleetChangeEngine, inventory: FleetInventory) -> None:
        self._engine = engine
        self._inventory = inventory

    @property
    def engine(self) -> FleetChangeEngine:
        return self._engine

    def request_change(
        self, *, kind: str, request: ChangeRequest, requested_by: str, idempotency_key: str | None
    ) -> ChangeAnswer:
        result = self._engine.start(
            kind=kind,
            params={},
            reason=request.reason,
            requested_by=requested_by,
            selection=request.target,
            configuration=request.configuration,
            idempotency_key=idempotency_key,
            dry_run=request.dry_run,
        )
        return self.answer(result, wait_seconds=request.wait_seconds)

    def answer(self, result: StartResult, *, wait_seconds: float) -> ChangeAnswer:
        """200 with the document (dry run, or final within `wait_seconds`), else 202 (any fleet kind)."""
        if result.operation_id is None:
            return ChangeAnswer(status=200, document=result.document, operation_id=None)
        document: Mapping[str, Any] = result.document
        if wait_seconds > 0 and document.get("status") == "running":
            document = self._engine.wait_for_final(result.operation_id, timeout_s=wait_seconds)
        if document.get("status") != "running":
            return ChangeAnswer(status=200, document=document, operation_id=result.operation_id)
        return ChangeAnswer(
            status=202,
            document={"operationId": result.operation_id, "status": "running"},
            operation_id=result.operation_id,
        )

    def inventory(self, *, selector: Selector) -> dict[str, Any]:
        """`GET /api/fleet` (see `FleetInventory.describe`)."""
        return self._inventory.describe(selector=selector)
