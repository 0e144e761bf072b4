"""Credential rotation end to end: the app in the local Functions host, the lab behind it.

Everything goes through the doors a deployment has: the operator mints PATs with the CLI (`--lab`,
signed in as the lab's operator), Key Vault raises `SecretNewVersionCreated` through Event Grid to the
host, the app is asked over HTTP, and outcomes are checked in the lab's ground truth — which PAT each
simulated panel's agent holds (`credential_fingerprint` = first 16 hex of sha256(PAT)) and what its last
real Git fetch did (`last_fetch`). The lab runs at real speed and the tests make the agents sync with
`POST /_lab/agents/tick`, so nothing depends on where a panel's 5-minute sync happens to fall.

One lab (20 factory panels: 2 canary, 6 early, 12 broad, one of them offline; plus the image-automation
runner `ipc-automation-hub`, which holds its own write PAT) and one host serve the module; the tests run
in file order, each starting from where the previous one left the fleet. Fleet rollouts must reach the
factory panels only and leave every one of them unable to push (ground truth `credential_can_push`);
the automation credential must reach the runner only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import requests
from azure.data.tables import TableServiceClient
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.queue import QueueServiceClient, TextBase64DecodePolicy

from tests.e2e.hostkit import HostProcess
from tests.e2e.webhook import Webhook
from tests.labkit import REPO_ROOT, LabHandle, LabProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
PANELS = 20
OFFLINE = 1
TIME_SCALE = 20.0
# Lab time runs 20 × real time: the app's convergence checks (every 30 lab s) and offline rechecks (every
# 10 lab min), which the lab scales to its clock, come every 1.5 s and 30 s. The tests still make the
# agents sync with `POST /_lab/agents/tick` rather than wait for their 5-minute (15 s) schedule.
SECRET = "flux-gitops-pat"
AUTOMATION_SECRET = "flux-gitops-automation-pat"
# Event Grid delivery, preflight and the first ARM writes take a second or two in the lab.
EVENT_TIMEOUT_S = 30.0
# A rollout to 20 panels with agents ticked every couple of seconds: well under a minute.
ROLLOUT_TIMEOUT_S = 120.0
# The app accepts a fetch as proof only when it was reported 5 s (ARM's clock) after the change.
TICK_EVERY_S = 2.0


# --- module fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(
        tmp_path_factory.mktemp("credentials-lab"),
        clusters=PANELS,
        subscriptions=1,
        offline=OFFLINE,
        time_scale=TIME_SCALE,
    ) as handle:
        yield handle
    for client in VAULTS.values():
        client.close()
    VAULTS.clear()


@pytest.fixture(scope="module", autouse=True)
def lab_environment(lab: LabHandle) -> Iterator[None]:
    """This test process talks to the lab too (Key Vault, Azurite): trust its CA, use its identity."""
    with lab.applied_env():
        yield


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


class Recorder:
    """Every HTTP answer the app gave during the module, for the leak check."""

    def __init__(self) -> None:
        self.bodies: list[str] = []


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def host(lab: LabHandle, webhook: Webhook, recorder: Recorder) -> Iterator[HostProcess]:
    # lab.json's settings win over these; the webhook and a patient check count are the tests' own.
    env = {"FLUXFLEET_WEBHOOK_URL": webhook.url, "FLUXFLEET_FLEET_VERIFY_MAX_CHECKS": "80"}
    with HostProcess(lab, instance="credentials", env=env) as process:
        original = process.call

        def recording_call(*args: Any, **kwargs: Any) -> requests.Response:
            response = original(*args, **kwargs)
            recorder.bodies.append(response.text)
            return response

        process.call = recording_call  # type: ignore[method-assign]
        yield process


# --- helpers -----------------------------------------------------------------------------------------
def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, tick: LabHandle | None = None) -> T:
    """Poll `probe` until it returns something; with `tick`, make every online agent sync meanwhile."""
    deadline = time.monotonic() + timeout
    last_tick = 0.0
    while time.monotonic() < deadline:
        if tick is not None and time.monotonic() - last_tick >= TICK_EVERY_S:
            tick.control("POST", "/_lab/agents/tick")
            last_tick = time.monotonic()
        value = probe()
        if value is not None:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def lab_now(lab: LabHandle) -> datetime:
    return datetime.fromisoformat(lab.control("GET", "/_lab/clock")["now"].replace("Z", "+00:00"))


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def clusters(lab: LabHandle) -> dict[str, dict[str, Any]]:
    """The factory panels' ground truth (the fleet credential's clusters; the runner is not one)."""
    return {c["name"]: c for c in lab.state()["clusters"] if not c["runner"]}


def runner(lab: LabHandle) -> dict[str, Any]:
    [hub] = [c for c in lab.state()["clusters"] if c["runner"]]
    return dict(hub)


def arm_patches(lab: LabHandle) -> list[str]:
    """The paths of every Flux configuration PATCH ARM received so far, oldest first."""
    entries = lab.control("GET", "/_lab/requests?service=arm")["requests"]
    return [
        str(e["path"])
        for e in entries
        if e.get("method") == "PATCH" and "fluxConfigurations" in str(e["path"])
    ]


def report(host: HostProcess) -> dict[str, Any]:
    response = host.call("GET", "/api/credentials")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def operation(host: HostProcess, operation_id: str) -> dict[str, Any]:
    response = host.call("GET", f"/api/operations/{operation_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


VAULTS: dict[str, SecretClient] = {}


def vault(lab: LabHandle) -> SecretClient:
    """One SecretClient for the module, as the operator's scripts would use (the app's identity here)."""
    if lab.doc["keyvault"]["url"] not in VAULTS:
        VAULTS[lab.doc["keyvault"]["url"]] = SecretClient(
            lab.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        )
    return VAULTS[lab.doc["keyvault"]["url"]]


def secret_value(lab: LabHandle, version: str | None = None, *, secret: str = SECRET) -> str:
    value = vault(lab).get_secret(secret, version).value
    assert value is not None
    return value


def cli(lab: LabHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "pat", *args, "--org", "ipc-org", "--lab", str(lab.state_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


CLI_OUTPUT: list[str] = []


def rollout_of(host: HostProcess, version: str) -> str:
    def started() -> str | None:
        body = report(host)
        rollout = body.get("rollout") or {} if body["current"]["version"] == version else {}
        return rollout.get("operationId")

    return wait_for(f"the rollout of {version}", started, timeout=EVENT_TIMEOUT_S)


QUEUE_SNAPSHOTS: list[str] = []


def finished(host: HostProcess, operation_id: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        QUEUE_SNAPSHOTS.append(queues_dump(host.lab))  # the fan-out messages while they are in flight
        document = operation(host, operation_id)
        return document if document["status"] != "running" else None

    return probe


def online_names(lab: LabHandle) -> list[str]:
    return sorted(name for name, c in clusters(lab).items() if c["online"])


# --- the tests, in order -----------------------------------------------------------------------------
def test_the_first_scheduled_check_proves_the_seeded_pat_on_every_online_panel(
    lab: LabHandle, host: HostProcess
) -> None:
    before = report(host)
    assert before["panels"]["unknown"] == PANELS
    assert before["revocation"]["safe"] is False
    response = host.call(
        "POST", "/admin/functions/credentials_scheduled_check", key="master", json={"input": ""}
    )
    assert response.status_code == 202
    operation_id = rollout_of(host, before["current"]["version"])
    document = wait_for(
        "the adoption rollout", finished(host, operation_id), timeout=ROLLOUT_TIMEOUT_S, tick=lab
    )
    states = {c["name"]: c["state"] for c in document["clusters"]}
    offline = [name for name, c in clusters(lab).items() if not c["online"]]
    assert [states[name] for name in offline] == ["pending-offline"]
    assert {states[name] for name in online_names(lab)} == {"succeeded"}
    assert runner(lab)["name"] not in states  # the fleet PAT is never the runner's
    assert not any(c["credential_can_push"] for c in clusters(lab).values())
    after = report(host)
    assert after["panels"]["proven"] == PANELS - OFFLINE
    assert after["stragglersTotal"] == OFFLINE
    assert after["automation"]["purpose"] == "automation"
    assert after["automation"]["panels"]["total"] == 1


def test_a_bad_pat_is_refused_at_preflight_and_nothing_changes(
    lab: LabHandle, host: HostProcess, webhook: Webhook
) -> None:
    fingerprints = {name: c["credential_fingerprint"] for name, c in clusters(lab).items()}
    # The adoption rollouts of both credentials (the daily check runs the runner's too).
    runs_before = host.call("GET", "/api/operations", params={"kind": "credential-rollout"}).json()
    bad = "notapat" + "0" * 45
    created = vault(lab).set_secret(SECRET, bad, expires_on=datetime.now(UTC) + timedelta(days=90))
    version = created.properties.version
    refused = wait_for(
        "the preflight verdict",
        lambda: next((m for m in webhook.messages if version in json.dumps(m)), None),
        timeout=EVENT_TIMEOUT_S,
    )
    assert "refused at preflight" in json.dumps(refused)
    current = report(host)["current"]
    assert current["version"] == version
    assert current["preflight"]["passed"] is False
    response = host.call("POST", "/api/credentials/rollout", json={"reason": "try the bad one"})
    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert any(
        c["name"] == "authenticates" and c["outcome"] == "failed"
        for c in response.json()["preflight"]["checks"]
    )
    runs = host.call("GET", "/api/operations", params={"kind": "credential-rollout"}).json()
    assert len(runs["operations"]) == len(runs_before["operations"])  # nothing new started
    assert {name: c["credential_fingerprint"] for name, c in clusters(lab).items()} == fingerprints
    # The operator disables the bad version: the previous one is current again.
    vault(lab).update_secret_properties(SECRET, version, enabled=False)
    assert report(host)["current"]["version"] != version


def test_a_good_new_pat_reaches_every_online_panel_proven_by_a_real_fetch(
    lab: LabHandle, host: HostProcess
) -> None:
    minted = cli(lab, "mint", "--days", "90", "--json")
    CLI_OUTPUT.append(minted.stdout + minted.stderr)
    assert minted.returncode == 0, minted.stderr
    version = json.loads(minted.stdout)["version"]
    new = fingerprint(secret_value(lab, version))
    operation_id = rollout_of(host, version)
    started_at = lab_now(lab)
    document = wait_for("the rollout", finished(host, operation_id), timeout=ROLLOUT_TIMEOUT_S, tick=lab)
    assert document["kind"] == "credential-rollout"
    assert document["requestedBy"] == "keyvault-event"
    assert [stage["name"] for stage in document["stages"]] == ["canary", "early", "broad"]
    truth = clusters(lab)
    entries = {c["name"]: c for c in document["clusters"]}
    for name in online_names(lab):
        assert truth[name]["credential_fingerprint"] == new, (entries[name], truth[name])
        assert truth[name]["last_fetch"]["ok"] is True, name
        fetched_at = datetime.fromisoformat(truth[name]["last_fetch"]["at"].replace("Z", "+00:00"))
        assert fetched_at >= started_at, name
    offline = next(name for name, c in truth.items() if not c["online"])
    assert truth[offline]["credential_fingerprint"] != new
    body = report(host)
    assert body["current"]["version"] == version
    assert body["panels"]["proven"] == PANELS - OFFLINE
    assert [s["name"] for s in body["stragglers"]] == [offline]
    assert body["stragglers"][0]["connectivity"] == "Offline"
    assert body["revocation"]["safe"] is False


def test_the_offline_panel_converges_after_reconnecting_and_the_old_pat_can_then_go(
    lab: LabHandle, host: HostProcess
) -> None:
    body = report(host)
    offline = body["stragglers"][0]["name"]
    old_authorization = body["versions"][1 + 1]["authorizationId"]  # [new, disabled bad one, seeded]
    lab.control("POST", f"/_lab/clusters/{offline}/connectivity", {"online": True})
    operation_id = body["rollout"]["operationId"]

    def converged() -> dict[str, Any] | None:
        states = {c["name"]: c["state"] for c in operation(host, operation_id)["clusters"]}
        return states if states[offline] == "succeeded" else None

    wait_for(f"{offline} to converge", converged, timeout=ROLLOUT_TIMEOUT_S, tick=lab)
    new = fingerprint(secret_value(lab))
    assert clusters(lab)[offline]["credential_fingerprint"] == new
    safe = report(host)["revocation"]
    assert safe["safe"] is True
    assert old_authorization in [r["authorizationId"] for r in safe["revocable"]]
    revoked = cli(lab, "revoke-superseded", "--json")
    CLI_OUTPUT.append(revoked.stdout + revoked.stderr)
    assert revoked.returncode == 0, revoked.stderr
    assert old_authorization in json.loads(revoked.stdout)["revoked"]
    pats = {p["authorizationId"]: p for p in lab.state()["pats"]}
    assert pats[old_authorization]["revoked"] is True
    lab.control("POST", "/_lab/agents/tick")
    assert all(c["last_fetch"]["ok"] for c in clusters(lab).values())


def test_a_write_pat_offered_as_the_fleet_credential_is_refused_at_preflight_and_nothing_changes(
    lab: LabHandle, host: HostProcess, webhook: Webhook
) -> None:
    everything = {c["name"]: c["credential_fingerprint"] for c in lab.state()["clusters"]}
    runs_before = len(
        host.call("GET", "/api/operations", params={"kind": "credential-rollout"}).json()["operations"]
    )
    minted = lab.control("POST", "/_lab/devops/pats", {"scope": "vso.code_write", "days": 90})
    created = vault(lab).set_secret(
        SECRET,
        minted["token"],
        expires_on=datetime.fromisoformat(minted["validTo"].replace("Z", "+00:00")),
        tags={"authorizationId": minted["authorizationId"]},
    )
    version = created.properties.version or ""
    refused = wait_for(
        "the preflight verdict",
        lambda: next((m for m in webhook.messages if version in json.dumps(m)), None),
        timeout=EVENT_TIMEOUT_S,
    )
    assert "refused at preflight" in json.dumps(refused)
    checks = {c["name"]: c for c in report(host)["current"]["preflight"]["checks"]}
    assert checks["authenticates"]["outcome"] == "passed"  # a good PAT ...
    assert checks["readOnly"]["outcome"] == "failed"  # ... that can push: a finding on factory panels
    response = host.call("POST", "/api/credentials/rollout", json={"reason": "try the write PAT"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "version"
    runs = host.call("GET", "/api/operations", params={"kind": "credential-rollout"}).json()["operations"]
    assert len(runs) == runs_before
    assert {c["name"]: c["credential_fingerprint"] for c in lab.state()["clusters"]} == everything
    assert not any(c["credential_can_push"] for c in clusters(lab).values())
    vault(lab).update_secret_properties(SECRET, version, enabled=False)
    assert report(host)["current"]["version"] != version


def test_a_pat_revoked_after_preflight_halts_the_rollout_in_the_canary_ring(
    lab: LabHandle, host: HostProcess, webhook: Webhook
) -> None:
    before = clusters(lab)
    # ARM takes 2 s to accept each of the canary's writes: the PAT is revoked before any panel has it.
    lab.control(
        "POST",
        "/_lab/faults",
        {"service": "arm", "route": r"PATCH .*/fluxConfigurations/", "latency_ms": 2000, "count": 2},
    )
    minted = lab.control("POST", "/_lab/devops/pats", {"scope": "vso.code", "days": 90})
    created = vault(lab).set_secret(
        SECRET,
        minted["token"],
        expires_on=datetime.fromisoformat(minted["validTo"].replace("Z", "+00:00")),
        tags={"authorizationId": minted["authorizationId"]},
    )
    operation_id = rollout_of(host, created.properties.version or "")
    lab.control("POST", f"/_lab/devops/pats/{minted['authorizationId']}/revoke")
    document = wait_for("the halt", finished(host, operation_id), timeout=ROLLOUT_TIMEOUT_S, tick=lab)
    assert document["haltedReason"]
    assert "could not authenticate" in document["haltedReason"]
    by_ring: dict[str, set[str]] = {}
    for c in document["clusters"]:
        by_ring.setdefault(c["stage"], set()).add(c["state"])
    assert "failed" in by_ring["canary"]
    assert by_ring["early"] == {"skipped"}
    assert by_ring["broad"] == {"skipped"}
    after = clusters(lab)
    for name, cluster in after.items():
        if cluster["tags"]["ring"] != "canary":
            assert cluster["credential_fingerprint"] == before[name]["credential_fingerprint"], name
            assert cluster["last_fetch"]["ok"] is True, name
    assert any("rollout halted" in json.dumps(m).lower() for m in webhook.messages)
    # The operator mints a good successor: the canary recovers, the rest moves on too.
    minted_again = cli(lab, "mint", "--days", "90", "--json")
    CLI_OUTPUT.append(minted_again.stdout + minted_again.stderr)
    recovery = rollout_of(host, json.loads(minted_again.stdout)["version"])
    document = wait_for("the recovery rollout", finished(host, recovery), timeout=ROLLOUT_TIMEOUT_S, tick=lab)
    assert {c["state"] for c in document["clusters"]} == {"succeeded"}, document["clusters"]
    assert all(c["last_fetch"]["ok"] for c in clusters(lab).values())


def test_a_ready_panel_moves_to_workload_identity_and_fetches_without_a_pat(
    lab: LabHandle, host: HostProcess
) -> None:
    readiness = host.call("GET", "/api/credentials/workload-identity").json()
    ready = [row for row in readiness["clusters"] if row["ready"] and row["ring"] == "broad"]
    not_ready = [row for row in readiness["clusters"] if not row["ready"]]
    assert ready
    assert not_ready
    assert all(row["reasons"] for row in not_ready)
    target = {"clusters": [ready[0]["id"], not_ready[0]["id"]]}
    dry = host.call(
        "POST", "/api/credentials/migrate", json={"reason": "off PATs", "target": target, "dryRun": True}
    )
    assert dry.status_code == 200, dry.text
    assert [row["name"] for row in dry.json()["notReady"]] == [not_ready[0]["name"]]
    started = host.call("POST", "/api/credentials/migrate", json={"reason": "off PATs", "target": target})
    assert started.status_code == 202, started.text
    document = wait_for(
        "the migration", finished(host, started.json()["operationId"]), timeout=ROLLOUT_TIMEOUT_S, tick=lab
    )
    assert [c["state"] for c in document["clusters"]] == ["succeeded"]
    moved = clusters(lab)[ready[0]["name"]]
    assert moved["provider"] == "Azure"
    assert moved["last_fetch"]["ok"] is True
    assert report(host)["panels"]["workloadIdentity"] == 1


def test_rotating_the_automation_credential_touches_only_the_runner(
    lab: LabHandle, host: HostProcess
) -> None:
    hub = runner(lab)
    factory = {name: c["credential_fingerprint"] for name, c in clusters(lab).items()}
    patches_before = len(arm_patches(lab))
    minted = cli(lab, "mint", "--days", "90", "--purpose", "automation", "--json")
    CLI_OUTPUT.append(minted.stdout + minted.stderr)
    assert minted.returncode == 0, minted.stderr
    version = json.loads(minted.stdout)["version"]

    def started() -> str | None:
        automation = report(host)["automation"]
        current = automation.get("current") or {}
        return (
            (automation.get("rollout") or {}).get("operationId")
            if current.get("version") == version
            else None
        )

    operation_id = wait_for("the automation rollout", started, timeout=EVENT_TIMEOUT_S)
    document = wait_for(
        "the automation rollout to finish", finished(host, operation_id), timeout=ROLLOUT_TIMEOUT_S, tick=lab
    )
    assert [(c["name"], c["state"]) for c in document["clusters"]] == [(hub["name"], "succeeded")]
    patched = arm_patches(lab)[patches_before:]
    assert patched
    assert all(f"/connectedClusters/{hub['name']}/" in path for path in patched), patched
    after = runner(lab)
    assert after["credential_fingerprint"] == fingerprint(
        secret_value(lab, version, secret=AUTOMATION_SECRET)
    )
    assert after["credential_can_push"] is True
    assert after["last_fetch"]["ok"] is True
    assert {name: c["credential_fingerprint"] for name, c in clusters(lab).items()} == factory
    assert not any(c["credential_can_push"] for c in clusters(lab).values())
    automation = report(host)["automation"]
    assert automation["panels"] == {**automation["panels"], "total": 1, "proven": 1}


def test_no_pat_ever_leaked_into_logs_responses_rows_messages_or_cli_output(
    lab: LabHandle, host: HostProcess, recorder: Recorder, webhook: Webhook
) -> None:
    values: list[str] = []
    for item in vault(lab).list_properties_of_secret_versions(SECRET):
        if item.enabled:
            values.append(secret_value(lab, item.version))
    for item in vault(lab).list_properties_of_secret_versions(AUTOMATION_SECRET):
        if item.enabled:
            values.append(secret_value(lab, item.version, secret=AUTOMATION_SECRET))
    values += ["notapat" + "0" * 45]
    needles = set(values) | {base64.b64encode(v.encode()).decode() for v in values}
    haystacks = {
        "host log": host.log_text(),
        "HTTP responses": "\n".join(recorder.bodies),
        "webhook messages": json.dumps(webhook.messages),
        "CLI output": "\n".join(CLI_OUTPUT),
        "tables": tables_dump(lab),
        "queues": "\n".join(QUEUE_SNAPSHOTS),
    }
    for where, text in haystacks.items():
        assert text, f"nothing captured from {where}"
        for needle in needles:
            assert needle not in text, f"a PAT leaked into {where}"


def tables_dump(lab: LabHandle) -> str:
    rows = []
    with TableServiceClient.from_connection_string(lab.env["AzureWebJobsStorage"]) as service:
        rows += _rows(service)
    return "\n".join(rows)


def _rows(service: TableServiceClient) -> list[str]:
    rows = []
    for table in service.list_tables():
        rows += [
            json.dumps(dict(row), default=str) for row in service.get_table_client(table.name).list_entities()
        ]
    return rows


def queues_dump(lab: LabHandle) -> str:
    """Every message waiting in every queue (and poison queue), decoded as the host decodes them."""
    texts = []
    with QueueServiceClient.from_connection_string(
        lab.env["AzureWebJobsStorage"], message_decode_policy=TextBase64DecodePolicy()
    ) as service:
        for queue in service.list_queues():
            with service.get_queue_client(queue.name) as client:
                texts += [str(m.content) for m in client.peek_messages(max_messages=32)]
    return "\n".join(texts)
