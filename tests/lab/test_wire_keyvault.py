"""Key Vault's wire details beyond what the SDK checks: headers, the RBAC denial text, list item ids.

Each test pins one answer the lab once gave differently from recorded Key Vault responses or the
azure-rest-api-specs examples (7.5): the service headers on every answer including the 401
challenge, the challenge's `login.windows.net` authority, the `ForbiddenByRbac` message format, the
unversioned ids of GetDeletedSecrets items and the unescaped `$skiptoken` in nextLinks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

PAT_SECRET = "flux-gitops-pat"
API_VERSION = "7.5"


@pytest.fixture
def vault(lab_clean: LabHandle) -> Iterator[SecretClient]:
    with lab_clean.applied_env():
        yield SecretClient(
            lab_clean.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        )


def vault_token(lab: LabHandle) -> str:
    """The app identity's token for Key Vault, as the identity endpoint issues it."""
    response = requests.get(
        lab.env["IDENTITY_ENDPOINT"],
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": lab.env["IDENTITY_HEADER"]},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def vault_get(lab: LabHandle, path: str, *, token: str | None, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        f"{lab.doc['keyvault']['url']}{path}",
        params={"api-version": API_VERSION, **params},
        headers=headers,
        verify=lab.ca_bundle,
        timeout=10,
    )


def assert_key_vault_headers(response: requests.Response) -> None:
    assert response.headers["x-ms-keyvault-service-version"]
    assert response.headers["x-ms-keyvault-region"] == "westeurope"
    assert response.headers["x-ms-keyvault-network-info"].startswith("conn_type=Ipv4;addr=127.0.0.1;")
    assert response.headers["x-ms-request-id"]
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_the_challenge_names_login_windows_net_and_carries_the_service_headers(lab_clean: LabHandle) -> None:
    challenged = vault_get(lab_clean, f"/secrets/{PAT_SECRET}/", token=None)

    assert challenged.status_code == 401
    assert challenged.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.windows.net/{lab_clean.doc["tenant_id"]}", '
        'resource="https://vault.azure.net"'
    )
    assert challenged.json() == {
        "error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
    }
    assert_key_vault_headers(challenged)


def test_successful_and_not_found_answers_carry_the_same_service_headers(lab_clean: LabHandle) -> None:
    token = vault_token(lab_clean)

    found = vault_get(lab_clean, f"/secrets/{PAT_SECRET}/", token=token)
    missing = vault_get(lab_clean, "/secrets/no-such-secret/", token=token)

    assert found.status_code == 200
    assert_key_vault_headers(found)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SecretNotFound"
    assert_key_vault_headers(missing)


def rbac_lines(error: HttpResponseError) -> dict[str, str]:
    """The `Key: value` lines of Key Vault's ForbiddenByRbac message."""
    assert error.error is not None
    lines = [line for line in str(error.error.message).split("\r\n") if ": " in line]
    return dict(line.split(": ", 1) for line in lines)


def test_an_rbac_denial_names_the_caller_and_the_lowercased_resource_as_key_vault_does(
    lab_clean: LabHandle, vault: SecretClient
) -> None:
    identity: dict[str, Any] = lab_clean.doc["app_identity"]
    lab_clean.control("PUT", f"/_lab/keyvault/roleAssignments/{identity['object_id']}", {"role": None})

    with pytest.raises(HttpResponseError) as on_secret:
        vault.get_secret(PAT_SECRET)
    with pytest.raises(HttpResponseError) as on_vault:
        next(iter(vault.list_properties_of_secrets()))

    lines = rbac_lines(on_secret.value)
    assert lines["Caller"] == (
        f"appid={identity['client_id']};oid={identity['object_id']};"
        f"iss=https://sts.windows.net/{lab_clean.doc['tenant_id']}/"
    )
    assert lines["Action"] == "'Microsoft.KeyVault/vaults/secrets/getSecret/action'"
    assert lines["Resource"] == f"'{lab_clean.doc['keyvault']['id'].lower()}/secrets/{PAT_SECRET}'"
    assert lines["DenyAssignmentId"] == "null"
    assert lines["DecisionReason"] == "'DeniedWithNoValidRBAC' "
    # Listing is judged on the vault itself, not on a /secrets pseudo-resource.
    assert rbac_lines(on_vault.value)["Resource"] == f"'{lab_clean.doc['keyvault']['id'].lower()}'"


def test_deleted_secret_items_name_the_secret_and_paging_keeps_skiptoken_unescaped(
    lab_clean: LabHandle, vault: SecretClient
) -> None:
    for name in ("gone-one", "gone-two"):
        vault.set_secret(name, "value")
        vault.begin_delete_secret(name).wait()
    token = vault_token(lab_clean)

    first = vault_get(lab_clean, "/deletedsecrets", token=token, maxresults="1").json()
    single = vault_get(lab_clean, "/deletedsecrets/gone-one", token=token).json()

    [item] = first["value"]
    assert item["id"] == f"{lab_clean.doc['keyvault']['url']}/secrets/gone-one"
    assert item["recoveryId"] == f"{lab_clean.doc['keyvault']['url']}/deletedsecrets/gone-one"
    assert "$skiptoken=" in first["nextLink"]
    # GetDeletedSecret (one secret) still names the version that was current, as Key Vault's example does.
    assert single["id"].startswith(f"{lab_clean.doc['keyvault']['url']}/secrets/gone-one/")
    assert len(single["id"].rsplit("/", 1)[1]) == 32
    assert sorted(p.name for p in vault.list_deleted_secrets()) == ["gone-one", "gone-two"]
