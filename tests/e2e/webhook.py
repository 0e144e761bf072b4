"""A Teams/Slack incoming-webhook stand-in for e2e tests: records every message the app posts."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class Webhook:
    """Listens on 127.0.0.1; `url` goes into FLUXFLEET_WEBHOOK_URL, `messages` are the decoded bodies."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.messages.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        return [str(m.get("summary") or m.get("text")) for m in self.messages]

    def expiry_titles(self) -> list[str]:
        return [str(m["summary"]) for m in self.messages if "Flux PAT expire" in str(m.get("summary"))]
