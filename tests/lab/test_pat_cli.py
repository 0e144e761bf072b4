"""The operator CLI against the lab: `pat mint` and `pat revoke-superseded` as a person runs them.

The CLI runs as a child process (`python -m shared.cli`) with `--lab DIR`, so it signs in as the lab's
operator exactly as it would with `az login`. Every test checks the lab's ground truth (PATs and Key
Vault versions by fingerprint) and that the token never reaches the CLI's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from shared.adapters.pat_api import PatApiError, PatLifecycleClient
from shared.cli import _lab, _lab_operator
from shared.errors import NotFound
from tests.labkit import REPO_ROOT, LabHandle

pytestmark = pytest.mark.lab

SECRET = "flux-gitops-pat"


def cli(lab: LabHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "pat", *args, "--org", "ipc-org", "--lab", str(lab.state_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pats(lab: LabHandle) -> dict[str, dict[str, Any]]:
    return {p["authorizationId"]: p for p in lab.state()["pats"]}


def current_value(lab: LabHandle) -> str:
    with lab.applied_env():
        client = SecretClient(
            lab.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        )
        value = client.get_secret(SECRET).value
    assert value is not None
    return value


def test_mint_stores_a_read_only_org_scoped_pat_as_a_new_version_and_never_prints_it(
    lab_clean: LabHandle,
) -> None:
    result = cli(lab_clean, "mint", "--days", "90", "--json")
    assert result.returncode == 0, result.stderr
    minted = json.loads(result.stdout)
    truth = pats(lab_clean)[minted["authorizationId"]]
    assert truth["scope"] == "vso.code"
    assert truth["revoked"] is False
    vault = lab_clean.state()["keyvault"]["secrets"][SECRET]
    assert vault["currentVersion"] == minted["version"]
    stored = next(v for v in vault["versions"] if v["version"] == minted["version"])
    assert stored["fingerprint"] == truth["fingerprint"]  # the very token Azure DevOps issued
    assert stored["tags"]["authorizationId"] == minted["authorizationId"]
    valid_to = datetime.fromisoformat(truth["validTo"].replace("Z", "+00:00"))
    assert stored["exp"] == int(valid_to.timestamp())
    assert abs(valid_to - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=5)
    token = current_value(lab_clean)
    assert token not in result.stdout + result.stderr


def test_mint_for_the_automation_runner_stores_a_write_pat_in_its_own_secret(lab_clean: LabHandle) -> None:
    result = cli(lab_clean, "mint", "--days", "30", "--purpose", "automation", "--json")
    assert result.returncode == 0, result.stderr
    minted = json.loads(result.stdout)
    assert minted["secret"] == "flux-gitops-automation-pat"
    assert pats(lab_clean)[minted["authorizationId"]]["scope"] == "vso.code_write"
    secrets = lab_clean.state()["keyvault"]["secrets"]
    stored = next(
        v for v in secrets["flux-gitops-automation-pat"]["versions"] if v["version"] == minted["version"]
    )
    assert stored["tags"]["scope"] == "vso.code_write"
    assert minted["version"] not in [v["version"] for v in secrets[SECRET]["versions"]]


def test_mint_refuses_a_write_scope_for_the_fleet_credential(lab_clean: LabHandle) -> None:
    before = {p["authorizationId"] for p in lab_clean.state()["pats"]}
    result = cli(lab_clean, "mint", "--days", "30", "--scope", "vso.code_write", "--json")
    assert result.returncode == 1
    assert "contradicts --purpose fleet" in result.stderr
    assert {p["authorizationId"] for p in lab_clean.state()["pats"]} == before


def test_mint_says_plainly_when_the_organization_is_wrong(lab_clean: LabHandle) -> None:
    before = lab_clean.state()["keyvault"]["secrets"][SECRET]["currentVersion"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "pat",
            "mint",
            "--org",
            "no-such-org",
            "--lab",
            str(lab_clean.state_dir),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: create PAT:")
    assert "no-such-org" in result.stderr
    assert lab_clean.state()["keyvault"]["secrets"][SECRET]["currentVersion"] == before


def test_mint_refuses_a_lifetime_azure_devops_never_allows(lab_clean: LabHandle) -> None:
    result = cli(lab_clean, "mint", "--days", "400")
    assert result.returncode == 1
    assert "--days must be between 1 and 365" in result.stderr


def test_a_pat_token_error_becomes_a_message_that_says_what_to_do(lab_clean: LabHandle) -> None:
    context = _lab(_namespace(lab_clean))
    assert context is not None
    client = PatLifecycleClient(
        vssps_url=context.env["FLUXFLEET_DEVOPS_VSSPS_URL"],
        organization="ipc-org",
        credential=_lab_operator(context),
    )
    with pytest.raises(PatApiError) as raised:
        client.create(display_name="x", scope="vso.nonsense", valid_to=datetime.now(UTC) + timedelta(days=1))
    assert raised.value.pat_token_error == "invalidScope"
    assert "not a valid Azure DevOps scope" in raised.value.message
    # Azure DevOps answers an unknown authorizationId with an error (in a 200 body or as a 404);
    # revoke-superseded treats both as "already gone".
    with pytest.raises((PatApiError, NotFound)):
        client.revoke("00000000-0000-0000-0000-000000000000")


def _namespace(lab: LabHandle) -> Any:
    import argparse

    return argparse.Namespace(lab=lab.state_dir)


# --- revoke-superseded against a stand-in for the app's GET /api/credentials ---------------------------
class FakeApp:
    """Answers GET /api/credentials with a fixed report (the app itself is tested end to end)."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        self.keys: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.keys.append(self.headers.get("x-functions-key"))
                body = json.dumps(outer.report).encode()
                self.send_response(200 if self.path == "/api/credentials" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeApp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def initial_pat(lab_clean: LabHandle) -> str:
    vault = lab_clean.state()["keyvault"]["secrets"][SECRET]
    return str(vault["versions"][0]["tags"]["authorizationId"])


def report(*, safe: bool, revocable: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "current": {"version": "new", "authorizationId": "current-auth"},
        "revocation": {
            "safe": safe,
            "reason": "3 panel(s) are not proven" if not safe else "ok",
            "revocable": revocable,
        },
    }


def test_nothing_is_revoked_while_the_app_says_it_is_not_safe(lab_clean: LabHandle, initial_pat: str) -> None:
    with FakeApp(report(safe=False, revocable=[])) as app:
        result = cli(lab_clean, "revoke-superseded", "--app-url", app.url, "--app-key", "k")
    assert result.returncode == 3
    assert "Not revoking anything: 3 panel(s) are not proven" in result.stdout
    assert pats(lab_clean)[initial_pat]["revoked"] is False
    assert app.keys == ["k"]


def test_superseded_pats_are_revoked_once_the_app_says_it_is_safe(
    lab_clean: LabHandle, initial_pat: str
) -> None:
    revocable = [
        {"version": "old", "authorizationId": initial_pat},
        {"version": "older", "authorizationId": None},
    ]
    with FakeApp(report(safe=True, revocable=revocable)) as app:
        dry = cli(lab_clean, "revoke-superseded", "--app-url", app.url, "--dry-run")
        assert dry.returncode == 0
        assert pats(lab_clean)[initial_pat]["revoked"] is False
        result = cli(lab_clean, "revoke-superseded", "--app-url", app.url, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["revoked"] == [initial_pat]
    assert doc["skipped"][0]["version"] == "older"
    assert pats(lab_clean)[initial_pat]["revoked"] is True
