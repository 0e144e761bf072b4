"""Expiry warnings end to end: the lab clock moves, Key Vault and the daily check make the app warn.

The seeded PAT expires 60 lab days after the lab starts. Moving the lab clock (`POST /_lab/clock/advance`)
makes the lab's Key Vault raise `SecretNearExpiry` (30 days before `exp`) and `SecretExpired`, which Event
Grid delivers to the host; the 14-, 7-, 3- and 1-day thresholds come from the daily check, run here through
the host's admin endpoint as the timer would. The app counts days on the vault's clock (its `Date` header),
so it sees the same time as the lab. Each threshold must reach the webhook exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.e2e.hostkit import HostProcess
from tests.e2e.webhook import Webhook
from tests.labkit import LabHandle, LabProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
DAY_S = 86_400
EVENT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(tmp_path_factory.mktemp("expiry-lab"), clusters=4, subscriptions=1) as handle:
        yield handle


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture(scope="module")
def host(lab: LabHandle, webhook: Webhook) -> Iterator[HostProcess]:
    env = {"FLUXFLEET_WEBHOOK_URL": webhook.url}
    with HostProcess(lab, instance="expiry", env=env) as process:
        yield process


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = EVENT_TIMEOUT_S) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def advance(lab: LabHandle, days: float) -> None:
    lab.control("POST", "/_lab/clock/advance", {"seconds": days * DAY_S})


def run_daily_check(host: HostProcess) -> None:
    before = host.log_text().count("function=credentials_scheduled_check")
    response = host.call(
        "POST", "/admin/functions/credentials_scheduled_check", key="master", json={"input": ""}
    )
    assert response.status_code == 202
    wait_for(
        "the daily check to finish",
        lambda: True if host.log_text().count("function=credentials_scheduled_check") > before else None,
    )


def days_left(host: HostProcess) -> float:
    response = host.call("GET", "/api/credentials")
    assert response.status_code == 200, response.text
    return float(response.json()["current"]["daysLeft"])


def test_near_expiry_from_key_vault_warns_at_thirty_days(
    lab: LabHandle, host: HostProcess, webhook: Webhook
) -> None:
    assert 59 < days_left(host) <= 60
    advance(lab, 31)
    title = wait_for("the 30-day warning", lambda: next(iter(webhook.expiry_titles()), None))
    assert title == "Flux PAT expires in 28 days"
    assert 28 < days_left(host) < 29.1
    card = webhook.messages[-1]["attachments"][0]["content"]
    assert card["body"][0]["color"] == "Warning"


def test_the_daily_check_warns_once_at_each_later_threshold(
    lab: LabHandle, host: HostProcess, webhook: Webhook
) -> None:
    advance(lab, 16)  # 12 days left
    run_daily_check(host)
    run_daily_check(host)  # the same threshold is never warned about twice
    assert webhook.expiry_titles()[1:] == ["Flux PAT expires in 12 days"]
    advance(lab, 10)  # 2 days left: an error now
    run_daily_check(host)
    assert webhook.expiry_titles()[2:] == ["Flux PAT expires in 2 days"]
    assert webhook.messages[-1]["attachments"][0]["content"]["body"][0]["color"] == "Attention"
    log = host.log_text()
    assert "ERROR" in log.split("expires in 2 days")[0].rsplit("\n", 1)[-1]
    response = host.call("GET", "/api/credentials").json()
    assert response["current"]["warningsSent"] == [3, 14, 30]


def test_expiry_from_key_vault_warns_once_more(lab: LabHandle, host: HostProcess, webhook: Webhook) -> None:
    advance(lab, 4)  # a day past `exp`
    wait_for("the expired warning", lambda: "Flux PAT expired" in webhook.expiry_titles() or None)
    assert webhook.expiry_titles().count("Flux PAT expired") == 1
    assert -1.1 < days_left(host) < -0.9
