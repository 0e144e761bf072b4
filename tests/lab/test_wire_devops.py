"""Azure DevOps' 401: the headers clients use to discover how to sign in.

Git Credential Manager and `az` send an anonymous request first and read the organization's Entra
tenant from `X-VSS-ResourceTenant` (and the `Bearer authorization_uri=` challenge) on the 401, so the
lab's Git and REST endpoints must answer an anonymous request with both, as dev.azure.com does.
"""

from __future__ import annotations

import pytest
import requests

from tests.labkit import LabHandle

pytestmark = pytest.mark.lab


def rest_url(lab: LabHandle) -> str:
    env = lab.env
    return (
        f"{env['FLUXFLEET_DEVOPS_ORG_URL']}/{env['FLUXFLEET_DEVOPS_PROJECT']}/_apis/git/repositories/"
        f"{env['FLUXFLEET_DEVOPS_REPOSITORY']}?api-version=7.1"
    )


@pytest.mark.parametrize("kind", ["git", "rest"], ids=["git smart HTTP", "Git REST with a bad token"])
def test_an_unauthenticated_request_names_the_organizations_tenant(lab: LabHandle, kind: str) -> None:
    tenant = lab.doc["tenant_id"]
    if kind == "git":
        url, headers = lab.doc["git_url"] + "/info/refs?service=git-upload-pack", {}
    else:
        url, headers = rest_url(lab), {"Authorization": "Bearer not-a-token"}

    response = requests.get(url, headers=headers, verify=lab.ca_bundle, timeout=10)

    assert response.status_code == 401
    assert response.headers["X-VSS-ResourceTenant"] == tenant
    challenges = response.raw.headers.getlist("WWW-Authenticate")
    assert f"Bearer authorization_uri=https://login.microsoftonline.com/{tenant}" in challenges
    assert response.headers["ActivityId"]


def test_the_pat_api_answers_an_anonymous_caller_with_the_same_tenant_header(lab: LabHandle) -> None:
    response = requests.get(
        f"{lab.endpoint('vssps')}/{lab.doc['devops']['org']}/_apis/tokens/pats",
        params={"api-version": "7.1-preview.1"},
        verify=lab.ca_bundle,
        timeout=10,
    )

    assert response.status_code == 401
    assert response.headers["X-VSS-ResourceTenant"] == lab.doc["tenant_id"]
