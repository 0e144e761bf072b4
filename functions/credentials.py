"""Credential rotation triggers: HTTP routes, the daily check and Key Vault's Event Grid events.

Each handler takes its payload through the one intake (`functions.http`, `functions.events`), calls one
method of `shared.services.credentials.service.CredentialService`, and maps the result or error. No
response, log line or error here ever carries a PAT: the service deals in Key Vault *versions*.

- `POST /api/credentials/rollout` `{"reason", "version"?, "dryRun"?, "target"?, "purpose"?}` → 202 +
  operation, or 200 with the plan for a dry run, or 422 with the preflight checks when the version is
  refused (`purpose`: `fleet`, factory panels only, or `automation`, the image-automation runner only);
- `GET /api/credentials` → the credential map of both credentials, days left, stragglers, revocation;
- `GET /api/credentials/workload-identity` → which panels can move to `provider: Azure`;
- `POST /api/credentials/migrate` `{"reason", "target", "dryRun"?}` → the move, panel by panel;
- timer `%FLUXFLEET_ROTATION_SCHEDULE%` → expiry warnings and a rollout to unproven panels (both);
- Event Grid (Key Vault system topic) → roll out new versions, warn on near-expiry/expired (routed to
  the credential whose secret it names).
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.events import event_envelope, event_type
from functions.http import (
    accepted,
    authorize,
    handle_errors,
    idempotency_key,
    json_response,
    read_json,
)
from shared.container import get_container
from shared.errors import InvalidInput, PermanentError, TransientError
from shared.timestamps import format_optional

log = logging.getLogger("fluxfleet.functions.credentials")

bp = func.Blueprint()

ACTION = "change the fleet's credentials"


@bp.route(route="credentials/rollout", methods=["POST"])
@handle_errors
def credentials_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.credentials.requests import parse_rollout_request

    container = get_container()
    who = authorize(req, container.settings, action=ACTION)
    request = parse_rollout_request(read_json(req), requested_by=who, idempotency_key=idempotency_key(req))
    started = container.credential_router.start_rollout(request)
    version = {"version": started.version.version, "expiresOn": format_optional(started.version.expires_on)}
    if started.result.operation_id is None:
        return json_response(
            {
                "dryRun": True,
                **version,
                "preflight": started.preflight.to_json(),
                "plan": started.result.document,
            }
        )
    body = {"status": started.result.status, **version, "preflight": started.preflight.to_json()}
    return accepted(req, started.result.operation_id, body)


@bp.route(route="credentials", methods=["GET"])
@handle_errors
def credentials_report(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_container().credential_router.report())


@bp.route(route="credentials/workload-identity", methods=["GET"])
@handle_errors
def credentials_workload_identity(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_container().credentials.workload_identity_report(None))


@bp.route(route="credentials/migrate", methods=["POST"])
@handle_errors
def credentials_migrate(req: func.HttpRequest) -> func.HttpResponse:
    from shared.errors import Unprocessable
    from shared.services.credentials.requests import parse_migration_request

    container = get_container()
    who = authorize(req, container.settings, action=ACTION)
    request = parse_migration_request(read_json(req), requested_by=who, idempotency_key=idempotency_key(req))
    started = container.credentials.start_migration(request)
    if started.result is None:
        raise Unprocessable(
            "target", "no selected panel is ready for workload identity", notReady=started.not_ready
        )
    if started.result.operation_id is None:
        return json_response({"dryRun": True, "plan": started.result.document, "notReady": started.not_ready})
    body = {"status": started.result.status, "notReady": started.not_ready}
    return accepted(req, started.result.operation_id, body)


@bp.timer_trigger(arg_name="timer", schedule="%FLUXFLEET_ROTATION_SCHEDULE%")
def credentials_scheduled_check(timer: func.TimerRequest) -> None:
    try:
        outcome = get_container().credential_router.run_scheduled_check()
    except TransientError:
        raise  # the invocation fails visibly; the next occurrence runs it again
    except PermanentError as exc:
        log.error("scheduled credential check failed: %s", exc.message, extra={"code": exc.code})
        return
    log.info("scheduled credential check (past due: %s): %s", timer.past_due, outcome)


@bp.event_grid_trigger(arg_name="event")
def credentials_keyvault_event(event: func.EventGridEvent) -> None:
    from shared.services.credentials.keyvault_events import parse_secret_envelope

    envelope = event_envelope(event)
    try:
        parsed = parse_secret_envelope(envelope)
    except InvalidInput as exc:
        # Redelivery cannot fix a malformed event: record it and let Event Grid consider it delivered.
        log.error("Key Vault event %s dropped: %s", envelope["id"], exc.message)
        return
    if parsed is None:
        log.info("event %s of type %s ignored", envelope["id"], event_type(envelope))
        return
    try:
        outcome = get_container().credential_router.on_secret_event(parsed)
    except PermanentError as exc:
        log.error("Key Vault event %s failed: %s", envelope["id"], exc.message, extra={"code": exc.code})
        return
    log.info("Key Vault event %s (%s): %s", envelope["id"], parsed.kind.value, outcome)
