"""Who is calling: the platform principal only when the platform vouches for it, else the key's id."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from shared.principals import ANONYMOUS, function_key_id, platform_principal, request_principal


def header(claims: list[dict[str, str]], **extra: str) -> str:
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims, **extra}).encode()).decode()


def test_the_documents_own_name_claim_type_names_the_principal() -> None:
    claims = [{"typ": "name", "val": "Ops Person"}, {"typ": "http://x/upn", "val": "ops@contoso.com"}]
    assert platform_principal(header(claims, name_typ="http://x/upn")) == "ops@contoso.com"


def test_a_service_principal_without_a_name_is_named_by_its_app_id() -> None:
    claims = [{"typ": "appid", "val": "0f5c8c36-6c5b-4a55-9f3c-1d5b0e3a2b11"}, {"typ": "oid", "val": "x"}]
    assert platform_principal(header(claims)) == "0f5c8c36-6c5b-4a55-9f3c-1d5b0e3a2b11"


def test_an_unreadable_principal_header_names_nobody() -> None:
    assert platform_principal("not base64!") is None
    assert platform_principal(base64.b64encode(b"[1, 2]").decode()) is None
    assert platform_principal(header([{"typ": "preferred_username", "val": "bad\nname"}])) is None
    assert platform_principal("A" * 20_000) is None


def test_headers_are_only_believed_when_the_platform_authenticated_the_request() -> None:
    headers = {"x-ms-client-principal": header([{"typ": "preferred_username", "val": "ops@contoso.com"}])}
    assert request_principal(headers, function_key=None, platform_auth=True) == "ops@contoso.com"
    assert request_principal(headers, function_key=None, platform_auth=False) == ANONYMOUS
    assert request_principal(headers, function_key="k", platform_auth=False) == function_key_id("k")


def test_the_key_id_cli_prints_the_id_and_never_the_key() -> None:
    key = "Zm9vYmFyZnVuY3Rpb25rZXk="
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "key-id"], input=key, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == function_key_id(key)
    assert key not in result.stdout + result.stderr


def test_the_key_id_cli_refuses_an_empty_stdin_with_an_error_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "key-id"], input="", capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: no function key on stdin")
