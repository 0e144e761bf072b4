"""Credential handlers called with real `azure.functions` objects, over the service with in-memory fakes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from shared.config import Settings
from shared.container import Container, set_container
from shared.errors import TransientError
from shared.models.credentials import WorkloadIdentityFacts
from shared.services.credentials.service import CredentialService, CredentialSettings
from tests.unit.credentials.fakes import (
    BAD_PAT,
    GOOD_PAT,
    NOW,
    FakeDirectory,
    FakeEngine,
    FakeProbe,
    FakeReadiness,
    FakeSecretStore,
    MemoryLedger,
    RecordingNotifier,
    panel,
    version,
)

FUNCTION_KEY = "test-function-key"
PANELS = [panel("p1", ring="canary"), panel("p2", ring="broad")]


def principal(name: str) -> str:
    """An `x-ms-client-principal` header as App Service authentication writes it."""
    claims = {"auth_typ": "aad", "name_typ": "preferred_username", "role_typ": "roles"}
    document = {**claims, "claims": [{"typ": "preferred_username", "val": name}]}
    return base64.b64encode(json.dumps(document).encode()).decode()


class World:
    def __init__(self, value: str = GOOD_PAT, *, allowed: str = "", platform_auth: bool = False) -> None:
        env = {
            "FLUXFLEET_SUBSCRIPTION_IDS": "sub-1",
            "FLUXFLEET_ALLOWED_PRINCIPALS": allowed,
            "WEBSITE_AUTH_ENABLED": "true" if platform_auth else "",
        }
        self.settings = Settings.from_env(env)
        self.secrets = FakeSecretStore((version("v2", created=NOW), value), (version("v1"), "old-pat"))
        self.engine = FakeEngine(panels=list(PANELS))
        self.notifier = RecordingNotifier()
        self.ledger = MemoryLedger()
        self.service = CredentialService(
            settings=CredentialSettings(
                secret_name="flux-gitops-pat",
                git_url="https://dev.azure.com/o/p/_git/r",
                https_user="git",
                rings=("canary", "early", "broad"),
                ring_threshold=0.8,
                warning_days=(30, 14, 7, 3, 1),
            ),
            secrets=self.secrets,
            probe=FakeProbe(),
            ledger=self.ledger,
            notifier=self.notifier,
            engine=self.engine,
            directory=FakeDirectory(self.engine.panels),
            readiness=FakeReadiness({"p1": WorkloadIdentityFacts("1.16.3", True, True)}),
        )
        self.container = Container(self.settings, credentials=self.service)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    built = World(**getattr(request, "param", {}))
    set_container(built.container)
    yield built
    set_container(None)


def call(
    function: Any,
    method: str,
    route: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    request = func.HttpRequest(
        method,
        f"http://localhost/api/{route}",
        body=payload,
        headers={"x-functions-key": FUNCTION_KEY, **(headers or {})},
    )
    response: func.HttpResponse = function.build().get_user_function()(request)
    return response


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def rollout(body: Any = None, **kwargs: Any) -> func.HttpResponse:
    from functions.credentials import credentials_rollout

    return call(credentials_rollout, "POST", "credentials/rollout", body, **kwargs)


# --- POST /api/credentials/rollout --------------------------------------------------------------------
def test_a_rollout_request_answers_202_with_the_operation_and_never_the_pat(world: World) -> None:
    response = rollout({"reason": "quarterly rotation"})
    assert response.status_code == 202
    body = body_of(response)
    assert body["operationId"] == "op-1"
    assert body["version"] == "v2"
    # Absolute, like every 202 of the app: a pipeline polls it as it is.
    assert response.headers["Location"] == body["statusUrl"] == "http://localhost/api/operations/op-1"
    assert body["preflight"]["passed"] is True
    assert GOOD_PAT not in response.get_body().decode()
    assert world.engine.started[0]["requested_by"].startswith("function-key:")


def test_a_dry_run_answers_200_with_the_plan(world: World) -> None:
    response = rollout({"reason": "check", "dryRun": True})
    assert response.status_code == 200
    assert body_of(response)["dryRun"] is True
    assert world.engine.started[0]["dry_run"] is True


@pytest.mark.parametrize("world", [{"value": BAD_PAT}], indirect=True)
def test_a_version_refused_at_preflight_answers_422_with_the_checks(world: World) -> None:
    response = rollout({"reason": "rotate"})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = body_of(response)
    assert body["preflight"]["passed"] is False
    assert any(c["name"] == "authenticates" and c["outcome"] == "failed" for c in body["preflight"]["checks"])
    assert world.engine.started == []
    assert BAD_PAT not in response.get_body().decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x", "colour": "red"}, "colour"),
        ({"reason": ""}, "reason"),
        ({}, "reason"),
        ({"reason": "x", "dryRun": "yes"}, "dryRun"),
        ({"reason": "x", "version": "not a version!"}, "version"),
        ({"reason": "x", "target": {"all": True, "tags": {"ring": "canary"}}}, "target.all"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": "x", "purpose": "everything"}, "purpose"),
        (["reason"], "body"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(world: World, body: Any, field: str) -> None:
    response = rollout(body)
    assert response.status_code == 400
    assert body_of(response)["field"] == field
    assert world.engine.started == []


def test_an_oversized_body_is_413(world: World) -> None:
    response = rollout(raw=b'{"reason": "' + b"x" * (64 * 1024) + b'"}')
    assert response.status_code == 413
    assert world.engine.started == []


@pytest.mark.parametrize(
    "world", [{"allowed": "release-pipeline@contoso.example", "platform_auth": True}], indirect=True
)
def test_callers_outside_the_allowed_principals_get_403(world: World) -> None:
    assert rollout({"reason": "rotate"}).status_code == 403
    allowed = rollout(
        {"reason": "rotate"}, headers={"x-ms-client-principal": principal("release-pipeline@contoso.example")}
    )
    assert allowed.status_code == 202
    assert world.engine.started[0]["requested_by"] == "release-pipeline@contoso.example"


def test_an_idempotency_key_returns_the_same_operation(world: World) -> None:
    first = body_of(rollout({"reason": "rotate"}, headers={"Idempotency-Key": "k1"}))
    second = body_of(rollout({"reason": "rotate"}, headers={"Idempotency-Key": "k1"}))
    assert first["operationId"] == second["operationId"]


# --- GET routes --------------------------------------------------------------------------------------
def test_the_credential_report_shows_the_current_version_and_days_left(world: World) -> None:
    from functions.credentials import credentials_report

    response = call(credentials_report, "GET", "credentials")
    assert response.status_code == 200
    body = body_of(response)
    assert body["current"]["version"] == "v2"
    assert body["current"]["daysLeft"] == 60.0
    assert body["revocation"]["safe"] is False
    assert GOOD_PAT not in response.get_body().decode()


def test_the_workload_identity_report_lists_every_panel(world: World) -> None:
    from functions.credentials import credentials_workload_identity

    body = body_of(call(credentials_workload_identity, "GET", "credentials/workload-identity"))
    assert {row["name"]: row["ready"] for row in body["clusters"]} == {"p1": True, "p2": False}


# --- POST /api/credentials/migrate --------------------------------------------------------------------
def test_migrate_requires_a_target(world: World) -> None:
    from functions.credentials import credentials_migrate

    response = call(credentials_migrate, "POST", "credentials/migrate", {"reason": "off PATs"})
    assert response.status_code == 400
    assert body_of(response)["field"] == "target"


def test_migrating_only_unready_panels_is_422_with_the_reasons(world: World) -> None:
    from functions.credentials import credentials_migrate

    response = call(
        credentials_migrate, "POST", "credentials/migrate", {"reason": "r", "target": {"clusters": ["p2"]}}
    )
    assert response.status_code == 422
    assert body_of(response)["notReady"][0]["name"] == "p2"


def test_migrating_ready_panels_answers_202(world: World) -> None:
    from functions.credentials import credentials_migrate

    response = call(
        credentials_migrate, "POST", "credentials/migrate", {"reason": "r", "target": {"all": True}}
    )
    assert response.status_code == 202
    assert [p.name for p in world.engine.started[0]["panels"]] == ["p1"]


# --- Event Grid --------------------------------------------------------------------------------------
def keyvault_data(vid: str) -> dict[str, Any]:
    return {
        "Id": f"https://kv/secrets/flux-gitops-pat/{vid}",
        "VaultName": "kv",
        "ObjectType": "Secret",
        "ObjectName": "flux-gitops-pat",
        "Version": vid,
        "NBF": None,
        "EXP": 1790000000,
    }


def run_event(event: Any) -> None:
    from functions.credentials import credentials_keyvault_event

    credentials_keyvault_event.build().get_user_function()(event)


def test_a_new_version_event_in_the_event_grid_schema_starts_a_rollout(world: World) -> None:
    run_event(
        func.EventGridEvent(
            id="e1",
            data=keyvault_data("v2"),
            topic="/subscriptions/s/vaults/kv",
            subject="flux-gitops-pat",
            event_type="Microsoft.KeyVault.SecretNewVersionCreated",
            event_time=datetime.now(UTC),
            data_version="1",
        )
    )
    assert world.engine.started[0]["params"]["version"] == "v2"


def test_a_new_version_event_in_the_cloudevents_schema_starts_a_rollout(world: World) -> None:
    run_event(
        func.CloudEvent(
            id="e2",
            source="/subscriptions/s/vaults/kv",
            type="Microsoft.KeyVault.SecretNewVersionCreated",
            specversion="1.0",
            data=keyvault_data("v2"),
            subject="flux-gitops-pat",
            time=datetime.now(UTC),
        )
    )
    assert world.engine.started[0]["idempotency_key"] == "credential-rollout:flux-gitops-pat:v2"


def test_a_malformed_event_is_dropped_not_retried(world: World) -> None:
    run_event(
        func.EventGridEvent(
            id="e3",
            data={"ObjectName": "flux-gitops-pat"},
            topic="t",
            subject="flux-gitops-pat",
            event_type="Microsoft.KeyVault.SecretNewVersionCreated",
            event_time=None,
            data_version="1",
        )
    )
    assert world.engine.started == []


def test_a_transient_failure_propagates_so_event_grid_redelivers(world: World) -> None:
    world.secrets.fail_reads_with = TransientError("Key Vault 503")
    with pytest.raises(TransientError):
        run_event(
            func.EventGridEvent(
                id="e4",
                data=keyvault_data("v2"),
                topic="t",
                subject="flux-gitops-pat",
                event_type="Microsoft.KeyVault.SecretNewVersionCreated",
                event_time=None,
                data_version="1",
            )
        )


# --- timer -------------------------------------------------------------------------------------------
def test_the_scheduled_check_rolls_out_to_unproven_panels(world: World) -> None:
    from azure.functions.timer import TimerRequest

    from functions.credentials import credentials_scheduled_check

    credentials_scheduled_check.build().get_user_function()(TimerRequest(past_due=False))
    assert [p.name for p in world.engine.started[0]["panels"]] == ["p1", "p2"]
    assert world.engine.started[0]["requested_by"] == "scheduled-check"


# --- one intake for every route (issue 12: findings 2 and 4) ------------------------------------------
KEY_ID = "function-key:" + __import__("hashlib").sha256(FUNCTION_KEY.encode()).hexdigest()[:12]


@pytest.mark.parametrize("world", [{"allowed": KEY_ID.upper()}], indirect=True)
def test_the_allow_list_matches_principals_case_insensitively_as_fleet_routes_do(world: World) -> None:
    assert rollout({"reason": "rotate"}).status_code == 202


@pytest.mark.parametrize("world", [{"allowed": "release-pipeline@contoso.example"}], indirect=True)
def test_an_unauthorised_caller_is_refused_before_its_body_is_looked_at(world: World) -> None:
    response = rollout({"reason": "", "colour": "red"})
    assert response.status_code == 403
    assert "colour" not in response.get_body().decode()


@pytest.mark.parametrize("key", [" " * 5000, "x" * 201, "line\nbreak"], ids=["spaces", "too-long", "newline"])
def test_a_bad_idempotency_key_is_a_400_naming_it_as_on_fleet_routes(world: World, key: str) -> None:
    response = rollout({"reason": "rotate"}, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert body_of(response)["field"] == "Idempotency-Key"
    assert world.engine.started == []


# --- who is calling (issue 12: finding 1) -------------------------------------------------------------
@pytest.mark.parametrize("world", [{"allowed": "release-pipeline@contoso.example"}], indirect=True)
def test_a_principal_name_header_is_not_believed_when_platform_authentication_is_off(world: World) -> None:
    forged = {"x-ms-client-principal-name": "release-pipeline@contoso.example"}
    assert rollout({"reason": "rotate"}, headers=forged).status_code == 403
    forged_document = {"x-ms-client-principal": principal("release-pipeline@contoso.example")}
    assert rollout({"reason": "rotate"}, headers=forged_document).status_code == 403
    assert world.engine.started == []


@pytest.mark.parametrize("world", [{"platform_auth": True}], indirect=True)
def test_the_audit_names_the_platform_principal_not_the_plain_name_header(world: World) -> None:
    headers = {
        "x-ms-client-principal": principal("release-pipeline@contoso.example"),
        "x-ms-client-principal-name": "someone-else@contoso.example",
    }
    assert rollout({"reason": "rotate"}, headers=headers).status_code == 202
    assert world.engine.started[0]["requested_by"] == "release-pipeline@contoso.example"


def test_without_platform_authentication_the_audit_names_the_function_key_id(world: World) -> None:
    headers = {"x-ms-client-principal-name": "release-pipeline@contoso.example"}
    assert rollout({"reason": "rotate"}, headers=headers).status_code == 202
    assert world.engine.started[0]["requested_by"] == KEY_ID


def test_a_rollout_request_while_the_key_vault_event_rolls_out_the_same_version_is_a_202(
    world: World,
) -> None:
    """Issue 12, finding 12: the same version rolling out is the caller's wish already."""
    from shared.errors import Conflict

    params = {"secret": "flux-gitops-pat", "version": "v2"}
    world.engine.operations["op-kv"] = {
        "id": "op-kv",
        "kind": "credential-rollout",
        "status": "running",
        "params": params,
    }
    world.engine.conflict = Conflict("target: overlaps op-kv", field="target", operationId="op-kv")
    response = rollout({"reason": "rotate"})
    assert response.status_code == 202
    assert body_of(response)["statusUrl"] == "http://localhost/api/operations/op-kv"
