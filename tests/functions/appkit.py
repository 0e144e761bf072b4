"""The app's indexed functions, indexed once per test session (the SDK refuses to index an app twice)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def indexed_functions() -> tuple[Any, ...]:
    """`function_app.app.get_functions()`, as the Functions host indexes them."""
    import function_app

    return tuple(function_app.app.get_functions())
