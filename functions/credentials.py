"""Credential rotation triggers: HTTP routes, the daily check and Key Vault's Event Grid events.

Each handler parses its trigger payload into a typed request, calls one method of
`shared.services.credentials.service.CredentialService`, and maps the result or error. No response,
log line or error here ever carries a PAT: the service deals in Key Vault *versions*.

- `POST /api/credentials/rollout` `{"reason", "version"?, "dryRun"?, "target"?}` → 202 + operation, or
  200 with the plan for a dry run, or 422 with the preflight checks when the version is refused;
- `GET /api/credentials` → the credential map, days left, stragglers, safe revocation;
- `GET /api/credentials/workload-identity` → which panels can move to `provider: Azure`;
- `POST /api/credentials/migrate` `{"reason", "target", "dryRun"?}` → the move, panel by panel;
- timer `%FLUXFLEET_ROTATION_SCHEDULE%` → expiry warnings and a rollout to unproven panels;
- Event Grid (Key Vault system topic) → roll out new versions, warn on near-expiry/expired.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import azure.functions as func

from functions.http import handle_errors, json_response, read_json, requested_by
from shared.errors import Forbidden, InvalidInput, PermanentError, TransientError
from shared.runtime import get_runtime

if TYPE_CHECKING:  # models load on first use, not when the host indexes the app (cold start)
    from shared.models import Selector

log = logging.getLogger("fluxfleet.functions.credentials")

bp = func.Blueprint()

ROLLOUT_FIELDS = frozenset({"reason", "version", "dryRun", "target"})
MIGRATE_FIELDS = frozenset({"reason", "dryRun", "target"})
# How long a client should wait before polling an operation it just started (seconds).
POLL_AFTER_S = 10


def _service() -> Any:
    from shared.services.credentials.composition import SERVICE_NAME, from_runtime

    return get_runtime().service(SERVICE_NAME, from_runtime)


@bp.route(route="credentials/rollout", methods=["POST"])
@handle_errors
def credentials_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.credentials.service import RolloutRequest

    body = _fields(read_json(req), ROLLOUT_FIELDS)
    caller = _authorized(req)
    request = RolloutRequest(
        reason=_reason(body),
        requested_by=caller,
        trigger="api",
        version=_version(body.get("version")),
        selection=_target(body.get("target"), required=False),
        dry_run=_flag(body, "dryRun"),
        idempotency_key=req.headers.get("Idempotency-Key") or None,
    )
    started = _service().start_rollout(request)
    version = {"version": started.version.version, "expiresOn": _iso(started.version.expires_on)}
    if started.result.operation_id is None:
        return json_response(
            {
                "dryRun": True,
                **version,
                "preflight": started.preflight.to_json(),
                "plan": started.result.document,
            }
        )
    return _accepted(started.result, {**version, "preflight": started.preflight.to_json()})


@bp.route(route="credentials", methods=["GET"])
@handle_errors
def credentials_report(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(_service().report())


@bp.route(route="credentials/workload-identity", methods=["GET"])
@handle_errors
def credentials_workload_identity(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(_service().workload_identity_report(None))


@bp.route(route="credentials/migrate", methods=["POST"])
@handle_errors
def credentials_migrate(req: func.HttpRequest) -> func.HttpResponse:
    from shared.errors import Unprocessable
    from shared.services.credentials.service import MigrationRequest

    body = _fields(read_json(req), MIGRATE_FIELDS)
    caller = _authorized(req)
    selection = _target(body.get("target"), required=True)
    assert selection is not None
    started = _service().start_migration(
        MigrationRequest(
            reason=_reason(body),
            requested_by=caller,
            selection=selection,
            dry_run=_flag(body, "dryRun"),
            idempotency_key=req.headers.get("Idempotency-Key") or None,
        )
    )
    if started.result is None:
        raise Unprocessable(
            "target", "no selected panel is ready for workload identity", notReady=started.not_ready
        )
    if started.result.operation_id is None:
        return json_response({"dryRun": True, "plan": started.result.document, "notReady": started.not_ready})
    return _accepted(started.result, {"notReady": started.not_ready})


@bp.timer_trigger(arg_name="timer", schedule="%FLUXFLEET_ROTATION_SCHEDULE%")
def credentials_scheduled_check(timer: func.TimerRequest) -> None:
    try:
        outcome = _service().run_scheduled_check()
    except TransientError:
        raise  # the invocation fails visibly; the next occurrence runs it again
    except PermanentError as exc:
        log.error("scheduled credential check failed: %s", exc.message, extra={"code": exc.code})
        return
    log.info("scheduled credential check (past due: %s): %s", timer.past_due, outcome)


@bp.event_grid_trigger(arg_name="event")
def credentials_keyvault_event(event: func.EventGridEvent) -> None:
    from shared.services.credentials.keyvault_events import parse_secret_event

    # The worker hands over a CloudEvent when the subscription uses the CloudEvents schema.
    event_type = getattr(event, "event_type", None) or getattr(event, "type", "")
    event_time: datetime | None = getattr(event, "event_time", None) or getattr(event, "time", None)
    try:
        parsed = parse_secret_event(
            event_id=event.id,
            event_type=str(event_type),
            subject=event.subject,
            data=event.get_json(),
            event_time=event_time,
        )
    except InvalidInput as exc:
        # Redelivery cannot fix a malformed event: record it and let Event Grid consider it delivered.
        log.error("Key Vault event %s dropped: %s", event.id, exc.message)
        return
    if parsed is None:
        log.info("event %s of type %s ignored", event.id, event_type)
        return
    try:
        outcome = _service().on_secret_event(parsed)
    except PermanentError as exc:
        log.error("Key Vault event %s failed: %s", event.id, exc.message, extra={"code": exc.code})
        return
    log.info("Key Vault event %s (%s): %s", event.id, parsed.kind.value, outcome)


# --- request parsing ----------------------------------------------------------------------------------
def _fields(body: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")
    return body


def _reason(body: dict[str, Any]) -> str:
    from shared.services.fleet_changes import check_reason

    return check_reason(body.get("reason"))


def _version(value: Any) -> Any:
    from shared.services.credentials.model import SecretVersionId
    from shared.services.credentials.rollout import VERSION_PATTERN

    if value is None:
        return None
    if not isinstance(value, str) or not VERSION_PATTERN.match(value):
        raise InvalidInput("version", "must be a Key Vault secret version id (hex digits)")
    return SecretVersionId(value)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(name, "must be true or false")
    return value


def _target(value: Any, *, required: bool) -> Selector | None:
    from shared.services.selection import parse_selector

    if value is None:
        if required:
            raise InvalidInput(
                "target", 'is required: name clusters, tags, resourceGroups, subscriptions or "all"'
            )
        return None
    return parse_selector(value)


def _authorized(req: func.HttpRequest) -> str:
    """The caller, when allowed to change the fleet (`FLUXFLEET_ALLOWED_PRINCIPALS`), else 403."""
    caller = requested_by(req)
    allowed = get_runtime().settings.allowed_principals
    if allowed and caller not in allowed:
        raise Forbidden(f"{caller} may not change the fleet's credentials")
    return caller


def _accepted(result: Any, extra: dict[str, Any]) -> func.HttpResponse:
    """202 for a started (or idempotently replayed) operation, pointing at its status document."""
    status_url = f"/api/operations/{result.operation_id}"
    return json_response(
        {
            "operationId": result.operation_id,
            "status": result.document["status"],
            "statusUrl": status_url,
            **extra,
        },
        status=202,
        headers={"Location": status_url, "Retry-After": str(POLL_AFTER_S)},
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
