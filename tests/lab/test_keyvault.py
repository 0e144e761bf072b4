"""The lab's Key Vault, driven by the real `azure-keyvault-secrets` client with a managed identity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

PAT_SECRET = "flux-gitops-pat"
DAY_S = 86_400


@pytest.fixture
def vault(lab_clean: LabHandle) -> Iterator[SecretClient]:
    """A SecretClient as the app builds it in lab mode, inside the lab's environment (CA, identity)."""
    with lab_clean.applied_env():
        yield SecretClient(
            lab_clean.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        )


def app_token(lab: LabHandle, resource: str) -> str:
    """A token for the Function app's identity from the lab's identity endpoint, as the SDK gets one."""
    response = requests.get(
        lab.env["IDENTITY_ENDPOINT"],
        params={"api-version": "2019-08-01", "resource": resource},
        headers={"X-IDENTITY-HEADER": lab.env["IDENTITY_HEADER"]},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def test_the_fleet_pat_is_seeded_as_the_operator_stores_it(lab_clean: LabHandle, vault: SecretClient) -> None:
    secret = vault.get_secret(PAT_SECRET)
    state = lab_clean.state()

    assert secret.value
    assert secret.value not in json.dumps(state), "ground truth must never carry a secret value"
    assert secret.properties.content_type == "text/plain"
    assert secret.properties.tags is not None
    assert secret.properties.tags["scope"] == "vso.code"
    # The vault holds the very PAT the panels start with: same id, same validTo, same value fingerprint.
    pats = {pat["authorizationId"]: pat for pat in state["pats"]}
    pat = pats[secret.properties.tags["authorizationId"]]
    [version] = state["keyvault"]["secrets"][PAT_SECRET]["versions"]
    assert version["fingerprint"] == pat["fingerprint"]
    assert secret.properties.expires_on is not None
    assert secret.properties.expires_on.strftime("%Y-%m-%dT%H:%M:%SZ") == pat["validTo"]
    assert secret.properties.created_on is not None
    lifetime = secret.properties.expires_on - secret.properties.created_on
    assert 59 * DAY_S <= lifetime.total_seconds() <= 61 * DAY_S


def test_a_set_secret_reads_back_as_latest_and_by_version(vault: SecretClient) -> None:
    first = vault.set_secret("probe", "first", content_type="text/plain", tags={"purpose": "test"})
    second = vault.set_secret("probe", "second")

    assert vault.get_secret("probe").value == "second"
    assert vault.get_secret("probe", first.properties.version).value == "first"
    assert first.properties.version != second.properties.version
    assert str(first.id).endswith(f"/secrets/probe/{first.properties.version}")
    assert len(first.properties.version or "") == 32
    assert vault.get_secret("probe", first.properties.version).properties.tags == {"purpose": "test"}


def test_listing_versions_pages_with_maxresults_and_a_skiptoken(
    lab_clean: LabHandle, vault: SecretClient
) -> None:
    created = [str(vault.set_secret("paged", f"value-{i}").properties.version) for i in range(5)]

    listed = [str(p.version) for p in vault.list_properties_of_secret_versions("paged", max_page_size=2)]

    assert sorted(listed) == sorted(created)
    pages = [
        r
        for r in lab_clean.control("GET", "/_lab/requests?service=keyvault")["requests"]
        if r["path"] == "/secrets/paged/versions" and r["status"] == 200
    ]
    assert len(pages) == 3
    assert all("$skiptoken" in r["query"] or "%24skiptoken" in r["query"] for r in pages[1:])


def test_listing_secrets_shows_each_secret_once(vault: SecretClient) -> None:
    vault.set_secret("listed", "v1")
    vault.set_secret("listed", "v2")
    names = [str(p.name) for p in vault.list_properties_of_secrets()]
    assert sorted(names) == ["flux-gitops-automation-pat", "flux-gitops-pat", "listed"]


def test_a_disabled_version_is_refused_with_forbidden_secret_disabled(vault: SecretClient) -> None:
    old = vault.set_secret("rotating", "old")
    vault.set_secret("rotating", "new")

    updated = vault.update_secret_properties("rotating", old.properties.version, enabled=False)

    assert updated.enabled is False
    with pytest.raises(HttpResponseError) as refused:
        vault.get_secret("rotating", old.properties.version)
    assert refused.value.status_code == 403
    assert refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    assert "SecretDisabled" in str(refused.value)
    assert vault.get_secret("rotating").value == "new"


def test_updating_properties_changes_expiry_and_tags_but_not_the_value(vault: SecretClient) -> None:
    created = vault.set_secret("expiring", "kept", tags={"a": "1"})
    assert created.properties.created_on is not None
    new_expiry = created.properties.created_on.replace(microsecond=0) + timedelta(days=365)

    vault.update_secret_properties(
        "expiring", created.properties.version, expires_on=new_expiry, tags={"b": "2"}
    )

    read = vault.get_secret("expiring")
    assert (read.value, read.properties.expires_on, read.properties.tags) == ("kept", new_expiry, {"b": "2"})


def test_a_missing_secret_is_404_secret_not_found(vault: SecretClient) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        vault.get_secret("no-such-secret")
    assert missing.value.error is not None
    assert missing.value.error.code == "SecretNotFound"
    assert "A secret with (name/id) no-such-secret was not found in this key vault" in str(missing.value)


def test_a_deleted_secret_is_soft_deleted_recoverable_and_blocks_its_name(vault: SecretClient) -> None:
    vault.set_secret("doomed", "v")

    deleted = vault.begin_delete_secret("doomed").result()

    assert deleted.recovery_id is not None
    assert vault.get_deleted_secret("doomed").name == "doomed"
    with pytest.raises(ResourceNotFoundError):
        vault.get_secret("doomed")
    with pytest.raises(ResourceExistsError):
        vault.set_secret("doomed", "again")
    vault.begin_recover_deleted_secret("doomed").result()
    assert vault.get_secret("doomed").value == "v"


@pytest.mark.parametrize("api_version", ["7.5", "7.6"])
def test_older_api_versions_are_served(lab_clean: LabHandle, api_version: str) -> None:
    with lab_clean.applied_env():
        client = SecretClient(
            lab_clean.doc["keyvault"]["url"],
            ManagedIdentityCredential(),
            verify_challenge_resource=False,
            api_version=api_version,
        )
        assert client.get_secret(PAT_SECRET).properties.content_type == "text/plain"
    queries = [r["query"] for r in lab_clean.control("GET", "/_lab/requests?service=keyvault")["requests"]]
    assert any(f"api-version={api_version}" in q for q in queries)


def test_a_request_without_a_token_gets_key_vaults_challenge(lab_clean: LabHandle) -> None:
    response = requests.get(
        f"{lab_clean.doc['keyvault']['url']}/secrets/{PAT_SECRET}/",
        params={"api-version": "7.5"},
        verify=lab_clean.ca_bundle,
        timeout=10,
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.windows.net/{lab_clean.doc["tenant_id"]}", '
        'resource="https://vault.azure.net"'
    )
    assert response.json()["error"]["code"] == "Unauthorized"


def test_a_token_for_another_audience_is_refused(lab_clean: LabHandle) -> None:
    token = app_token(lab_clean, "https://management.azure.com")
    response = requests.get(
        f"{lab_clean.doc['keyvault']['url']}/secrets/{PAT_SECRET}/",
        params={"api-version": "7.5"},
        headers={"Authorization": f"Bearer {token}"},
        verify=lab_clean.ca_bundle,
        timeout=10,
    )
    assert response.status_code == 401
    assert "Invalid audience" in response.json()["error"]["message"]
    assert token not in response.text


def test_an_identity_without_a_role_is_forbidden_by_rbac(lab_clean: LabHandle, vault: SecretClient) -> None:
    identity = lab_clean.doc["app_identity"]["object_id"]
    lab_clean.control("PUT", f"/_lab/keyvault/roleAssignments/{identity}", {"role": None})

    with pytest.raises(HttpResponseError) as refused:
        vault.get_secret(PAT_SECRET)

    assert refused.value.status_code == 403
    assert "ForbiddenByRbac" in str(refused.value)


def test_ground_truth_shows_fingerprints_of_versions(lab_clean: LabHandle, vault: SecretClient) -> None:
    vault.set_secret("tracked", "one")
    vault.set_secret("tracked", "two")
    tracked = lab_clean.state()["keyvault"]["secrets"]["tracked"]
    fingerprints = [v["fingerprint"] for v in tracked["versions"]]
    assert len(set(fingerprints)) == 2
    assert all(len(f) == 16 for f in fingerprints)
    assert tracked["currentVersion"] == tracked["versions"][-1]["version"]
