"""The lab's Git server with the real `git` CLI: clone, fetch and push as Flux and operators do them.

Credentials are judged the way Azure DevOps judges them: a PAT as the Basic password (read needs
`vso.code`, push `vso.code_write`), unexpired by the lab clock and unrevoked, or the Function app's
managed-identity token as a Bearer header. Failures must look like Azure DevOps' to git: 401 with a
Basic challenge ("Authentication failed"), 403 for a push the credential may not make — on the
receive-pack advertisement already, which is what a "may this credential push?" probe asks.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import requests
from azure.identity import ManagedIdentityCredential

from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
PLACEHOLDER_REGISTRY = "ipcplatformacr.azurecr.io"
# The brief's floor for ref polling by a fleet of agents.
REQUIRED_INFO_REFS_PER_S = 100


@pytest.fixture(scope="module")
def devops_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A small lab of our own: these tests push commits and advance the clock."""
    with LabProcess(tmp_path_factory.mktemp("git-lab"), clusters=1, subscriptions=1, azurite=False) as handle:
        yield handle


def mint_pat(lab: LabHandle, scope: str, days: float = 30) -> dict[str, str]:
    return dict(lab.control("POST", "/_lab/devops/pats", {"scope": scope, "days": days}, expect=201))


def url_with(lab: LabHandle, token: str) -> str:
    return str(lab.doc["git_url"]).replace("https://", f"https://git:{token}@", 1)


def git(
    lab: LabHandle, home: Path, *args: str, cwd: Path | None = None, extra_header: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run git with the lab's CA, no prompts, no credential helpers and a throwaway HOME."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_SSL_CAINFO": lab.env["GIT_SSL_CAINFO"],
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test Operator",
        "GIT_AUTHOR_EMAIL": "operator@contoso.example",
        "GIT_COMMITTER_NAME": "Test Operator",
        "GIT_COMMITTER_EMAIL": "operator@contoso.example",
    }
    options = ["-c", "credential.helper=", "-c", "init.defaultBranch=main"]
    if extra_header:
        options += ["-c", f"http.extraHeader={extra_header}"]
    return subprocess.run(
        ["git", *options, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def head(lab: LabHandle) -> str:
    return str(lab.state()["devops"]["head_commit"])


def commit_one_file(lab: LabHandle, home: Path, clone: Path, name: str) -> None:
    (clone / name).write_text(f"{name}\n")
    assert git(lab, home, "add", name, cwd=clone).returncode == 0
    assert git(lab, home, "commit", "-m", f"add {name}", cwd=clone).returncode == 0


def test_a_read_pat_clones_the_seeded_kubernetes_folder_with_the_lab_registry(
    devops_lab: LabHandle, tmp_path: Path
) -> None:
    pat = mint_pat(devops_lab, "vso.code")
    result = git(devops_lab, tmp_path, "clone", url_with(devops_lab, pat["token"]), str(tmp_path / "repo"))
    assert result.returncode == 0, result.stderr
    clone = tmp_path / "repo"
    source = Path(__file__).resolve().parents[2] / "kubernetes"
    expected = {p.relative_to(source.parent).as_posix() for p in source.rglob("*") if p.is_file()}
    cloned = {
        p.relative_to(clone).as_posix() for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    assert cloned == expected | {"README.md"}
    texts = [(clone / name).read_text() for name in expected]
    assert not any(PLACEHOLDER_REGISTRY in text for text in texts)
    login_server = devops_lab.env.get("FLUXFLEET_ACR_LOGIN_SERVER")
    if login_server and any(PLACEHOLDER_REGISTRY in p.read_text() for p in source.rglob("*") if p.is_file()):
        assert any(login_server in text for text in texts)
    rev = git(devops_lab, tmp_path, "rev-parse", "HEAD", cwd=clone)
    assert rev.stdout.strip() == head(devops_lab)


def test_a_wrong_pat_is_refused_as_authentication_failed(devops_lab: LabHandle, tmp_path: Path) -> None:
    result = git(devops_lab, tmp_path, "ls-remote", url_with(devops_lab, "not-a-real-pat"))
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr
    assert "not-a-real-pat" not in result.stderr  # git prints the URL without its credentials


def test_an_anonymous_request_gets_the_basic_challenge_azure_devops_sends(devops_lab: LabHandle) -> None:
    response = requests.get(
        devops_lab.doc["git_url"] + "/info/refs?service=git-upload-pack",
        verify=devops_lab.ca_bundle,
        timeout=10,
    )
    host = devops_lab.endpoint("devops").removeprefix("https://")
    assert response.status_code == 401
    challenges = response.raw.headers.getlist("WWW-Authenticate")
    assert f'Basic realm="https://{host}/"' in challenges


def test_a_read_only_pat_cannot_push_and_main_does_not_move(devops_lab: LabHandle, tmp_path: Path) -> None:
    pat = mint_pat(devops_lab, "vso.code")
    clone = tmp_path / "repo"
    assert git(devops_lab, tmp_path, "clone", url_with(devops_lab, pat["token"]), str(clone)).returncode == 0
    before = head(devops_lab)
    commit_one_file(devops_lab, tmp_path, clone, "read-only.txt")
    result = git(devops_lab, tmp_path, "push", "origin", "main", cwd=clone)
    assert result.returncode != 0
    # What git prints for Azure DevOps' refusal: the 403 body as `remote:` lines, then the status.
    assert "remote: TF401027: You need the Git 'GenericContribute' permission" in result.stderr
    assert "The requested URL returned error: 403" in result.stderr
    assert pat["token"] not in result.stderr
    assert head(devops_lab) == before


def receive_pack_advertisement(lab: LabHandle, token: str) -> requests.Response:
    """`GET info/refs?service=git-receive-pack`: what a push asks first, and what a push probe asks."""
    return requests.get(
        lab.doc["git_url"] + "/info/refs?service=git-receive-pack",
        headers={"Authorization": "Basic " + base64.b64encode(f"git:{token}".encode()).decode()},
        verify=lab.ca_bundle,
        timeout=10,
    )


def test_a_read_only_pat_is_refused_the_receive_pack_advertisement_in_azure_devops_words(
    devops_lab: LabHandle,
) -> None:
    response = receive_pack_advertisement(devops_lab, mint_pat(devops_lab, "vso.code")["token"])
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/plain")
    message = (
        "TF401027: You need the Git 'GenericContribute' permission to perform this action. "
        "Details: identity 'operator@contoso.example', scope 'repository'.\n"
    )
    # The shape dev.azure.com sends: service pkt-line, two flushes, the message as a pkt-line, then plain.
    assert response.text == (
        "001f# service=git-receive-pack\n00000000" + f"{len(message) + 4:04x}" + message + message
    )


def test_the_same_read_only_pat_still_gets_the_upload_pack_advertisement(devops_lab: LabHandle) -> None:
    token = mint_pat(devops_lab, "vso.code")["token"]
    response = requests.get(
        devops_lab.doc["git_url"] + "/info/refs?service=git-upload-pack",
        headers={"Authorization": "Basic " + base64.b64encode(f"git:{token}".encode()).decode()},
        verify=devops_lab.ca_bundle,
        timeout=10,
    )
    assert response.status_code == 200


@pytest.mark.parametrize("scope", ["vso.code_write", "vso.code_manage", "vso.code_full"])
def test_every_code_scope_that_includes_write_gets_the_receive_pack_advertisement(
    devops_lab: LabHandle, scope: str
) -> None:
    response = receive_pack_advertisement(devops_lab, mint_pat(devops_lab, scope)["token"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-git-receive-pack-advertisement"
    assert b"refs/heads/main" in response.content


def test_a_revoked_write_pat_is_unauthenticated_not_forbidden_on_the_advertisement(
    devops_lab: LabHandle,
) -> None:
    pat = mint_pat(devops_lab, "vso.code_write")
    devops_lab.control("POST", f"/_lab/devops/pats/{pat['authorizationId']}/revoke", expect=200)
    response = receive_pack_advertisement(devops_lab, pat["token"])
    assert response.status_code == 401
    assert response.text == "Access Denied: The Personal Access Token used has been revoked."


def test_a_write_pat_pushes_to_main_and_the_commit_is_ground_truth(
    devops_lab: LabHandle, tmp_path: Path
) -> None:
    pat = mint_pat(devops_lab, "vso.code_write")
    clone = tmp_path / "repo"
    assert git(devops_lab, tmp_path, "clone", url_with(devops_lab, pat["token"]), str(clone)).returncode == 0
    commit_one_file(devops_lab, tmp_path, clone, "pushed.txt")
    result = git(devops_lab, tmp_path, "push", "origin", "main", cwd=clone)
    assert result.returncode == 0, result.stderr
    pushed = git(devops_lab, tmp_path, "rev-parse", "HEAD", cwd=clone).stdout.strip()
    assert head(devops_lab) == pushed
    commits = devops_lab.control("GET", "/_lab/devops/commits?branch=main&top=1")["commits"]
    assert commits[0]["sha"] == pushed
    assert commits[0]["changed_paths"] == ["pushed.txt"]
    assert commits[0]["message"] == "add pushed.txt"


def test_the_managed_identity_token_clones_and_pushes_as_a_member_with_basic_access(
    devops_lab: LabHandle, tmp_path: Path
) -> None:
    with devops_lab.applied_env():
        token = ManagedIdentityCredential().get_token(DEVOPS_SCOPE).token
    header = f"Authorization: Bearer {token}"
    clone = tmp_path / "repo"
    result = git(devops_lab, tmp_path, "clone", devops_lab.doc["git_url"], str(clone), extra_header=header)
    assert result.returncode == 0, result.stderr
    commit_one_file(devops_lab, tmp_path, clone, "by-managed-identity.txt")
    pushed = git(devops_lab, tmp_path, "push", "origin", "main", cwd=clone, extra_header=header)
    assert pushed.returncode == 0, pushed.stderr
    assert head(devops_lab) == git(devops_lab, tmp_path, "rev-parse", "HEAD", cwd=clone).stdout.strip()


def test_a_commit_through_the_control_api_is_what_the_next_fetch_sees(
    devops_lab: LabHandle, tmp_path: Path
) -> None:
    pat = mint_pat(devops_lab, "vso.code")
    url = url_with(devops_lab, pat["token"])
    before = git(devops_lab, tmp_path, "ls-remote", url, "refs/heads/main").stdout.split()[0]
    made = devops_lab.control(
        "POST",
        "/_lab/devops/files",
        {
            "files": {"kubernetes/workloads/extra/policy.yaml": "kind: ImagePolicy\n"},
            "message": "Add a policy without a marker",
            "author": "Test <test@contoso.example>",
        },
        expect=201,
    )
    after = git(devops_lab, tmp_path, "ls-remote", url, "refs/heads/main").stdout.split()[0]
    assert before != after
    assert after == made["sha"]
    clone = tmp_path / "repo"
    assert git(devops_lab, tmp_path, "clone", url, str(clone)).returncode == 0
    assert (clone / "kubernetes/workloads/extra/policy.yaml").read_text() == "kind: ImagePolicy\n"


def test_a_revoked_pat_is_refused_on_the_next_request(devops_lab: LabHandle, tmp_path: Path) -> None:
    pat = mint_pat(devops_lab, "vso.code")
    url = url_with(devops_lab, pat["token"])
    assert git(devops_lab, tmp_path, "ls-remote", url).returncode == 0
    devops_lab.control("POST", f"/_lab/devops/pats/{pat['authorizationId']}/revoke", expect=200)
    result = git(devops_lab, tmp_path, "ls-remote", url)
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr


def test_a_pat_stops_working_when_the_lab_clock_passes_its_valid_to(
    devops_lab: LabHandle, tmp_path: Path
) -> None:
    pat = mint_pat(devops_lab, "vso.code", days=1)
    url = url_with(devops_lab, pat["token"])
    assert git(devops_lab, tmp_path, "ls-remote", url).returncode == 0
    devops_lab.control("POST", "/_lab/clock/advance", {"seconds": 24 * 3600 + 60})
    result = git(devops_lab, tmp_path, "ls-remote", url)
    assert result.returncode != 0
    assert "expired" in result.stderr


def test_ref_discovery_sustains_a_fleet_polling_rate(devops_lab: LabHandle) -> None:
    pat = mint_pat(devops_lab, "vso.code")
    url = devops_lab.doc["git_url"] + "/info/refs?service=git-upload-pack"
    headers = {"Authorization": "Basic " + base64.b64encode(f"git:{pat['token']}".encode()).decode()}
    total, concurrency = 400, 8

    async def poll() -> tuple[float, list[int]]:
        context = ssl.create_default_context(cafile=devops_lab.ca_bundle)
        pending = iter(range(total))
        statuses: list[int] = []

        async def agent() -> None:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
                for _ in pending:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        statuses.append(response.status)

        started = time.perf_counter()
        await asyncio.gather(*(agent() for _ in range(concurrency)))
        return time.perf_counter() - started, statuses

    elapsed, statuses = asyncio.run(poll())
    assert statuses == [200] * total
    assert total / elapsed >= REQUIRED_INFO_REFS_PER_S
