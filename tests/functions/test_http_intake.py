"""The one HTTP intake: odd input is a 4xx naming the field, and an unexpected error leaks nothing."""

from __future__ import annotations

import json
import logging

import azure.functions as func
import pytest

from functions.http import handle_errors, query_int

PAT = "q7z4mwk2s3x5v6b7n2m3q4w5e6r7t2y3u4i5o6p7a2s3d4f5g6h7"


def request(params: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest("GET", "https://fluxfleet.example/api/x", params=params or {}, body=b"")


def test_an_unexpected_error_is_a_500_whose_response_and_log_carry_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @handle_errors
    def leaky(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError(f"PATCH failed: https://git:{PAT}@dev.azure.com/o/p/_git/r token={PAT}")

    with caplog.at_level(logging.DEBUG):
        response = leaky(request())
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert PAT not in response.get_body().decode()
    logged = caplog.text + "".join(str(r.exc_info) for r in caplog.records)
    assert "RuntimeError" in logged, "the log must still say what failed"
    assert "leaky" in logged, "and where"
    assert PAT not in logged


@pytest.mark.parametrize(("raw", "expected"), [("", 50), ("12", 12), ("000007", 7)])
def test_query_numbers_in_range_are_read(raw: str, expected: int) -> None:
    assert query_int(request({"limit": raw}), "limit", default=50, maximum=500) == expected


@pytest.mark.parametrize("raw", ["²", "٣", "9" * 5000, "0", "501", "-1", " 5"])
def test_query_numbers_are_ascii_digits_of_bounded_length(raw: str) -> None:
    from shared.errors import InvalidInput

    with pytest.raises(InvalidInput) as raised:
        query_int(request({"limit": raw}), "limit", default=50, maximum=500)
    assert json.loads(json.dumps(raised.value.problem()))["field"] == "limit"


def test_a_storage_outage_is_a_503_with_retry_after_not_a_bare_500() -> None:
    from azure.data.tables import TableServiceClient

    from functions.fleet import fleet_get_operation
    from shared.adapters.clients import AzureClients
    from shared.config import Settings
    from shared.container import Container, set_container

    # A real Table client at a port nobody listens on: what a storage outage looks like to the SDK.
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        + "a2V5" * 22
        + "==;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/q"
    )
    settings = Settings.from_env({"FLUXFLEET_SUBSCRIPTION_IDS": "sub-1", "AzureWebJobsStorage": dead})
    clients = AzureClients(settings)
    clients.__dict__["tables"] = TableServiceClient.from_connection_string(dead, retry_total=0)
    container = Container(settings, clients=clients)
    # The table was created while storage was up (tables are created once per worker); now it is down.
    store = container.operation_store
    store._tables._clients["ffoperations"] = clients.tables.get_table_client("ffoperations")  # type: ignore[attr-defined]
    set_container(container)
    try:
        req = func.HttpRequest(
            "GET", "https://fluxfleet.example/api/operations/op-1", route_params={"id": "op-1"}, body=b""
        )
        response = fleet_get_operation.build().get_user_function()(req)
    finally:
        set_container(None)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert json.loads(response.get_body())["detail"].startswith("Table storage (operations) get_operation:")
