"""Handler tests call the real functions with real `azure.functions` objects."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def app_functions() -> list[Any]:
    """`function_app.app.get_functions()`, once: the SDK refuses to index the same app twice."""
    from tests.functions.appkit import indexed_functions

    return list(indexed_functions())
