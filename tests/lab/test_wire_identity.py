"""The App Service identity endpoint refuses a user-assigned identity the app does not have.

MSAL adds `client_id` (or `object_id`, `mi_res_id`) to the App Service token request when
`AZURE_CLIENT_ID` or an `identity_config` is set. On Azure, naming an identity the app does not have
gets a 400 "No User Assigned or Delegated Managed Identity found", which is how a stray
`AZURE_CLIENT_ID` breaks a Function app; the lab must fail the same way rather than hand out the
system-assigned identity's token.
"""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

VAULT_SCOPE = "https://vault.azure.net/.default"
SOMEONE_ELSES_CLIENT_ID = "11111111-2222-4333-8444-555555555555"


def token_request(lab: LabHandle, **selector: str) -> requests.Response:
    return requests.get(
        lab.env["IDENTITY_ENDPOINT"],
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net", **selector},
        headers={"X-IDENTITY-HEADER": lab.env["IDENTITY_HEADER"]},
        timeout=10,
    )


def test_a_client_id_the_app_does_not_have_is_refused_as_app_service_refuses_it(lab: LabHandle) -> None:
    refused = token_request(lab, client_id=SOMEONE_ELSES_CLIENT_ID)
    by_resource_id = token_request(
        lab,
        mi_res_id="/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z",
    )

    assert refused.status_code == 400
    assert refused.json() == {
        "statusCode": 400,
        "message": "No User Assigned or Delegated Managed Identity found for specified "
        "ClientId/ResourceId/PrincipalId.",
    }
    assert by_resource_id.status_code == 400


def test_the_sdk_reports_a_stray_client_id_instead_of_getting_a_token(lab: LabHandle) -> None:
    with lab.applied_env():
        credential = ManagedIdentityCredential(client_id=SOMEONE_ELSES_CLIENT_ID)
        with pytest.raises(ClientAuthenticationError, match="No User Assigned or Delegated Managed Identity"):
            credential.get_token(VAULT_SCOPE)


def test_the_apps_own_client_id_still_gets_a_token(lab: LabHandle) -> None:
    own_client_id = lab.doc["app_identity"]["client_id"]
    with lab.applied_env():
        token = ManagedIdentityCredential(client_id=own_client_id).get_token(VAULT_SCOPE)
    assert token.token
    assert token_request(lab, object_id=lab.doc["app_identity"]["object_id"]).status_code == 200
