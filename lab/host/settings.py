"""App settings for the hosted app: where each one comes from, and `%NAME%` binding expressions.

In Azure, app settings are environment variables of the worker. Locally they come from three places,
in this order of precedence (the first that defines a key wins):

1. `lab.json` `env` — what points the app at the lab (endpoints, CA bundle, identity, storage);
   the lab must win, or a stray shell variable would send the app to real Azure;
2. the host process's own environment — as Core Tools does ("Skipping 'X' from local settings as it's
   already defined in current environment variables");
3. `local.settings.json` `Values` in the app directory.

`FUNCTIONS_WORKER_RUNTIME` is always `python`. Values are never logged, only their keys' origin.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.host.errors import HostStartupError

LOCAL_SETTINGS_FILE = "local.settings.json"
# Core Tools' default port, used when rendering a local.settings.json for `func start`.
CORE_TOOLS_DEFAULT_PORT = 7071

_EXPRESSION = re.compile(r"%([^%]+)%")


@dataclass(frozen=True)
class AppSettings:
    values: Mapping[str, str]
    from_lab: frozenset[str]
    from_local_settings: frozenset[str]

    def get(self, key: str) -> str | None:
        return self.values.get(key)


def read_local_settings(app_dir: Path) -> dict[str, str]:
    """`Values` of `app_dir/local.settings.json`, or {} when there is none."""
    path = app_dir / LOCAL_SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise HostStartupError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise HostStartupError(f"{path} must hold a JSON object")
    if doc.get("IsEncrypted"):
        raise HostStartupError(f"{path} is encrypted; the lab host reads only plain local settings")
    values = doc.get("Values") or {}
    if not isinstance(values, dict):
        raise HostStartupError(f"{path} Values must be an object")
    result: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, (dict, list)) or value is None:
            raise HostStartupError(f"{path} Values.{key} must be a string")
        result[str(key)] = value if isinstance(value, str) else json.dumps(value)
    return result


def compose_app_settings(
    *, lab_env: Mapping[str, str], process_env: Mapping[str, str], local_settings: Mapping[str, str]
) -> AppSettings:
    """Merge the three sources with the precedence in the module docstring."""
    values: dict[str, str] = dict(local_settings)
    values.update(process_env)
    values.update(lab_env)
    values["FUNCTIONS_WORKER_RUNTIME"] = "python"
    from_local = frozenset(key for key in local_settings if key not in process_env and key not in lab_env)
    return AppSettings(values=values, from_lab=frozenset(lab_env), from_local_settings=from_local)


def resolve_expression(text: str, settings: Mapping[str, str], *, where: str) -> str:
    """Replace every `%NAME%` with the app setting NAME, as the host does for binding properties."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        value = settings.get(name)
        if value is None:
            raise HostStartupError(f"{where}: '%{name}%' does not resolve to a value (no app setting {name})")
        return value

    return _EXPRESSION.sub(lookup, text)


def render_local_settings(lab_doc: Mapping[str, Any]) -> dict[str, Any]:
    """A `local.settings.json` that points `func start` (Core Tools) at the lab described by lab.json."""
    env: dict[str, str] = {str(key): str(value) for key, value in dict(lab_doc.get("env") or {}).items()}
    values: dict[str, str] = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        # Older Core Tools need this for the v2 (decorator) programming model; harmless on newer ones.
        "AzureWebJobsFeatureFlags": "EnableWorkerIndexing",
    }
    values.update(env)
    return {"IsEncrypted": False, "Values": values, "Host": {"LocalHttpPort": CORE_TOOLS_DEFAULT_PORT}}
