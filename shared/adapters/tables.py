"""Azure Table clients by name, each table created once per worker on first use.

Every store (operations, credential map, image checks) needs the same thing: a `TableClient` for a
table that may not exist yet in a fresh Storage account (or Azurite), without paying a create call on
every request.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared.errors import FluxfleetError, from_azure_error

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient


class Tables:
    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> TableClient:
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                from azure.core.exceptions import AzureError

                try:
                    client = self._service.create_table_if_not_exists(name)
                except AzureError as exc:
                    raise from_azure_error(exc, what=f"create table {name}") from exc
                self._clients[name] = client
            return client


Store = TypeVar("Store", bound=type)


def storage_errors_mapped(what: str) -> Callable[[Store], Store]:
    """Class decorator: every public method maps an unexpected Storage error through the one
    `from_azure_error` (an outage or throttling is a transient 503/429 with `Retry-After`; a refusal a
    4xx), instead of escaping as a bare exception that a handler can only call a 500. The expected
    answers (not found, exists, ETag mismatch) are still handled inside the methods."""

    def decorate(cls: Store) -> Store:
        for name, method in list(vars(cls).items()):
            if not name.startswith("_") and callable(method):
                setattr(cls, name, _mapped(method, f"{what} {name}"))
        return cls

    return decorate


def _mapped(method: Callable[..., Any], what: str) -> Callable[..., Any]:
    from azure.core.exceptions import AzureError

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except FluxfleetError:
            raise
        except AzureError as exc:
            raise from_azure_error(exc, what=what) from exc

    return wrapped
