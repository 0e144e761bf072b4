"""ARM throttling and injected faults, as the real SDKs experience them.

The token buckets are tested directly (refill, the global bucket shared across principals), then
through the lab: counters on every answer, 429 `SubscriptionRequestsThrottled` with a `Retry-After`
in real seconds at the lab's time-scale, azure-core's retry honouring it, and injected 429/5xx/reset
faults surfacing as the right `azure.core` exceptions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.hybridkubernetes import ConnectedKubernetesClient

from lab.arm.throttling import BucketLimit, Throttle, ThrottleSettings, retry_after_real_seconds
from tests.labkit import LabHandle, LabProcess

ARM_SCOPE = "https://management.azure.com/.default"
PANEL, GROUP = "ipc-panel-0001", "rg-ipc-site-munich"
CONFIG = "ipc-platform-config"


# --- the buckets themselves ---------------------------------------------------------------------------
def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    throttle = Throttle(ThrottleSettings().with_limit("writes", BucketLimit(burst=3, per_second=2)))

    burst = [
        throttle.admit(subscription="s", principal="p", kind="writes", now=0.0).allowed for _ in range(4)
    ]
    after_half_second = throttle.admit(subscription="s", principal="p", kind="writes", now=0.5)
    refused = throttle.admit(subscription="s", principal="p", kind="writes", now=0.5)

    assert burst == [True, True, True, False]
    assert after_half_second.allowed, "2 tokens/s refill one token in 0.5 s"
    assert not refused.allowed
    assert refused.retry_after_lab_s == pytest.approx(0.5)


def test_the_global_bucket_is_shared_by_every_principal_of_a_subscription() -> None:
    settings = ThrottleSettings(global_multiplier=2).with_limit(
        "reads", BucketLimit(burst=2, per_second=0.001)
    )
    throttle = Throttle(settings)

    first = [throttle.admit(subscription="s", principal="a", kind="reads", now=0).allowed for _ in range(2)]
    second = [throttle.admit(subscription="s", principal="b", kind="reads", now=0).allowed for _ in range(2)]
    third = throttle.admit(subscription="s", principal="c", kind="reads", now=0)
    other_subscription = throttle.admit(subscription="t", principal="c", kind="reads", now=0)

    assert first == second == [True, True]
    assert not third.allowed, "4 = 2 x 2 global tokens are gone, though principal c has its own"
    assert third.remaining == 2
    assert third.global_remaining == 0
    assert other_subscription.allowed


def test_reads_writes_and_deletes_have_separate_buckets() -> None:
    throttle = Throttle(ThrottleSettings().with_limit("reads", BucketLimit(burst=1, per_second=0.001)))

    throttle.admit(subscription="s", principal="p", kind="reads", now=0)

    assert not throttle.admit(subscription="s", principal="p", kind="reads", now=0).allowed
    assert throttle.admit(subscription="s", principal="p", kind="writes", now=0).allowed
    assert throttle.admit(subscription="s", principal="p", kind="deletes", now=0).allowed


def test_retry_after_is_real_whole_seconds_rounded_up_and_at_least_one() -> None:
    assert retry_after_real_seconds(20.0, time_scale=10.0) == 2
    assert retry_after_real_seconds(20.5, time_scale=10.0) == 3
    assert retry_after_real_seconds(0.01, time_scale=1.0) == 1
    assert retry_after_real_seconds(0.0, time_scale=100.0) == 1


# --- through the lab ------------------------------------------------------------------------------
@pytest.fixture
def arm(lab_clean: LabHandle) -> Iterator[LabHandle]:
    with lab_clean.applied_env():
        yield lab_clean


def cluster_path(lab: LabHandle) -> str:
    return (
        f"/subscriptions/{lab.doc['subscriptions'][0]}/resourceGroups/{GROUP}"
        f"/providers/Microsoft.Kubernetes/connectedClusters/{PANEL}"
    )


def raw(
    lab: LabHandle, method: str, path: str, *, api_version: str = "2024-01-01", body: Any = None
) -> requests.Response:
    token = ManagedIdentityCredential().get_token(ARM_SCOPE).token
    return requests.request(
        method,
        f"{lab.endpoint('arm')}{path}?api-version={api_version}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=lab.ca_bundle,
        timeout=30,
    )


def clusters_client(lab: LabHandle, **kwargs: Any) -> ConnectedKubernetesClient:
    return ConnectedKubernetesClient(
        ManagedIdentityCredential(), lab.doc["subscriptions"][0], base_url=lab.endpoint("arm"), **kwargs
    )


def statuses_since(lab: LabHandle, since: int, fragment: str) -> list[int]:
    log = lab.control("GET", f"/_lab/requests?service=arm&since={since}")["requests"]
    return [entry["status"] for entry in log if fragment in entry["path"]]


def log_position(lab: LabHandle) -> int:
    entries = lab.control("GET", "/_lab/requests")["requests"]
    return max((entry["seq"] for entry in entries), default=0)


@pytest.mark.lab
def test_reads_and_writes_count_down_their_own_and_the_global_counters(arm: LabHandle) -> None:
    flux = f"{cluster_path(arm)}/providers/Microsoft.KubernetesConfiguration/fluxConfigurations/{CONFIG}"

    read = raw(arm, "GET", cluster_path(arm))
    write = raw(arm, "PATCH", flux, api_version="2025-04-01", body={"properties": {}})

    assert read.headers["x-ms-ratelimit-remaining-subscription-reads"] == "249"
    assert read.headers["x-ms-ratelimit-remaining-subscription-global-reads"] == "3749"
    assert write.headers["x-ms-ratelimit-remaining-subscription-writes"] == "199"
    assert write.headers["x-ms-ratelimit-remaining-subscription-global-writes"] == "2999"
    assert "x-ms-ratelimit-remaining-subscription-reads" not in write.headers


@pytest.mark.lab
def test_an_empty_bucket_answers_429_with_arm_body_and_retry_after(arm: LabHandle) -> None:
    arm.control(
        "POST", "/_lab/arm/throttling", {"limits": {"reads": {"burst": 2, "per_second": 0.5}}}, expect=200
    )
    app = arm.doc["app_identity"]["object_id"]

    answers = [raw(arm, "GET", cluster_path(arm)) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    throttled = answers[-1]
    assert throttled.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert throttled.json()["error"]["message"].startswith(
        f"Number of 'read' requests for subscription '{arm.doc['subscriptions'][0]}' actor '{app}' exceeded."
    )
    assert "https://aka.ms/arm-throttling" in throttled.json()["error"]["message"]
    assert throttled.headers["Retry-After"] == "2", "one token at 0.5/s takes 2 s at time-scale 1"
    assert throttled.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"


@pytest.mark.lab
def test_the_sdk_waits_out_a_throttle_and_then_succeeds(arm: LabHandle) -> None:
    arm.control(
        "POST", "/_lab/arm/throttling", {"limits": {"reads": {"burst": 1, "per_second": 1}}}, expect=200
    )
    raw(arm, "GET", cluster_path(arm))  # takes the only token
    since = log_position(arm)

    started = time.monotonic()
    cluster = clusters_client(arm).connected_cluster.get(GROUP, PANEL)
    waited = time.monotonic() - started

    assert cluster.name == PANEL
    assert statuses_since(arm, since, PANEL) == [429, 200]
    assert waited >= 0.9, "azure-core slept the Retry-After before retrying"


@pytest.mark.lab
def test_throttling_can_be_switched_off_for_tests_that_do_not_care(arm: LabHandle) -> None:
    arm.control(
        "POST",
        "/_lab/arm/throttling",
        {"enabled": False, "limits": {"reads": {"burst": 1, "per_second": 0.01}}},
        expect=200,
    )

    statuses = {raw(arm, "GET", cluster_path(arm)).status_code for _ in range(5)}

    assert statuses == {200}
    assert arm.control("GET", "/_lab/arm/throttling")["enabled"] is False


@pytest.mark.lab
def test_an_injected_429_is_retried_by_azure_core(arm: LabHandle) -> None:
    arm.control(
        "POST",
        "/_lab/faults",
        {
            "route": f"GET .*/connectedClusters/{PANEL}$",
            "status": 429,
            "count": 1,
            "retry_after": 1,
            "service": "arm",
        },
        expect=201,
    )
    since = log_position(arm)

    cluster = clusters_client(arm).connected_cluster.get(GROUP, PANEL)

    assert cluster.name == PANEL
    assert statuses_since(arm, since, PANEL) == [429, 200]


@pytest.mark.lab
@pytest.mark.parametrize("status", [500, 503])
def test_injected_server_errors_surface_as_http_response_errors(arm: LabHandle, status: int) -> None:
    arm.control(
        "POST",
        "/_lab/faults",
        {"route": f"GET .*/connectedClusters/{PANEL}$", "status": status, "service": "arm"},
        expect=201,
    )

    with pytest.raises(HttpResponseError) as failed:
        clusters_client(arm, retry_total=0).connected_cluster.get(GROUP, PANEL)

    assert failed.value.status_code == status
    assert failed.value.error is not None
    assert failed.value.error.code in ("InternalServerError", "ServiceUnavailable")


@pytest.mark.lab
def test_an_injected_connection_reset_surfaces_as_a_service_response_error(arm: LabHandle) -> None:
    arm.control(
        "POST",
        "/_lab/faults",
        {"route": f"GET .*/connectedClusters/{PANEL}$", "reset": True, "service": "arm"},
        expect=201,
    )

    with pytest.raises(ServiceResponseError):
        clusters_client(arm, retry_total=0).connected_cluster.get(GROUP, PANEL)


@pytest.fixture(scope="module")
def fast_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A lab whose clock runs 10x real time."""
    state_dir: Path = tmp_path_factory.mktemp("arm-fast")
    with (
        LabProcess(state_dir, clusters=8, subscriptions=1, time_scale=10.0, azurite=False) as handle,
        handle.applied_env(),
    ):
        yield handle


@pytest.mark.lab
def test_retry_after_is_in_real_seconds_at_the_lab_time_scale(fast_lab: LabHandle) -> None:
    per_second = 0.05  # one token takes 20 lab seconds: 2 real seconds at 10x
    fast_lab.control(
        "POST",
        "/_lab/arm/throttling",
        {"limits": {"reads": {"burst": 1, "per_second": per_second}}},
        expect=200,
    )

    raw(fast_lab, "GET", cluster_path(fast_lab))
    throttled = raw(fast_lab, "GET", cluster_path(fast_lab))

    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) == math.ceil(1 / per_second / 10.0)
    time.sleep(int(throttled.headers["Retry-After"]))
    assert raw(fast_lab, "GET", cluster_path(fast_lab)).status_code == 200, "the bucket refilled on lab time"
