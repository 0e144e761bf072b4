"""The credential capability's adapters against the lab with the real SDKs: Key Vault, the Git probe,
and the credential ledger in Table storage (Azurite)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from shared.adapters.credential_ledger import TableCredentialLedger
from shared.adapters.git_probe import HttpGitProbe
from shared.adapters.keyvault import KeyVaultSecretStore
from shared.errors import PermanentError
from shared.models import cluster_key
from shared.models.credentials import (
    CheckOutcome,
    ExpiryWarning,
    PanelCredential,
    PanelCredentialState,
    PreflightCheck,
    PreflightReport,
    ProbeVerdict,
    SecretVersionId,
    WarningLevel,
)
from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

SECRET = "flux-gitops-pat"


def next_second() -> None:
    time.sleep(1 - (time.time() % 1))


@pytest.fixture
def vault(lab_clean: LabHandle) -> Iterator[tuple[SecretClient, KeyVaultSecretStore]]:
    with lab_clean.applied_env():
        client = SecretClient(
            lab_clean.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        )
        yield client, KeyVaultSecretStore(client=lambda: client, secret_name=SECRET)


def test_the_seeded_version_is_current_with_its_expiry_and_authorization_id(
    vault: tuple[SecretClient, KeyVaultSecretStore], lab_clean: LabHandle
) -> None:
    _, store = vault
    versions = store.list_versions()
    truth = lab_clean.state()["keyvault"]["secrets"][SECRET]
    assert versions.current is not None
    assert versions.current.version == truth["currentVersion"]
    assert versions.current.authorization_id == truth["versions"][0]["tags"]["authorizationId"]
    assert versions.current.expires_on == datetime.fromtimestamp(truth["versions"][0]["exp"], tz=UTC)


def test_days_left_are_counted_on_the_vaults_clock_after_the_lab_clock_moves(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A lab of its own: the session lab's clock must not jump for the other tests.
    with LabProcess(tmp_path_factory.mktemp("kv-clock"), clusters=1, azurite=False) as lab, lab.applied_env():
        lab.control("POST", "/_lab/clock/advance", {"seconds": 20 * 86_400})
        lab_now = datetime.fromisoformat(lab.control("GET", "/_lab/clock")["now"].replace("Z", "+00:00"))
        with SecretClient(
            lab.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        ) as client:
            versions = KeyVaultSecretStore(client=lambda: client, secret_name=SECRET).list_versions()
    assert abs((versions.observed_at - lab_now).total_seconds()) < 5
    assert versions.current is not None
    days = versions.current.days_left(versions.observed_at)
    assert days is not None
    assert 39 < days < 41  # seeded with 60 lab days


def test_a_new_version_becomes_current_and_a_disabled_one_does_not(
    vault: tuple[SecretClient, KeyVaultSecretStore],
) -> None:
    client, store = vault
    seeded = store.list_versions().current
    assert seeded is not None
    next_second()  # `created` has whole seconds: keep the two versions apart
    newer = client.set_secret(SECRET, "x" * 52, expires_on=datetime.now(UTC) + timedelta(days=90))
    assert store.list_versions().current.version == newer.properties.version  # type: ignore[union-attr]
    client.update_secret_properties(SECRET, newer.properties.version, enabled=False)
    versions = store.list_versions()
    assert versions.current is not None
    assert versions.current.version == seeded.version
    assert [v.version for v in versions.versions][:2] == [newer.properties.version, seeded.version]


def test_versions_created_in_the_same_second_are_ordered_as_key_vault_serves_them(
    vault: tuple[SecretClient, KeyVaultSecretStore],
) -> None:
    client, store = vault
    next_second()  # both writes land in the same second of `created`
    client.set_secret(SECRET, "first" + "y" * 47)
    second = client.set_secret(SECRET, "second" + "z" * 46)
    assert store.list_versions().versions[0].version == second.properties.version


def test_reading_a_disabled_version_is_a_permanent_error_without_its_value(
    vault: tuple[SecretClient, KeyVaultSecretStore],
) -> None:
    client, store = vault
    value = "disabled" + "q" * 44
    created = client.set_secret(SECRET, value, enabled=False)
    with pytest.raises(PermanentError) as raised:
        store.read_value(SecretVersionId(created.properties.version or ""))
    assert value not in str(raised.value)


def test_the_probe_accepts_the_fleet_pat_and_refuses_it_once_revoked(
    vault: tuple[SecretClient, KeyVaultSecretStore], lab_clean: LabHandle
) -> None:
    _, store = vault
    current = store.list_versions().current
    assert current is not None
    value = store.read_value(current.version)
    probe = HttpGitProbe()
    with lab_clean.applied_env():
        assert probe.probe(url=lab_clean.doc["git_url"], username="git", password=value).authenticated
        lab_clean.control("POST", f"/_lab/devops/pats/{current.authorization_id}/revoke")
        refused = probe.probe(url=lab_clean.doc["git_url"], username="git", password=value)
        missing = probe.probe(url=lab_clean.doc["git_url"] + "-nope", username="git", password=value)
    assert refused.verdict is ProbeVerdict.REFUSED
    assert missing.verdict in (ProbeVerdict.NOT_FOUND, ProbeVerdict.REFUSED)
    assert value not in refused.detail


@pytest.mark.parametrize("value", ["pät" + "q" * 49, "pat€" + "q" * 48], ids=["latin-1", "beyond-latin-1"])
def test_the_probe_refuses_a_non_ascii_value_instead_of_raising(lab: LabHandle, value: str) -> None:
    with lab.applied_env():
        result = HttpGitProbe().probe(url=lab.doc["git_url"], username="git", password=value)
    assert result.verdict is ProbeVerdict.REFUSED
    assert value not in result.detail


# --- the ledger in Table storage -------------------------------------------------------------------
@pytest.fixture
def ledger(lab: LabHandle) -> TableCredentialLedger:
    service = TableServiceClient.from_connection_string(lab.env["AzureWebJobsStorage"])
    # A table per test: the session's Azurite is shared with other tests.
    return TableCredentialLedger(service=service, table_name="ffcredtest" + uuid.uuid4().hex[:10])


PANEL_ID = (
    "/subscriptions/5b5c0000-0000-4000-8000-000000000001/resourceGroups/rg-ipc-site-munich"
    "/providers/Microsoft.Kubernetes/connectedClusters/ipc-panel-0001"
)
PANEL_KEY = cluster_key("5b5c0000-0000-4000-8000-000000000001", "rg-ipc-site-munich", "ipc-panel-0001")
NOW = datetime(2026, 8, 20, 6, 0, tzinfo=UTC)


def test_the_credential_map_round_trips_and_upserts(ledger: TableCredentialLedger) -> None:
    record = PanelCredential(
        PANEL_ID, "ipc-panel-0001", SecretVersionId("v2"), PanelCredentialState.APPLYING, NOW
    )
    ledger.save_panel_credential(SECRET, record)
    ledger.save_panel_credential(
        SECRET,
        PanelCredential(
            PANEL_ID,
            "ipc-panel-0001",
            SecretVersionId("v2"),
            PanelCredentialState.PROVEN,
            NOW,
            previous_version=SecretVersionId("v1"),
            detail="fetched",
        ),
    )
    found = ledger.panel_credential(SECRET, PANEL_KEY)
    assert found is not None
    assert found.holds_proven("v2")
    assert found.previous_version == "v1"
    assert [r.panel_name for r in ledger.panel_credentials(SECRET)] == ["ipc-panel-0001"]
    assert ledger.panel_credentials("another-secret") == []


def test_a_warning_is_claimed_once_and_can_be_released(ledger: TableCredentialLedger) -> None:
    warning = ExpiryWarning(SECRET, SecretVersionId("v1"), 7, 6.5, NOW, WarningLevel.WARNING)
    assert ledger.claim_warning(warning, at=NOW) is True
    assert ledger.claim_warning(warning, at=NOW) is False
    assert list(ledger.sent_warnings(SECRET, SecretVersionId("v1"))) == [7]
    assert list(ledger.sent_warnings(SECRET, SecretVersionId("v10"))) == []
    ledger.release_warning(warning)
    assert ledger.claim_warning(warning, at=NOW) is True


def test_preflights_and_rollouts_round_trip(ledger: TableCredentialLedger) -> None:
    report = PreflightReport(
        SECRET,
        SecretVersionId("v2"),
        NOW,
        (PreflightCheck("authenticates", CheckOutcome.FAILED, "HTTP 401"),),
    )
    ledger.save_preflight(report)
    assert ledger.preflight(SECRET, SecretVersionId("v2")) == report
    assert ledger.preflight(SECRET, SecretVersionId("v3")) is None
    ledger.save_rollout(SECRET, SecretVersionId("v2"), {"operationId": "op-1", "trigger": "event"})
    assert ledger.rollout(SECRET, SecretVersionId("v2")) == {"operationId": "op-1", "trigger": "event"}
