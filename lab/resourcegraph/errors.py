"""Resource Graph's errors: each knows its status, ARG's error code and the `details` ARG puts under it.

ARG answers its own failures in ARM's envelope with a support line as the message and the reason in
`details` (every example below is a real answer quoted in a public issue):

    {"error": {"code": "BadRequest",
               "message": "Please provide below info when asking for support:
                           timestamp = 2023-12-04T16:43:28.2015623Z, correlationId = c2c2c2f0-....",
               "details": [{"code": "InvalidQuery", "message": "Query is invalid. Please refer to ..."},
                           {"code": "ParserFailure", "message": "ParserFailure", "line": 1,
                            "characterPositionInLine": 42, "token": "' and type contains '"}]}}

- `ParserFailure`: Azure/aztfexport #485; `InvalidQueryLanguage` (an operator ARG does not support, with
  `line`/`characterPositionInLine` -1): Azure/azure-powershell #13762;
- `DisallowedLogicalTableName` ("Table appserviceresources is invalid, unsupported or disallowed."):
  Azure/azqr #847, microsoft/ARI #46;
- `NoValidSubscriptionsInQueryRequest` ("There must be at least one subscription that is eligible to
  contain resources. Given: ''."): Azure/aztfexport #491;
- `RateLimiting` (429; the detail's message "Client application has been throttled and should not attempt
  to repeat the request until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling
  for help."): Azure/azure-cli-extensions #3325;
- an unsupported api-version is ARM's `InvalidResourceType` with the supported list ("The resource type
  'resources' could not be found in the namespace 'Microsoft.ResourceGraph' for api version '2024-04-01'.
  The supported api-versions are '2018-09-01-preview,2019-04-01,2021-03-01,2021-06-01-preview,2022-10-01'."):
  microsoft/ARI #306.

Authentication failures are ARM's own (`lab.arm.errors`), answered before ARG sees the request. Where ARG's
answer is not published (semantic errors, bad options, stale skip tokens) the detail code and wording are
the lab's; `lab/docs/resourcegraph.md` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lab.arm.errors import ArmError

INVALID_QUERY_MESSAGE = (
    "Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the "
    "error before retrying."
)
THROTTLED_MESSAGE = (
    "Client application has been throttled and should not attempt to repeat the request until an amount of "
    "time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help."
)
# ARG's InvalidQueryLanguage detail has no position: -1 for both (azure-powershell #13762).
_NO_POSITION = -1


def support_message(*, timestamp: str, correlation_id: str) -> str:
    """The top-level message of every ARG error."""
    return (
        f"Please provide below info when asking for support: timestamp = {timestamp}, "
        f"correlationId = {correlation_id}."
    )


class GraphError(Exception):
    """An answer from Resource Graph itself: ARM's envelope, ARG's support message, a list of details."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "BadRequest"

    def __init__(
        self, details: Sequence[Mapping[str, Any]], *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(str(details[0]["message"]) if details else self.code)
        self.details = [dict(detail) for detail in details]
        self.headers = dict(headers or {})

    def envelope(self, *, timestamp: str, correlation_id: str) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": support_message(timestamp=timestamp, correlation_id=correlation_id),
                "details": self.details,
            }
        }


class InvalidQuery(GraphError):
    """The query is not in the subset: a parser failure, an unsupported feature, or a semantic error."""

    @classmethod
    def parser_failure(cls, *, line: int, position: int, token: str) -> InvalidQuery:
        return cls(
            [
                {"code": "InvalidQuery", "message": INVALID_QUERY_MESSAGE},
                {
                    "code": "ParserFailure",
                    "message": "ParserFailure",
                    "line": line,
                    "characterPositionInLine": position,
                    "token": token,
                },
            ]
        )

    @classmethod
    def unsupported(cls, *, token: str) -> InvalidQuery:
        return cls(
            [
                {"code": "InvalidQuery", "message": INVALID_QUERY_MESSAGE},
                {
                    "code": "InvalidQueryLanguage",
                    "message": "InvalidQueryLanguage",
                    "line": _NO_POSITION,
                    "characterPositionInLine": _NO_POSITION,
                    "token": token,
                },
            ]
        )

    @classmethod
    def semantic(cls, *, message: str, line: int, position: int, token: str) -> InvalidQuery:
        """The lab's detail: Kusto's semantic error text, where ARG's shape for these is not published."""
        return cls(
            [
                {"code": "InvalidQuery", "message": INVALID_QUERY_MESSAGE},
                {
                    "code": "SemanticError",
                    "message": message,
                    "line": line,
                    "characterPositionInLine": position,
                    "token": token,
                },
            ]
        )


class DisallowedLogicalTableName(GraphError):
    def __init__(self, table: str) -> None:
        super().__init__(
            [
                {
                    "code": "DisallowedLogicalTableName",
                    "message": f"Table {table.lower()} is invalid, unsupported or disallowed.",
                }
            ]
        )


class NoValidSubscriptionsInQueryRequest(GraphError):
    def __init__(self, given: Sequence[str]) -> None:
        super().__init__(
            [
                {
                    "code": "NoValidSubscriptionsInQueryRequest",
                    "message": "There must be at least one subscription that is eligible to contain "
                    f"resources. Given: '{','.join(given)}'.",
                }
            ]
        )


class InvalidRequestOptions(GraphError):
    """A request ARG cannot serve for a reason of the lab's wording (bad option, stale skip token...)."""

    def __init__(self, message: str) -> None:
        super().__init__([{"code": "BadRequest", "message": message}])


class RateLimiting(GraphError):
    status = 429
    code = "RateLimiting"

    def __init__(self, *, retry_after_s: int, headers: Mapping[str, str]) -> None:
        super().__init__(
            [{"code": "RateLimiting", "message": THROTTLED_MESSAGE}],
            headers={**headers, "Retry-After": str(retry_after_s)},
        )


class UnsupportedApiVersion(ArmError):
    """ARM's answer for an api-version Microsoft.ResourceGraph/resources does not have."""

    code = "InvalidResourceType"

    def __init__(self, *, api_version: str, supported: Sequence[str]) -> None:
        super().__init__(
            "The resource type 'resources' could not be found in the namespace 'Microsoft.ResourceGraph' "
            f"for api version '{api_version}'. The supported api-versions are '{','.join(supported)}'."
        )
