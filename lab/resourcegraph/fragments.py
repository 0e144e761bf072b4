"""Pre-encoded JSON for the index's `properties` bags, so serialising a page is mostly string joins.

A page of the fleet query is ~3.5 MB, nearly all of it the `properties` of clusters, Flux configurations
and extensions: the same objects the index holds (query results share them, they are never copied). Each
is encoded once when the index renders it; a page then reuses those texts and encodes only its scalars.
Measured at 10,000 panels: ~12 ms a page instead of ~40 ms with `json.dumps` of the whole page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from lab.resourcegraph.engine import Row


class JsonFragments:
    """JSON text by object identity; a text is used only while its object is the very one encoded."""

    def __init__(self) -> None:
        self._texts: dict[int, tuple[object, str]] = {}

    def add(self, value: object) -> None:
        self._texts[id(value)] = (value, json.dumps(value))

    def discard(self, value: object) -> None:
        entry = self._texts.get(id(value))
        if entry is not None and entry[0] is value:
            del self._texts[id(value)]

    def clear(self) -> None:
        self._texts.clear()

    def __len__(self) -> int:
        return len(self._texts)

    def encode(self, value: Any) -> str:
        if isinstance(value, str):
            return encode_basestring_ascii(value)
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, (dict, list)):
            entry = self._texts.get(id(value))
            if entry is not None and entry[0] is value:
                return entry[1]
        return json.dumps(value)

    def encode_rows(self, rows: Iterable[Row], columns: Sequence[str]) -> str:
        """`[{...}, ...]` of the rows, keys in column order (what `json.dumps(rows)` would give)."""
        keys = [encode_basestring_ascii(name) + ": " for name in columns]
        encode = self.encode
        parts = [
            "{" + ", ".join(key + encode(row[name]) for key, name in zip(keys, columns, strict=True)) + "}"
            for row in rows
        ]
        return "[" + ", ".join(parts) + "]"

    def encode_table_rows(self, rows: Iterable[Row], columns: Sequence[str]) -> str:
        """`[[...], ...]`: the rows of the `table` result format."""
        encode = self.encode
        parts = ["[" + ", ".join(encode(row[name]) for name in columns) + "]" for row in rows]
        return "[" + ", ".join(parts) + "]"
