"""The Resource Graph backend: the `Resources` operation (scopes, evaluation, paging) and its bookkeeping.

`resources()` is the REST operation `Resources` (resourcegraph.json, stable 2021-03-01/2022-10-01/
2024-04-01). A first page evaluates the query once over a snapshot of the index and caches the result; its
`$skipToken` names that cached result, so every later page is a slice of the same rows (stable across
pages, and a 10,000-row result is evaluated once, not ten times). Paging follows ARG's documented rules
(work-with-data.md, paging-results.md):

- a page has at most 1,000 rows (`$top`: 1..1000, default 1000); `$skip` skips rows ("If `limit` or `take`
  are used in the query, Skip is ignored");
- `totalRecords` counts every row of the result, `count` the rows of this page;
- a result that does not fit gets a `$skipToken` and `resultTruncated: "false"` (the REST examples), unless
  it cannot be paged — "The query contains a `limit` or `sample`/`take` operator" or "All output columns are
  either `dynamic` or `null` type" — then it is cut at the page, with `resultTruncated: "true"` and no token;
- with a `$skipToken`, `$top` overrides the page size and `$skip` the next offset (the spec's option texts);
  the token must come "together with the same query and scopes used in the current request".

Scopes: `subscriptions` the caller names and the lab has; none named means every subscription (a tenant
query: "If a management group or a subscription list isn't defined, the query scope is all resources");
names the lab does not know are left out, and if none is left ARG answers
`NoValidSubscriptionsInQueryRequest`. The lab has one management group, the tenant root (its id is the
tenant id, as in Azure); `managementGroups` and `subscriptions` together are refused (query-language.md:
"`managementGroups` can't be used at the same time as `subscriptions`").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from lab.resourcegraph.engine import Table, TableNotFound, run_query, static_tables
from lab.resourcegraph.errors import (
    DisallowedLogicalTableName,
    InvalidQuery,
    InvalidRequestOptions,
    NoValidSubscriptionsInQueryRequest,
)
from lab.resourcegraph.index import GraphIndex
from lab.resourcegraph.kql import KqlError, KqlSemanticError, KqlSyntaxError, Query, Take, parse_query
from lab.resourcegraph.sources import SCHEMA, TABLES

# resourcegraph.json: `$top` minimum 1, maximum 1000; work-with-data.md: 1,000 records by default.
MAX_PAGE_ROWS = 1000
# Cached results a skip token can name, and how long (real seconds) they stay: enough for an app to page a
# 10,000-panel fleet many times over; ARG does not publish how long its tokens live.
RESULT_CACHE_SIZE = 64
RESULT_TTL_S = 600.0
# Queries remembered for the control API.
QUERY_LOG_SIZE = 50
# Query text kept per logged query (the app's largest queries are a few kilobytes).
_LOGGED_QUERY_CHARS = 4000

ResultFormat = Literal["objectArray", "table"]


@dataclass(frozen=True)
class QueryOptions:
    top: int | None = None
    skip: int | None = None
    skip_token: str | None = None
    result_format: ResultFormat = "objectArray"  # the spec's default since 2021-03-01
    allow_partial_scopes: bool = False


@dataclass(frozen=True)
class QueryRequest:
    query: str
    subscriptions: tuple[str, ...] = ()
    management_groups: tuple[str, ...] = ()
    options: QueryOptions = field(default_factory=QueryOptions)


@dataclass
class Result:
    """A first page's evaluated result, which its skip tokens page through."""

    id: str
    query: str
    scope: tuple[str, ...]
    table: Table
    pageable: bool
    ignores_skip: bool  # the query has `take`/`limit`
    used_at: float  # real monotonic seconds


@dataclass(frozen=True)
class PreparedQuery:
    """A parsed query, its scope and the snapshot of the tables it reads: ready to evaluate anywhere."""

    query: Query
    scope: tuple[str, ...]
    snapshot: dict[str, Table]


@dataclass(frozen=True)
class QueryPage:
    table: Table  # the page's rows only
    total_records: int
    truncated: bool
    skip_token: str | None


@dataclass(frozen=True)
class LoggedQuery:
    at: datetime
    principal: str
    query: str
    subscriptions: tuple[str, ...]
    paged: bool  # a skip-token page of an earlier result
    status: int
    error: str | None
    rows_returned: int
    total_records: int

    def describe(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "principal": self.principal,
            "query": self.query,
            "subscriptions": list(self.subscriptions),
            "skipTokenPage": self.paged,
            "status": self.status,
            "error": self.error,
            "rowsReturned": self.rows_returned,
            "totalRecords": self.total_records,
        }


class ResourceGraphBackend:
    def __init__(
        self,
        *,
        index: GraphIndex,
        subscriptions: Callable[[], Sequence[str]],
        tenant_id: str,
        now: Callable[[], datetime],
    ) -> None:
        self.index = index
        self._subscriptions = subscriptions
        self.tenant_id = tenant_id
        self._now = now
        self._results: OrderedDict[str, Result] = OrderedDict()
        self.log: deque[LoggedQuery] = deque(maxlen=QUERY_LOG_SIZE)
        self.queries_by_principal: dict[str, int] = {}
        self.last_used_at = -math.inf  # real monotonic seconds of the last query

    def reset(self) -> None:
        self._results.clear()
        self.log.clear()
        self.queries_by_principal.clear()

    # --- Resources ----------------------------------------------------------------------------------
    async def resources(self, request: QueryRequest) -> QueryPage:
        """Operation `Resources`: one page of the query's result.

        A first page is evaluated in a worker thread over a snapshot (the event loop keeps serving the
        other services meanwhile); its result is cached for the skip-token pages, which are only slices.
        """
        self.last_used_at = time.monotonic()
        prepared = self.prepare(request)
        if isinstance(prepared, Result):
            return self.page(request, prepared)
        table = await asyncio.to_thread(self.evaluate, prepared)
        return self.page(request, self.remember(request, prepared, table))

    def prepare(self, request: QueryRequest) -> PreparedQuery | Result:
        """What the event loop does before evaluation: scope, parse, snapshot; or find a skip token's result.

        Evaluation (`evaluate`) may then run off the loop: the snapshot's rows are never mutated.
        """
        scope = self._scope(request)
        _check_options(request.options)
        if request.options.skip_token is not None:
            return self._cached(request, scope)
        query = _parse(request.query)
        self.index.scan()
        self.index.publish()
        names = {(sub.table or "resources").lower() for sub in query.walk()}
        snapshot = {name: Table(SCHEMA, self.index.rows(name, scope)) for name in names if name in TABLES}
        return PreparedQuery(query, scope, snapshot)

    @staticmethod
    def evaluate(prepared: PreparedQuery) -> Table:
        """Run a prepared query over its snapshot (pure; safe off the event loop)."""
        try:
            return run_query(prepared.query, static_tables(prepared.snapshot))
        except TableNotFound as missing:
            raise DisallowedLogicalTableName(missing.name) from missing
        except KqlError as error:
            raise query_error(error) from error

    def remember(self, request: QueryRequest, prepared: PreparedQuery, table: Table) -> Result:
        """Cache a first page's result so that its skip tokens can page through it."""
        has_take = any(isinstance(op, Take) for sub in prepared.query.walk() for op in sub.operators)
        all_dynamic = all(column.type == "dynamic" for column in table.columns)
        result = Result(
            id=secrets.token_hex(12),
            query=request.query,
            scope=prepared.scope,
            table=table,
            pageable=not has_take and not all_dynamic,
            ignores_skip=has_take,
            used_at=time.monotonic(),
        )
        self._store(result)
        return result

    def page(self, request: QueryRequest, result: Result) -> QueryPage:
        """The page of `result` the request's options (and skip token, if any) ask for."""
        options = request.options
        token_offset, token_size = (0, None)
        if options.skip_token is not None:
            _, token_offset, token_size = _decode_token(options.skip_token)
        size = options.top if options.top is not None else token_size or MAX_PAGE_ROWS
        offset = options.skip if options.skip is not None else token_offset
        if result.ignores_skip:
            offset = 0  # work-with-data.md: "If limit or take are used in the query, Skip is ignored."
        rows = result.table.rows
        page_rows = rows[offset : offset + size]
        more = offset + size < len(rows)
        token = None
        if more and result.pageable:
            token = _encode_token(result.id, offset + size, size)
        return QueryPage(
            table=Table(result.table.columns, page_rows),
            total_records=len(rows),
            truncated=more and not result.pageable,
            skip_token=token,
        )

    # --- bookkeeping --------------------------------------------------------------------------------
    def record(
        self,
        *,
        principal: str,
        request: QueryRequest,
        status: int,
        error: str | None = None,
        page: QueryPage | None = None,
    ) -> None:
        self.queries_by_principal[principal] = self.queries_by_principal.get(principal, 0) + 1
        self.log.append(
            LoggedQuery(
                at=self._now(),
                principal=principal,
                query=request.query[:_LOGGED_QUERY_CHARS],
                subscriptions=request.subscriptions,
                paged=request.options.skip_token is not None,
                status=status,
                error=error,
                rows_returned=len(page.table.rows) if page is not None else 0,
                total_records=page.total_records if page is not None else 0,
            )
        )

    # --- helpers ------------------------------------------------------------------------------------
    def _scope(self, request: QueryRequest) -> tuple[str, ...]:
        known = [sub.lower() for sub in self._subscriptions()]
        if request.subscriptions and request.management_groups:
            raise InvalidRequestOptions(
                "'managementGroups' can't be used at the same time as 'subscriptions'."
            )
        if request.management_groups:
            if any(group.lower() == self.tenant_id.lower() for group in request.management_groups):
                return tuple(known)  # the tenant root group holds every subscription
            raise NoValidSubscriptionsInQueryRequest([])
        if not request.subscriptions:
            return tuple(known)
        wanted = {sub.lower() for sub in request.subscriptions}
        scope = tuple(sub for sub in known if sub in wanted)
        if not scope:
            raise NoValidSubscriptionsInQueryRequest(request.subscriptions)
        return scope

    def _cached(self, request: QueryRequest, scope: tuple[str, ...]) -> Result:
        assert request.options.skip_token is not None
        result_id, _, _ = _decode_token(request.options.skip_token)
        result = self._results.get(result_id)
        if result is None or time.monotonic() - result.used_at > RESULT_TTL_S:
            self._results.pop(result_id, None)
            raise InvalidRequestOptions(
                "The $skipToken is unknown or has expired; run the query again without it."
            )
        if result.query != request.query or result.scope != scope:
            raise InvalidRequestOptions(
                "The $skipToken must be sent together with the same query and scopes as the request "
                "that returned it."
            )
        result.used_at = time.monotonic()
        self._results.move_to_end(result_id)
        return result

    def _store(self, result: Result) -> None:
        now = time.monotonic()
        for stale in [rid for rid, old in self._results.items() if now - old.used_at > RESULT_TTL_S]:
            del self._results[stale]
        self._results[result.id] = result
        while len(self._results) > RESULT_CACHE_SIZE:
            self._results.popitem(last=False)


def _parse(text: str) -> Query:
    try:
        return parse_query(text)
    except KqlError as error:
        raise query_error(error) from error


def query_error(error: KqlError) -> InvalidQuery:
    """ARG's refusal for a query the subset does not accept (see `lab.resourcegraph.errors`)."""
    line = error.position.line if error.position is not None else 1
    column = error.position.column if error.position is not None else 0
    if isinstance(error, KqlSyntaxError):
        return InvalidQuery.parser_failure(line=line, position=column, token=error.fragment)
    if isinstance(error, KqlSemanticError):
        return InvalidQuery.semantic(message=error.message, line=line, position=column, token=error.fragment)
    return InvalidQuery.unsupported(token=error.fragment)


def _check_options(options: QueryOptions) -> None:
    if options.top is not None and not 1 <= options.top <= MAX_PAGE_ROWS:
        raise InvalidRequestOptions(f"'$top' must be between 1 and {MAX_PAGE_ROWS}; it was {options.top}.")
    if options.skip is not None and options.skip < 0:
        raise InvalidRequestOptions(f"'$skip' must not be negative; it was {options.skip}.")


def _encode_token(result_id: str, offset: int, size: int) -> str:
    """Opaque to clients (base64 JSON, as ARG's example tokens are): the result, next offset and page size."""
    payload = json.dumps({"r": result_id, "o": offset, "s": size}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode()


def _decode_token(token: str) -> tuple[str, int, int]:
    try:
        payload = json.loads(base64.b64decode(token.encode(), validate=True))
        result_id, offset, size = payload["r"], payload["o"], payload["s"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequestOptions("The $skipToken is not valid.") from exc
    if not (isinstance(result_id, str) and isinstance(offset, int) and isinstance(size, int)):
        raise InvalidRequestOptions("The $skipToken is not valid.")
    return result_id, offset, size
