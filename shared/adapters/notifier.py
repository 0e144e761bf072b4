"""Teams and Slack incoming webhooks (a `Notifier`), or no-op when none is configured.

Both accept a JSON POST, in different shapes: Slack wants `text` (mrkdwn); Teams — the Workflows
webhooks that replaced Office 365 connectors, and the connectors while they last — take a message
with an Adaptive Card attachment, and connectors also show a plain `text`. The shape is chosen by the
webhook's host. A webhook URL carries its own signature, so it is a secret: it is never logged, and a
failure is reported by status only.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import requests

from shared.errors import PermanentError, TransientError

log = logging.getLogger("fluxfleet.adapters.notifier")

# A webhook post is a courtesy on top of the log record; it must never hold a trigger for long.
WEBHOOK_TIMEOUT_S = (5.0, 15.0)
# Adaptive Card 1.4 is what Teams renders on every client today.
ADAPTIVE_CARD_VERSION = "1.4"


class NullNotifier:
    """No webhook configured: the structured log record is the only notice."""

    def notify(self, *, title: str, text: str, level: str, facts: dict[str, str]) -> None:
        return None


class WebhookNotifier:
    def __init__(self, *, url: str, session: requests.Session | None = None) -> None:
        self._url = url
        self._session = session or requests.Session()

    def notify(self, *, title: str, text: str, level: str, facts: dict[str, str]) -> None:
        payload = webhook_payload(self._url, title=title, text=text, level=level, facts=facts)
        try:
            response = self._session.post(self._url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
        except requests.RequestException as exc:
            raise TransientError(f"webhook not reachable ({type(exc).__name__})") from None
        with response:
            status = response.status_code
        if status >= 500 or status == 429:
            raise TransientError(f"webhook answered HTTP {status}")
        if status >= 400:
            raise PermanentError(f"webhook refused the message with HTTP {status}")


def webhook_payload(url: str, *, title: str, text: str, level: str, facts: dict[str, str]) -> dict[str, Any]:
    host = (urlsplit(url).hostname or "").lower()
    if host == "hooks.slack.com" or host.endswith(".slack.com"):
        lines = [f"*{title}*", text, *(f"• {name}: `{value}`" for name, value in facts.items())]
        return {"text": "\n".join(lines)}
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": [
            {
                "type": "TextBlock",
                "text": title,
                "weight": "Bolder",
                "size": "Medium",
                "color": "Attention" if level == "error" else "Warning",
                "wrap": True,
            },
            {"type": "TextBlock", "text": text, "wrap": True},
            {"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in facts.items()]},
        ],
    }
    return {
        "type": "message",
        "summary": title,
        "text": f"{title}: {text}",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
