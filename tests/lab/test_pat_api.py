"""The PAT Lifecycle API with the operator's own identity, as the app's `pat mint` / `pat revoke` run it.

A plain azure-core pipeline carries a user token from `UsernamePasswordCredential` against the lab's
Entra authority. The API must behave as vssps.dev.azure.com: a PAT it creates works for Git at once
and stops working when revoked or when the lab clock passes its `validTo`; validation failures come
back as `patTokenError` in a 200 body; managed identities and PATs are refused; the token value is
returned by create and nowhere else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.identity import ManagedIdentityCredential, UsernamePasswordCredential

from tests.labkit import LabHandle, LabProcess

pytestmark = [
    pytest.mark.lab,
    # The resource-owner password flow is deprecated in azure-identity and MSAL; it is the lab's
    # stand-in for the operator's interactive sign-in, so its deprecation warnings are expected.
    pytest.mark.filterwarnings("ignore:UsernamePasswordCredential is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:This API has been deprecated for public client flows:DeprecationWarning"
    ),
]

DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
API_VERSION = "7.1-preview.1"


@pytest.fixture(scope="module")
def devops_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(tmp_path_factory.mktemp("pat-lab"), clusters=1, subscriptions=1, azurite=False) as handle:
        yield handle


def operator_credential(lab: LabHandle, password: str | None = None) -> UsernamePasswordCredential:
    operator = lab.doc["operator"]
    return UsernamePasswordCredential(
        operator["client_id"],
        operator["username"],
        password or operator["password"],
        tenant_id=operator["tenant_id"],
        authority=operator["authority"],
        disable_instance_discovery=True,
        connection_verify=lab.ca_bundle,
    )


class PatApi:
    """`{vssps}/{org}/_apis/tokens/pats` through an azure-core pipeline with a bearer policy."""

    def __init__(self, lab: LabHandle, credential: TokenCredential) -> None:
        self.url = f"{lab.env['FLUXFLEET_DEVOPS_VSSPS_URL']}/{lab.doc['devops']['org']}/_apis/tokens/pats"
        self.pipeline: Pipeline[Any, Any] = Pipeline(
            transport=RequestsTransport(connection_verify=lab.ca_bundle),
            policies=[BearerTokenCredentialPolicy(credential, DEVOPS_SCOPE)],
        )

    def call(
        self,
        method: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        api_version: str | None = API_VERSION,
    ) -> tuple[int, Any]:
        query = dict(params or {})
        if api_version is not None:
            query["api-version"] = api_version
        request = HttpRequest(method, self.url, params=query, json=body)
        response = self.pipeline.run(request).http_response
        text = response.text()
        return response.status_code, json.loads(text) if text else None

    def create(self, name: str, scope: str = "vso.code", valid_to: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"displayName": name, "scope": scope, "allOrgs": False}
        if valid_to is not None:
            body["validTo"] = valid_to
        status, result = self.call("POST", body=body)
        assert status == 200
        return dict(result)


@pytest.fixture(scope="module")
def pat_api(devops_lab: LabHandle) -> PatApi:
    return PatApi(devops_lab, operator_credential(devops_lab))


def lab_now(lab: LabHandle) -> datetime:
    return datetime.fromisoformat(lab.control("GET", "/_lab/clock")["now"])


def can_clone(lab: LabHandle, token: str) -> bool:
    """`git ls-remote` with the PAT: the Git server's verdict on it."""
    url = lab.doc["git_url"].replace("https://", f"https://git:{token}@", 1)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": "/nonexistent",
        "GIT_SSL_CAINFO": lab.env["GIT_SSL_CAINFO"],
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(
        ["git", "-c", "credential.helper=", "ls-remote", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def test_a_created_pat_clones_at_once_and_is_refused_after_revoke(
    devops_lab: LabHandle, pat_api: PatApi
) -> None:
    created = pat_api.create("rotation-1")
    assert created["patTokenError"] == "none"
    token = created["patToken"]["token"]
    authorization_id = created["patToken"]["authorizationId"]
    assert created["patToken"]["scope"] == "vso.code"
    assert can_clone(devops_lab, token)
    status, got = pat_api.call("GET", params={"authorizationId": authorization_id})
    assert status == 200
    assert got["patToken"]["displayName"] == "rotation-1"
    assert got["patToken"]["token"] is None
    status, _ = pat_api.call("DELETE", params={"authorizationId": authorization_id})
    assert status == 204
    assert not can_clone(devops_lab, token)
    _, revoked = pat_api.call("GET", params={"displayFilterOption": "revoked"})
    assert authorization_id in [p["authorizationId"] for p in revoked["patTokens"]]
    _, active = pat_api.call("GET")
    assert authorization_id not in [p["authorizationId"] for p in active["patTokens"]]


def test_a_pat_expires_when_the_lab_clock_passes_valid_to(devops_lab: LabHandle, pat_api: PatApi) -> None:
    valid_to = (lab_now(devops_lab) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    created = pat_api.create("short-lived", valid_to=valid_to)
    token = created["patToken"]["token"]
    assert can_clone(devops_lab, token)
    devops_lab.control("POST", "/_lab/clock/advance", {"seconds": 2 * 3600 + 60})
    assert not can_clone(devops_lab, token)
    _, expired = pat_api.call("GET", params={"displayFilterOption": "expired"})
    assert created["patToken"]["authorizationId"] in [p["authorizationId"] for p in expired["patTokens"]]


def test_a_managed_identity_token_is_refused_as_a_service_principal(devops_lab: LabHandle) -> None:
    with devops_lab.applied_env():
        status, body = PatApi(devops_lab, ManagedIdentityCredential()).call("GET")
    assert status == 403
    assert body["typeKey"] == "InvalidAccessException"
    assert body["message"] == "Service principals are not allowed to perform this action."


def test_a_pat_cannot_manage_pats(devops_lab: LabHandle) -> None:
    pat = devops_lab.control("POST", "/_lab/devops/pats", {"scope": "app_token", "days": 7}, expect=201)
    basic = base64.b64encode(f":{pat['token']}".encode()).decode()
    response = requests.get(
        PatApi(devops_lab, operator_credential(devops_lab)).url,
        params={"api-version": API_VERSION},
        headers={"Authorization": f"Basic {basic}"},
        verify=devops_lab.ca_bundle,
        timeout=10,
    )
    assert response.status_code == 403
    assert response.json()["typeKey"] == "InvalidAccessException"


def test_an_anonymous_call_is_unauthorized(devops_lab: LabHandle) -> None:
    response = requests.get(
        PatApi(devops_lab, operator_credential(devops_lab)).url,
        params={"api-version": API_VERSION},
        verify=devops_lab.ca_bundle,
        timeout=10,
    )
    assert response.status_code == 401


def test_a_wrong_password_gets_no_token(devops_lab: LabHandle) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS50126"):
        operator_credential(devops_lab, password="not-the-password").get_token(DEVOPS_SCOPE)


def test_invalid_requests_are_reported_in_pat_token_error(devops_lab: LabHandle, pat_api: PatApi) -> None:
    now = lab_now(devops_lab)
    cases = [
        ({"displayName": "", "scope": "vso.code"}, "displayNameRequired"),
        ({"displayName": "x", "scope": "vso.nonsense"}, "invalidScope"),
        (
            {"displayName": "x", "scope": "vso.code", "validTo": (now - timedelta(days=1)).isoformat()},
            "invalidValidTo",
        ),
        (
            {"displayName": "x", "scope": "vso.code", "validTo": (now + timedelta(days=400)).isoformat()},
            "invalidValidTo",
        ),
    ]
    for body, expected in cases:
        status, result = pat_api.call("POST", body=body)
        assert (status, result["patTokenError"], result["patToken"]) == (200, expected, None)
    status, unknown = pat_api.call("GET", params={"authorizationId": "00000000-0000-4000-8000-000000000000"})
    assert (status, unknown["patTokenError"]) == (200, "tokenNotFound")
    _, malformed = pat_api.call("GET", params={"authorizationId": "not-a-guid"})
    assert malformed["patTokenError"] == "invalidAuthorizationId"


def test_update_changes_a_live_pat_and_refuses_a_revoked_one(devops_lab: LabHandle, pat_api: PatApi) -> None:
    created = pat_api.create("to-update")["patToken"]
    new_valid_to = (lab_now(devops_lab) + timedelta(days=10)).replace(microsecond=0)
    status, updated = pat_api.call(
        "PUT",
        body={
            "authorizationId": created["authorizationId"],
            "displayName": "updated",
            "validTo": new_valid_to.isoformat(),
        },
    )
    assert (status, updated["patTokenError"]) == (200, "none")
    assert updated["patToken"]["displayName"] == "updated"
    assert datetime.fromisoformat(updated["patToken"]["validTo"]) == new_valid_to.astimezone(UTC)
    assert updated["patToken"]["token"] is None
    assert can_clone(devops_lab, created["token"])
    pat_api.call("DELETE", params={"authorizationId": created["authorizationId"]})
    _, refused = pat_api.call(
        "PUT", body={"authorizationId": created["authorizationId"], "displayName": "again"}
    )
    assert refused["patTokenError"] == "invalidToken"


def test_only_api_version_7_1_preview_1_is_served(pat_api: PatApi) -> None:
    for version, type_key in (
        ("7.1", "VssInvalidPreviewVersionException"),
        ("7.2-preview.1", "VssVersionOutOfRangeException"),
        (None, "VssVersionNotSpecifiedException"),
    ):
        status, body = pat_api.call("GET", api_version=version)
        assert (status, body["typeKey"]) == (400, type_key)


def test_list_pages_through_every_pat_sorted_by_display_name(pat_api: PatApi) -> None:
    names = [f"page-{i:02d}" for i in range(5)]
    for name in reversed(names):
        pat_api.create(name)
    seen: list[str] = []
    token = ""
    while True:
        params = {"$top": "2", "sortByOption": "displayName", "isSortAscending": "true"}
        if token:
            params["continuationToken"] = token
        status, page = pat_api.call("GET", params=params)
        assert status == 200
        assert len(page["patTokens"]) <= 2
        assert all(p["token"] is None for p in page["patTokens"])
        seen += [p["displayName"] for p in page["patTokens"]]
        token = page["continuationToken"]
        if not token:
            break
    assert [n for n in seen if n.startswith("page-")] == names
    assert seen == sorted(seen, key=str.lower)


def test_ground_truth_shows_fingerprints_and_never_a_token(devops_lab: LabHandle, pat_api: PatApi) -> None:
    created = pat_api.create("fingerprinted")["patToken"]
    state_text = json.dumps(devops_lab.state())
    assert created["token"] not in state_text
    pats = {p["authorizationId"]: p for p in devops_lab.state()["pats"]}
    assert (
        pats[created["authorizationId"]]["fingerprint"]
        == hashlib.sha256(created["token"].encode()).hexdigest()[:16]
    )
    assert pats[created["authorizationId"]]["displayName"] == "fingerprinted"
