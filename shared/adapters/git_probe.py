"""What can a PAT do on the GitOps repository? One Git smart-HTTP ref discovery, as Git does first.

`GET {repo}/info/refs?service=git-upload-pack` with Basic auth is the first request of every clone and
fetch; `?service=git-receive-pack` is the first request of every push (issue 15: the automation
credential must be able to push, the fleet credential must not). Only a 200 answered with Git's own
advertisement media type (`application/x-<service>-advertisement`, Git's http-protocol docs) proves the
capability: Azure DevOps answers some unauthenticated requests with a 203 sign-in page or a redirect,
which must not pass, and answers an identity without Contribute with 403 (TF401027) on receive-pack.

The password goes into the `Authorization` header and nowhere else; the detail of a result names the
status and host only, never the URL's query or any header.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import requests

from shared.errors import safe_text
from shared.models.credentials import ProbeResult, ProbeVerdict

log = logging.getLogger("fluxfleet.adapters.git_probe")

ADVERTISEMENT_MEDIA_TYPE = "application/x-git-upload-pack-advertisement"
UPLOAD_PACK = "git-upload-pack"  # fetch: what every panel does
RECEIVE_PACK = "git-receive-pack"  # push: what only the image-automation runner may do
# Connect and read timeouts (seconds): a probe runs inside a trigger invocation and must not hang it.
PROBE_TIMEOUT_S = (10.0, 30.0)
# Identify as a Git client: some servers answer ref discovery differently to browsers.
USER_AGENT = "git/2.43.0 (fluxfleet preflight)"


class HttpGitProbe:
    """`GitProbe` over `requests` (TLS trust from `REQUESTS_CA_BUNDLE`, as every other client here)."""

    def __init__(self, *, session: requests.Session | None = None) -> None:
        self._session = session or requests.Session()

    def probe(self, *, url: str, username: str, password: str, service: str = UPLOAD_PACK) -> ProbeResult:
        if service not in (UPLOAD_PACK, RECEIVE_PACK):
            raise ValueError(f"not a Git smart-HTTP service: {service}")
        discovery = info_refs_url(url, service=service)
        media = f"application/x-{service}-advertisement"
        host = urlsplit(discovery).netloc
        try:
            response = self._session.get(
                discovery,
                auth=(username, password),
                headers={"User-Agent": USER_AGENT, "Git-Protocol": "version=2", "Pragma": "no-cache"},
                timeout=PROBE_TIMEOUT_S,
                allow_redirects=False,
            )
        except UnicodeError:
            # requests encodes Basic credentials as Latin-1: a value outside it cannot be sent at all.
            return ProbeResult(ProbeVerdict.REFUSED, f"{host}: the credential is not sendable (non-ASCII)")
        except requests.RequestException as exc:
            # The exception text may contain the URL but never the Authorization header.
            return ProbeResult(ProbeVerdict.UNREACHABLE, f"{host}: {type(exc).__name__}: {safe_text(exc)}")
        with response:
            status = response.status_code
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if status == 200 and media_type == media:
            what = "its refs" if service == UPLOAD_PACK else "git-receive-pack (the credential can push)"
            return ProbeResult(ProbeVerdict.AUTHENTICATED, f"{host} advertised {what}", status)
        if status in (401, 403) or status == 203 or 300 <= status < 400 or status == 200:
            # 203/3xx/200-with-HTML: a sign-in page instead of Git, i.e. not authenticated.
            return ProbeResult(ProbeVerdict.REFUSED, f"HTTP {status} from {host}", status)
        if status == 404:
            return ProbeResult(ProbeVerdict.NOT_FOUND, f"HTTP 404 from {host}", status)
        return ProbeResult(ProbeVerdict.UNREACHABLE, f"HTTP {status} from {host}", status)


def info_refs_url(repository_url: str, *, service: str = UPLOAD_PACK) -> str:
    """The ref-discovery URL of a clone URL, without any user info the clone URL may carry."""
    parts = urlsplit(repository_url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = parts.path.rstrip("/") + "/info/refs"
    return urlunsplit((parts.scheme, netloc, path, f"service={service}", ""))
