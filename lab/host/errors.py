"""Why the local Functions host refuses to start.

The real host keeps running with an error banner when indexing fails; locally a silent half-started host
only produces confusing test failures later, so every configuration or indexing problem stops startup
with one message that names the file, function or setting at fault.
"""

from __future__ import annotations


class HostStartupError(Exception):
    """The app, host.json, local.settings.json or the lab state cannot be used as given."""


class FunctionLoadError(HostStartupError):
    """One function's Python signature does not match its bindings (the worker's own check)."""

    def __init__(self, function_name: str, message: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {message}")
        self.function_name = function_name
