"""The plain-HTTP adapters (Git probe, webhook notifier, PAT lifecycle API) against a local HTTP server.

A tiny `http.server` on 127.0.0.1 plays the remote side, so what is checked is what goes over the
wire and how each answer is judged — never a patched client.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from shared.adapters.git_probe import HttpGitProbe, info_refs_url
from shared.adapters.notifier import WebhookNotifier, webhook_payload
from shared.adapters.pat_api import PatApiError, PatLifecycleClient
from shared.errors import PermanentError, TransientError
from shared.models.credentials import ProbeVerdict

Answer = tuple[int, dict[str, str], bytes]


class Remote:
    """Answers every request with `answer(method, path, headers, body)`; records the requests."""

    def __init__(self, answer: Callable[[str, str, dict[str, str], bytes], Answer]) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                outer.requests.append(
                    {"method": self.command, "path": self.path, "headers": headers, "body": body}
                )
                status, extra, payload = answer(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815 - http.server's naming

            def log_message(self, *args: Any) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def remote() -> Iterator[Callable[[Callable[..., Answer]], Remote]]:
    started: list[Remote] = []

    def start(answer: Callable[..., Answer]) -> Remote:
        started.append(Remote(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


ADVERTISEMENT = {"Content-Type": "application/x-git-upload-pack-advertisement"}
PAT = "p" * 52


# --- the Git probe -----------------------------------------------------------------------------------
def test_the_probe_does_ref_discovery_with_basic_auth_and_accepts_only_git_answers(remote: Any) -> None:
    server = remote(lambda *_: (200, ADVERTISEMENT, b"001e# service=git-upload-pack\n0000"))
    result = HttpGitProbe().probe(url=server.url + "/org/p/_git/repo", username="git", password=PAT)
    assert result.verdict is ProbeVerdict.AUTHENTICATED
    request = server.requests[0]
    assert request["path"] == "/org/p/_git/repo/info/refs?service=git-upload-pack"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(f"git:{PAT}".encode()).decode()


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ((401, {"WWW-Authenticate": 'Basic realm="x"'}, b""), ProbeVerdict.REFUSED),
        ((203, {"Content-Type": "text/html"}, b"<html>sign in</html>"), ProbeVerdict.REFUSED),
        ((302, {"Location": "https://login.example/"}, b""), ProbeVerdict.REFUSED),
        ((200, {"Content-Type": "text/html"}, b"<html>sign in</html>"), ProbeVerdict.REFUSED),
        ((404, {}, b""), ProbeVerdict.NOT_FOUND),
        ((503, {}, b""), ProbeVerdict.UNREACHABLE),
    ],
)
def test_anything_but_a_git_advertisement_is_not_authentication(
    remote: Any, answer: Answer, verdict: ProbeVerdict
) -> None:
    server = remote(lambda *_: answer)
    result = HttpGitProbe().probe(url=server.url + "/r", username="git", password=PAT)
    assert result.verdict is verdict
    assert PAT not in result.detail


def test_an_unreachable_server_is_not_a_verdict_on_the_pat() -> None:
    result = HttpGitProbe().probe(url="http://127.0.0.1:9/r", username="git", password=PAT)
    assert result.verdict is ProbeVerdict.UNREACHABLE
    assert PAT not in result.detail


def test_user_info_in_the_clone_url_is_never_sent() -> None:
    assert info_refs_url("https://org@dev.azure.com/org/p/_git/r") == (
        "https://dev.azure.com/org/p/_git/r/info/refs?service=git-upload-pack"
    )


# --- the webhook -------------------------------------------------------------------------------------
FACTS = {"version": "v2", "days left": "6"}


def test_slack_gets_text_and_teams_an_adaptive_card() -> None:
    slack = webhook_payload(
        "https://hooks.slack.com/services/T/B/x", title="T", text="body", level="warning", facts=FACTS
    )
    assert set(slack) == {"text"}
    assert slack["text"].startswith("*T*\nbody")
    teams = webhook_payload(
        "https://prod.westeurope.logic.azure.com/wf", title="T", text="body", level="error", facts=FACTS
    )
    card = teams["attachments"][0]["content"]
    assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["body"][0]["color"] == "Attention"
    assert card["body"][2]["facts"] == [
        {"title": "version", "value": "v2"},
        {"title": "days left", "value": "6"},
    ]


def test_the_webhook_posts_json_and_maps_failures(remote: Any) -> None:
    answers = iter([(200, {}, b"1"), (503, {}, b""), (400, {}, b"bad payload")])
    server = remote(lambda *_: next(answers))
    notifier = WebhookNotifier(url=server.url + "/hook?sig=secret-signature")
    notifier.notify(title="T", text="body", level="warning", facts=FACTS)
    assert json.loads(server.requests[0]["body"])["summary"] == "T"
    with pytest.raises(TransientError) as transient:
        notifier.notify(title="T", text="body", level="warning", facts=FACTS)
    with pytest.raises(PermanentError) as permanent:
        notifier.notify(title="T", text="body", level="warning", facts=FACTS)
    for error in (transient.value, permanent.value):
        assert "secret-signature" not in error.message


# --- the PAT lifecycle API ---------------------------------------------------------------------------
class StaticToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("user-token", int((datetime.now(UTC) + timedelta(hours=1)).timestamp()))


def pat_client(server: Remote) -> PatLifecycleClient:
    """The client over a pipeline without the bearer policy: azure-core refuses bearer tokens over plain
    HTTP, and the local stand-in is plain HTTP. The token policy itself is azure-core's, not ours."""
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.policies import HeadersPolicy
    from azure.core.pipeline.transport import RequestsTransport

    pipeline: Pipeline[Any, Any] = Pipeline(
        transport=RequestsTransport(), policies=[HeadersPolicy({"Authorization": "Bearer user-token"})]
    )
    return PatLifecycleClient(
        vssps_url=server.url, organization="ipc-org", credential=StaticToken(), pipeline=pipeline
    )


def test_create_sends_an_org_scoped_request_and_returns_the_token_once(remote: Any) -> None:
    body = {
        "patToken": {
            "authorizationId": "a1",
            "displayName": "n",
            "scope": "vso.code",
            "targetAccounts": ["org-guid"],
            "validFrom": "2026-08-20T06:00:00Z",
            "validTo": "2026-11-18T06:00:00.1234567Z",
            "token": PAT,
        },
        "patTokenError": "none",
    }
    server = remote(lambda *_: (200, {"Content-Type": "application/json"}, json.dumps(body).encode()))
    minted = pat_client(server).create(
        display_name="n", scope="vso.code", valid_to=datetime(2026, 11, 18, 6, tzinfo=UTC)
    )
    assert minted.token == PAT
    assert PAT not in repr(minted)
    sent = json.loads(server.requests[0]["body"])
    assert sent == {
        "displayName": "n",
        "scope": "vso.code",
        "validTo": "2026-11-18T06:00:00Z",
        "allOrgs": False,
    }
    assert server.requests[0]["path"] == "/ipc-org/_apis/tokens/pats?api-version=7.1-preview.1"
    assert minted.pat.valid_to is not None


def test_a_pat_token_error_in_a_200_body_is_an_error_that_says_what_to_do(remote: Any) -> None:
    body = {"patToken": None, "patTokenError": "patLifespanPolicyViolation"}
    server = remote(lambda *_: (200, {"Content-Type": "application/json"}, json.dumps(body).encode()))
    with pytest.raises(PatApiError) as raised:
        pat_client(server).create(display_name="n", scope="vso.code", valid_to=datetime.now(UTC))
    assert raised.value.pat_token_error == "patLifespanPolicyViolation"
    assert "try fewer --days" in raised.value.message


def test_an_http_refusal_names_the_action_without_echoing_secrets(remote: Any) -> None:
    body = {"message": f"denied for token={PAT}"}
    server = remote(lambda *_: (403, {"Content-Type": "application/json"}, json.dumps(body).encode()))
    with pytest.raises(PermanentError) as raised:
        pat_client(server).revoke("a1")
    assert raised.value.message.startswith("revoke PAT a1:")
    assert PAT not in raised.value.message
