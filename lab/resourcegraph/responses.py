"""Resource Graph's request pipeline on ARM's listener: authenticate, check the api-version, count the
query against the caller's quota, read the body, run the backend, serialise the answer.

The order is Azure's: ARM authenticates every request to `management.azure.com` (401s in ARM's envelope,
with ARM's `WWW-Authenticate` challenge: ARM's own checks are reused, not re-implemented) and checks the
api-version against the provider's manifest (400 `InvalidResourceType` naming the supported versions)
before Resource Graph sees the request; ARG then counts the query against the principal's quota (429
`RateLimiting`, with `Retry-After`) and only then reads the query. Every answer from ARG itself carries
`x-ms-user-quota-remaining` and `x-ms-user-quota-resets-after`; every answer carries ARM's
`x-ms-request-id`, `x-ms-correlation-request-id` and `x-ms-routing-request-id`.

Body shape (resourcegraph.json `QueryRequest`): `query` (required), `subscriptions`, `managementGroups`,
`options` (`$top`, `$skip`, `$skipToken`, `resultFormat`, `allowPartialScopes`, and from 2021-06-01-preview
`authorizationScopeFilter`, which only the policy and authorization tables use), `facets`. Response
(`QueryResponse`): `totalRecords`, `count`, `resultTruncated` ("true"/"false" as strings), `facets`,
`$skipToken` when there is a next page, `data` — an array of objects (`objectArray`, the default) or
`{columns: [{name, type}], rows: [[...]]}` (`table`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC
from typing import Any

from aiohttp import web

from lab.arm.errors import ArmError, InvalidRequestContent, MethodNotAllowed, MissingApiVersionParameter
from lab.core.clock import LabClock
from lab.core.tokens import Principal
from lab.fleet.model import LOCATION
from lab.resourcegraph.engine import table_format_type
from lab.resourcegraph.errors import GraphError, InvalidRequestOptions, RateLimiting, UnsupportedApiVersion
from lab.resourcegraph.fragments import JsonFragments
from lab.resourcegraph.models import QueryOptions, QueryPage, QueryRequest, ResourceGraphBackend
from lab.resourcegraph.quota import UserQuota

# The stable api-versions the lab serves: the SDK's default (azure-mgmt-resourcegraph 8.0.1 sends
# 2021-03-01) and the two newest stable ones (resourcegraph.json, stable/2022-10-01 and 2024-04-01).
API_VERSIONS = ("2021-03-01", "2022-10-01", "2024-04-01")
_RESULT_FORMATS = ("objectArray", "table")
_JSON = "application/json"

Authenticate = Callable[[str | None], Principal]


class GraphResponses:
    def __init__(
        self,
        *,
        backend: ResourceGraphBackend,
        quota: UserQuota,
        clock: LabClock,
        authenticate: Authenticate,
    ) -> None:
        self.backend = backend
        self.quota = quota
        self.clock = clock
        self._authenticate = authenticate

    async def handle(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        correlation_id = request.headers.get("x-ms-correlation-request-id") or request_id
        headers = {
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": correlation_id,
            "x-ms-routing-request-id": f"{LOCATION.upper()}:{self.clock.now():%Y%m%dT%H%M%SZ}:{request_id}",
        }
        principal: Principal | None = None
        query_request: QueryRequest | None = None
        try:
            principal = self._authenticate(request.headers.get("Authorization"))
            if request.method != "POST":
                raise MethodNotAllowed(request.method)
            _check_api_version(request.query.get("api-version"))
            admission = self.quota.admit(
                principal.object_id, now=self.clock.elapsed(), time_scale=self.clock.time_scale
            )
            headers.update(admission.headers())
            if not admission.allowed:
                raise RateLimiting(retry_after_s=admission.resets_after_s, headers=admission.headers())
            query_request = parse_query_request(await _read_json(request))
            page = await self.backend.resources(query_request)
        except ArmError as error:
            headers.update(error.headers)
            return _json_response(error.status, error.envelope(), headers)
        except GraphError as error:
            headers.update(error.headers)
            if principal is not None and query_request is not None:
                self.backend.record(
                    principal=principal.object_id,
                    request=query_request,
                    status=error.status,
                    error=str(error.details[-1].get("code")),
                )
            envelope = error.envelope(timestamp=self._timestamp(), correlation_id=correlation_id)
            return _json_response(error.status, envelope, headers)
        self.backend.record(principal=principal.object_id, request=query_request, status=200, page=page)
        body = render_page(page, query_request.options.result_format, self.backend.index.fragments)
        return web.Response(status=200, text=body, headers=headers, content_type=_JSON, charset="utf-8")

    def _timestamp(self) -> str:
        """ARG's support-line timestamp: UTC with seven fractional digits ("2023-12-04T16:43:28.2015623Z")."""
        now = self.clock.now().astimezone(UTC)
        return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond:06d}0Z"


def _check_api_version(api_version: str | None) -> None:
    if not api_version:
        raise MissingApiVersionParameter()
    if api_version not in API_VERSIONS:
        raise UnsupportedApiVersion(api_version=api_version, supported=API_VERSIONS)


async def _read_json(request: web.Request) -> object:
    raw = await request.read()
    if not raw.strip():
        raise InvalidRequestContent("The request content is empty.")
    try:
        return json.loads(raw)
    except ValueError as exc:
        position = getattr(exc, "pos", 0)
        raise InvalidRequestContent(
            f"Unexpected character encountered while parsing value. Path '', line 1, position {position}.",
        ) from exc


def _field(body: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is int:
        raise InvalidRequestContent("Could not convert boolean to integer.", path=path + key)
    if not isinstance(value, kind):
        raise InvalidRequestContent(f"Unexpected value of type {type(value).__name__}.", path=path + key)
    return value


def _strings(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not all(isinstance(item, str) for item in value):
        raise InvalidRequestContent("Expected an array of strings.", path=path)
    return tuple(value)


def parse_query_request(body: object) -> QueryRequest:
    """The QueryRequest body, type-checked as ARM's deserialiser would (facets are not served)."""
    if not isinstance(body, dict):
        raise InvalidRequestContent("Expected a JSON object.")
    query = _field(body, "query", str, "")
    if query is None:
        raise InvalidRequestContent("Required property 'query' not found in JSON.", path="query")
    if _field(body, "facets", list, ""):
        raise InvalidRequestOptions("Facets are not supported by the lab's Resource Graph.")
    options_body = _field(body, "options", dict, "") or {}
    result_format = _field(options_body, "resultFormat", str, "options.") or "objectArray"
    if result_format not in _RESULT_FORMATS:
        raise InvalidRequestOptions(
            f"'options.resultFormat' must be one of {', '.join(_RESULT_FORMATS)}; it was '{result_format}'."
        )
    options = QueryOptions(
        top=_field(options_body, "$top", int, "options."),
        skip=_field(options_body, "$skip", int, "options."),
        skip_token=_field(options_body, "$skipToken", str, "options.") or None,
        result_format="table" if result_format == "table" else "objectArray",
        allow_partial_scopes=bool(_field(options_body, "allowPartialScopes", bool, "options.")),
    )
    return QueryRequest(
        query=query,
        subscriptions=_strings(_field(body, "subscriptions", list, ""), "subscriptions"),
        management_groups=_strings(_field(body, "managementGroups", list, ""), "managementGroups"),
        options=options,
    )


def render_page(page: QueryPage, result_format: str, fragments: JsonFragments) -> str:
    """QueryResponse as JSON text, keys in the order of the spec's examples."""
    head: dict[str, Any] = {
        "totalRecords": page.total_records,
        "count": len(page.table.rows),
        "resultTruncated": "true" if page.truncated else "false",
        "facets": [],
    }
    if page.skip_token is not None:
        head["$skipToken"] = page.skip_token
    names = [column.name for column in page.table.columns]
    if result_format == "table":
        columns = [
            {"name": column.name, "type": table_format_type(column.type)} for column in page.table.columns
        ]
        rows = fragments.encode_table_rows(page.table.rows, names)
        data = f'{{"columns": {json.dumps(columns)}, "rows": {rows}}}'
    else:
        data = fragments.encode_rows(page.table.rows, names)
    return json.dumps(head)[:-1] + f', "data": {data}}}'


def _json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        headers=headers,
        content_type=_JSON,
        charset="utf-8",
    )
