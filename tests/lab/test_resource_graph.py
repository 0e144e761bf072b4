"""Azure Resource Graph in the lab, driven by the real `azure-mgmt-resourcegraph` client.

The lab runs as `python -m lab serve` with 520 factory panels (so `kubernetesconfigurationresources`
holds more than 1,000 rows and really pages), 2 unconfigured panels (so a leftouter join has clusters
with nothing to join), and `--resource-graph-lag 1.5`. Every query here is one the app will send; the
ones the lead asked for (the fleet's panels with their Flux state, and the counts) are the constants
in lab/docs/resourcegraph.md, and a test checks that the doc and these constants are the same text.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions, QueryResponse

from lab.arm import wire
from lab.resourcegraph.quota import UserQuota
from shared.adapters.resource_graph import panels_query
from tests.lab.armkit import ARM_SCOPE, CONFIG, ON_ARC, flux_client, raw, truth
from tests.labkit import REPO_ROOT, LabHandle, LabProcess

pytestmark = pytest.mark.lab

PANELS = 520
UNCONFIGURED = 2
LAG_S = 1.5
ARG_PATH = "/providers/Microsoft.ResourceGraph/resources"
# The api-version the app should pin (the newest stable one); 2022-10-01 is served too.
API_VERSION = "2024-04-01"
FLUX_TYPE = "microsoft.kubernetesconfiguration/fluxconfigurations"
DOC = REPO_ROOT / "lab" / "docs" / "resourcegraph.md"

# --- the app's queries (the same text as lab/docs/resourcegraph.md) ---------------------------------------
# The app's own query (shared/adapters/resource_graph.py), so this file proves what the app sends; a test
# below keeps lab/docs/resourcegraph.md in step with it.
PANELS_QUERY = panels_query(CONFIG)
COMPLIANCE_COUNTS_QUERY = """\
kubernetesconfigurationresources
| where type =~ 'microsoft.kubernetesconfiguration/fluxconfigurations' and name =~ 'ipc-platform-config'
| summarize panels = count() by complianceState = tostring(properties.complianceState)
| order by complianceState asc
"""
RING_COUNTS_QUERY = """\
resources
| where type =~ 'microsoft.kubernetes/connectedclusters'
| summarize panels = count() by ring = tostring(tags.ring),
    connectivityStatus = tostring(properties.connectivityStatus)
| order by ring asc, connectivityStatus asc
"""


# --- fixtures and helpers -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir: Path = tmp_path_factory.mktemp("graph-lab")
    with (
        LabProcess(
            state_dir,
            clusters=PANELS,
            subscriptions=2,
            unconfigured=UNCONFIGURED,
            azurite=False,
            resource_graph_lag=LAG_S,
        ) as handle,
        handle.applied_env(),
    ):
        yield handle


@pytest.fixture
def lab(graph_lab: LabHandle) -> Iterator[LabHandle]:
    """The module's lab with ARG's per-user quota off (most tests send more than 15 queries in 5 s)."""
    graph_lab.control("POST", "/_lab/resourcegraph/throttling", {"enabled": False})
    yield graph_lab
    graph_lab.control(
        "POST", "/_lab/resourcegraph/throttling", {"enabled": True, "queries": 15, "window_seconds": 5}
    )


def graph_client(lab: LabHandle, **kwargs: Any) -> ResourceGraphClient:
    return ResourceGraphClient(
        ManagedIdentityCredential(), base_url=lab.endpoint("resourcegraph"), api_version=API_VERSION, **kwargs
    )


def query(
    lab: LabHandle,
    text: str,
    *,
    client: ResourceGraphClient | None = None,
    top: int | None = None,
    skip_token: str | None = None,
    hook: Callable[[Any], None] | None = None,
) -> QueryResponse:
    request = QueryRequest(
        subscriptions=list(lab.doc["subscriptions"]),
        query=text,
        options=QueryRequestOptions(top=top, skip_token=skip_token, result_format="objectArray"),
    )
    kwargs: dict[str, Any] = {"raw_response_hook": hook} if hook else {}
    return (client or graph_client(lab)).resources(request, **kwargs)


def rows(response: QueryResponse) -> list[dict[str, Any]]:
    assert isinstance(response.data, list)
    return response.data


def fleet_truth(lab: LabHandle) -> list[dict[str, Any]]:
    return list(lab.state()["clusters"])


def raw_query(
    lab: LabHandle, body: Any, *, api_version: str = API_VERSION, token: str | None = ""
) -> requests.Response:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token or ManagedIdentityCredential().get_token(ARM_SCOPE).token}"
    return requests.post(
        f"{lab.endpoint('resourcegraph')}{ARG_PATH}?api-version={api_version}",
        json=body,
        headers=headers,
        verify=lab.ca_bundle,
        timeout=30,
    )


# --- the app's queries ----------------------------------------------------------------------------------
def test_every_panel_comes_with_its_flux_state_and_extension_joined_by_lowercased_cluster_id(
    lab: LabHandle,
) -> None:
    response = query(lab, PANELS_QUERY)
    found = {row["name"]: row for row in rows(response)}
    expected = {panel["name"]: panel for panel in fleet_truth(lab)}

    assert sorted(found) == sorted(expected), "one row per connected cluster, configured or not"
    assert response.total_records == len(expected) == PANELS + UNCONFIGURED + 1  # + the automation runner
    assert response.result_truncated == "false"
    assert [row["clusterId"] for row in rows(response)] == sorted(row["clusterId"] for row in rows(response))
    assert not any("clusterId1" in row or "clusterId2" in row for row in rows(response))
    for name, panel in expected.items():
        row = found[name]
        assert row["clusterId"] == panel["id"].lower()
        assert row["tags"] == panel["tags"]
        assert row["connectivityStatus"] == panel["connectivity_status"]
        if panel["configuration"] is None:  # unconfigured: the leftouter join leaves string nulls ("")
            assert (row["complianceState"], row["fluxExtensionVersion"], row["suspend"]) == ("", "", None)
            continue
        assert row["complianceState"] == panel["compliance_state"]
        assert row["suspend"] is panel["configuration"]["suspend"]
        assert row["sourceUrl"] == panel["configuration"]["url"]
        assert row["sourceBranch"] == panel["configuration"]["branch"] == "main"
        assert row["sourceSyncedCommitId"].startswith("main/")
        assert row["fluxExtensionVersion"] == panel["extension"]["currentVersion"]
        assert row["fluxExtensionProvisioningState"] == panel["extension"]["provisioningState"]
        assert {status["kind"] for status in row["statuses"]} >= {"GitRepository", "Kustomization"}


def test_counts_by_compliance_state_ring_and_connectivity_match_the_fleet(lab: LabHandle) -> None:
    fleet = fleet_truth(lab)
    by_state = {row["complianceState"]: row["panels"] for row in rows(query(lab, COMPLIANCE_COUNTS_QUERY))}
    by_ring = {
        (row["ring"], row["connectivityStatus"]): row["panels"] for row in rows(query(lab, RING_COUNTS_QUERY))
    }

    assert by_state == Counter(p["compliance_state"] for p in fleet if p["configuration"] is not None)
    assert by_ring == Counter((p["tags"].get("ring", ""), p["connectivity_status"]) for p in fleet)
    assert by_ring[("canary", "Connected")] == round((PANELS + UNCONFIGURED) * 0.1)


def test_where_with_in_has_and_or_and_split_select_what_the_fleet_says(lab: LabHandle) -> None:
    fleet = fleet_truth(lab)
    picked = rows(
        query(
            lab,
            "resources | where type =~ 'Microsoft.Kubernetes/connectedClusters'"
            " | where name in~ ('IPC-PANEL-0001', 'ipc-panel-0002')"
            "    or (tags.site has 'LYON' and tags.ring == 'canary')"
            " | extend group = tostring(split(id, '/')[4])"
            " | project name, group, resourceGroup | order by name asc",
        )
    )
    expected = sorted(
        p["name"]
        for p in fleet
        if p["name"] in ("ipc-panel-0001", "ipc-panel-0002")
        or (p["tags"].get("site") == "lyon" and p["tags"].get("ring") == "canary")
    )

    assert [row["name"] for row in picked] == expected
    assert len(expected) > 2, "the `or` branch selected panels of its own"
    assert all(row["group"].lower() == row["resourceGroup"] for row in picked), "resourceGroup is lower-case"


def test_properties_are_exactly_what_arm_get_returns(lab: LabHandle) -> None:
    panel = truth(lab, "ipc-panel-0007")
    cluster = panel["id"]
    flux = f"{cluster}/providers/Microsoft.KubernetesConfiguration/fluxConfigurations/{CONFIG}"
    extension = f"{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/flux"
    lab.control("POST", "/_lab/resourcegraph/catch-up")
    found = rows(query(lab, f"kubernetesconfigurationresources | where id startswith '{cluster}/'"))
    found += rows(query(lab, f"resources | where id =~ '{cluster}'"))
    graph = {row["id"].lower(): row for row in found}
    arm_flux = raw(lab, "GET", flux, api_version=wire.FLUX_API_VERSIONS[-1]).json()
    arm_extension = raw(lab, "GET", extension, api_version=wire.EXTENSION_API_VERSIONS[-1]).json()
    arm_cluster = raw(lab, "GET", cluster, api_version=wire.CLUSTER_API_VERSIONS[-1]).json()

    assert graph[flux.lower()]["properties"] == arm_flux["properties"]
    assert graph[extension.lower()]["properties"] == arm_extension["properties"]
    assert graph[flux.lower()]["id"] == arm_flux["id"], "ARG keeps the id as ARM spells it"
    assert graph[flux.lower()]["type"] == FLUX_TYPE
    # An online cluster's lastConnectivityTime is "now" on every ARM GET; ARG shows it as of its last refresh.
    graph_cluster = dict(graph[cluster.lower()]["properties"])
    arm_properties = dict(arm_cluster["properties"])
    assert graph_cluster.pop("lastConnectivityTime") <= arm_properties.pop("lastConnectivityTime")
    assert graph_cluster == arm_properties
    assert graph[cluster.lower()]["tags"] == arm_cluster["tags"]


# --- paging ---------------------------------------------------------------------------------------------
def test_more_than_1000_rows_page_with_skip_tokens(lab: LabHandle) -> None:
    text = "kubernetesconfigurationresources | project id, type | order by id asc"
    first = query(lab, text)
    second = query(lab, text, skip_token=first.skip_token)
    small_pages = [query(lab, text, top=400)]
    while small_pages[-1].skip_token:
        small_pages.append(query(lab, text, top=400, skip_token=small_pages[-1].skip_token))

    total = 2 * (PANELS + 1)  # a Flux configuration and an extension per configured panel and the runner
    assert (first.total_records, first.count, first.result_truncated) == (total, 1000, "false")
    assert first.skip_token
    assert (second.total_records, second.count, second.skip_token) == (total, total - 1000, None)
    ids = [row["id"] for row in rows(first) + rows(second)]
    assert len(set(ids)) == total, "no row twice, none missing"
    assert ids == sorted(ids), "order by id asc"
    assert [page.count for page in small_pages] == [400, 400, total - 800]
    assert [row["id"] for page in small_pages for row in rows(page)] == ids


def test_a_query_with_take_is_cut_at_the_page_with_result_truncated(lab: LabHandle) -> None:
    response = query(lab, "kubernetesconfigurationresources | take 1500 | project id")

    assert (response.count, response.total_records) == (1000, 2 * (PANELS + 1))
    assert response.result_truncated == "true"
    assert response.skip_token is None, "work-with-data.md: a query with take/limit cannot be paged"


# --- refusals -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("resources | mv-expand tags", "InvalidQueryLanguage"),
        ("resources | summarize max(name)", "InvalidQueryLanguage"),
        ("resources | extend x = bin(1, 2)", "InvalidQueryLanguage"),
        ("resources | where name == ", "ParserFailure"),
        ("resources | where nosuchcolumn == 'x'", "SemanticError"),
    ],
)
def test_a_query_outside_the_subset_is_refused_with_invalid_query(
    lab: LabHandle, text: str, detail: str
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        query(lab, text)

    error = caught.value
    assert error.status_code == 400
    assert error.error is not None
    assert error.error.code == "BadRequest"
    assert "correlationId = " in (error.error.message or "")
    codes = [item.code for item in error.model.error.details]  # type: ignore[union-attr]
    assert codes == ["InvalidQuery", detail]


def test_an_unknown_table_is_disallowed(lab: LabHandle) -> None:
    with pytest.raises(HttpResponseError) as caught:
        query(lab, "appserviceresources | take 1")

    details = caught.value.model.error.details  # type: ignore[union-attr]
    assert [(item.code, item.message) for item in details] == [
        ("DisallowedLogicalTableName", "Table appserviceresources is invalid, unsupported or disallowed.")
    ]


def test_requests_are_authenticated_and_api_versioned_as_arm(lab: LabHandle) -> None:
    body = {"subscriptions": list(lab.doc["subscriptions"]), "query": "resources | count"}
    served = {version: raw_query(lab, body, api_version=version) for version in ("2022-10-01", "2024-04-01")}
    anonymous = raw_query(lab, body, token=None)
    forged = raw_query(lab, body, token="not-a-lab-token")
    unknown_version = raw_query(lab, body, api_version="2017-01-01")
    sdk_default = ResourceGraphClient(ManagedIdentityCredential(), base_url=lab.endpoint("resourcegraph"))

    for response in served.values():
        assert response.status_code == 200
        assert response.json()["data"] == [{"Count": PANELS + UNCONFIGURED + 1}]
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "AuthenticationFailed")
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")
    assert (unknown_version.status_code, unknown_version.json()["error"]["code"]) == (
        400,
        "InvalidResourceType",
    )
    assert "2024-04-01" in unknown_version.json()["error"]["message"]
    assert sdk_default.resources(QueryRequest(query="resources | count")).data == [
        {"Count": PANELS + UNCONFIGURED + 1}
    ], "the SDK's default api-version, and no subscriptions = every subscription the caller can see"


# --- quota ----------------------------------------------------------------------------------------------
def test_quota_counts_down_and_the_16th_query_in_5_seconds_is_throttled(graph_lab: LabHandle) -> None:
    graph_lab.control(
        "POST", "/_lab/resourcegraph/throttling", {"enabled": True, "queries": 15, "window_seconds": 5}
    )
    client = graph_client(graph_lab, retry_total=0)  # see the 429 itself, not azure-core's retry of it
    seen: list[dict[str, str]] = []

    def hook(response: Any) -> None:
        seen.append(dict(response.http_response.headers))

    for _ in range(15):
        query(
            graph_lab, "resources | where name == 'ipc-panel-0001' | project name", client=client, hook=hook
        )
    with pytest.raises(HttpResponseError) as caught:
        query(graph_lab, "resources | project name", client=client)
    throttled = caught.value
    retry_after = int(throttled.response.headers["Retry-After"])
    time.sleep(retry_after)
    after_reset = query(graph_lab, "resources | count", client=client, hook=hook)

    assert [int(headers["x-ms-user-quota-remaining"]) for headers in seen[:15]] == list(range(14, -1, -1))
    assert all(re.fullmatch(r"00:00:0[0-5]", headers["x-ms-user-quota-resets-after"]) for headers in seen)
    assert throttled.status_code == 429
    assert throttled.error is not None
    assert throttled.error.code == "RateLimiting"
    assert throttled.response.headers["x-ms-user-quota-remaining"] == "0"
    assert 1 <= retry_after <= 5
    assert after_reset.data == [{"Count": PANELS + UNCONFIGURED + 1}]
    assert seen[-1]["x-ms-user-quota-remaining"] == "14", "a fresh window after the reset"


def test_each_principal_has_its_own_quota_window() -> None:
    quota = UserQuota()

    app = [quota.admit("app-object-id", now=0.0, time_scale=1.0).allowed for _ in range(16)]
    operator = quota.admit("operator-object-id", now=0.0, time_scale=1.0)
    app_after_window = quota.admit("app-object-id", now=5.0, time_scale=1.0)

    assert app == [True] * 15 + [False]
    assert (operator.allowed, operator.remaining) == (True, 14)
    assert (app_after_window.allowed, app_after_window.remaining) == (True, 14)


# --- lag ------------------------------------------------------------------------------------------------
def test_a_patch_through_arm_is_invisible_to_resource_graph_until_the_lag_passes(lab: LabHandle) -> None:
    panel = truth(lab, "ipc-panel-0011")
    group, name = panel["resourceGroup"], panel["name"]
    flux = f"{panel['id']}/providers/Microsoft.KubernetesConfiguration/fluxConfigurations/{CONFIG}"
    text = f"kubernetesconfigurationresources | where id =~ '{flux}' | project suspend = properties.suspend"
    assert lab.control("GET", "/_lab/resourcegraph")["settings"]["lag_seconds"] == LAG_S, (
        "--resource-graph-lag"
    )
    lab.control("POST", "/_lab/resourcegraph/catch-up")
    flux_configs = flux_client(lab, panel["subscription"]).flux_configurations

    patched_at = time.monotonic()
    poller = flux_configs.begin_update(group, *ON_ARC, name, CONFIG, {"properties": {"suspend": True}})
    in_arm = raw(lab, "GET", flux, api_version=wire.FLUX_API_VERSIONS[-1]).json()["properties"]["suspend"]
    in_graph_at_once = rows(query(lab, text))[0]["suspend"]
    while rows(query(lab, text))[0]["suspend"] is not True:
        assert time.monotonic() - patched_at < LAG_S + 5, "the change never reached Resource Graph"
        time.sleep(0.1)
    visible_after = time.monotonic() - patched_at
    poller.result()
    flux_configs.begin_update(group, *ON_ARC, name, CONFIG, {"properties": {"suspend": False}}).result()

    assert (in_arm, in_graph_at_once) == (True, False)
    assert visible_after >= LAG_S


def test_the_queries_in_the_doc_are_the_ones_tested() -> None:
    blocks = re.findall(r"```kusto\n(.*?)```", DOC.read_text(), flags=re.DOTALL)

    for constant in (PANELS_QUERY, COMPLIANCE_COUNTS_QUERY, RING_COUNTS_QUERY):
        assert constant in blocks
