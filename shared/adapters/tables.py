"""Azure Table clients by name, each table created once per worker on first use.

Every store (operations, credential map, image checks) needs the same thing: a `TableClient` for a
table that may not exist yet in a fresh Storage account (or Azurite), without paying a create call on
every request.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from shared.errors import from_azure_error

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
