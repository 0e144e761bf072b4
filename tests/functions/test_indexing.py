"""The Functions host indexes `function_app.app`: every function must be unique and have a trigger."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

TRIGGERS = {"httpTrigger", "timerTrigger", "eventGridTrigger", "queueTrigger"}


def test_every_function_has_a_unique_name_and_exactly_one_trigger(app_functions: list[Any]) -> None:
    functions = app_functions
    names = [fn.get_function_name() for fn in functions]
    assert names, "the app registers no function"
    assert len(names) == len(set(names)), f"duplicate function names: {names}"
    for fn in functions:
        bindings = json.loads(fn.get_function_json())["bindings"]
        triggers = [b for b in bindings if b["type"] in TRIGGERS and b["direction"] == "IN"]
        assert len(triggers) == 1, f"{fn.get_function_name()} has triggers {triggers}"


def test_http_routes_are_unique_per_method(app_functions: list[Any]) -> None:
    seen: set[tuple[str, str]] = set()
    for fn in app_functions:
        for binding in json.loads(fn.get_function_json())["bindings"]:
            if binding["type"] != "httpTrigger":
                continue
            for method in binding.get("methods") or ["*"]:
                key = (method, binding["route"])
                assert key not in seen, f"route {key} is registered twice"
                seen.add(key)


def test_importing_the_app_loads_no_azure_sdk_beyond_azure_functions() -> None:
    """Cold start: the host imports function_app on every start; SDKs load on first use only."""
    code = (
        "import sys, function_app; "
        "heavy = sorted(m for m in sys.modules if m.startswith(('azure.mgmt', 'azure.identity', "
        "'azure.keyvault', 'azure.data', 'azure.storage', 'azure.devops', 'azure.containerregistry', "
        "'azure.core', 'msal', 'yaml')));"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
