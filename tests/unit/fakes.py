"""In-memory fakes of the app's own ports that more than one service's tests use (one of each)."""

from __future__ import annotations

from typing import Any


class RecordingNotifier:
    """The `Notifier` port: records each message; raises `fail_with` instead when it is set."""

    def __init__(self, *, fail_with: Exception | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_with = fail_with

    def notify(self, *, title: str, text: str, level: str, facts: dict[str, str]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.messages.append({"title": title, "text": text, "level": level, "facts": dict(facts)})
