"""Settings: the one reader of app settings."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.errors import InvalidSetting, MissingSetting


def test_defaults_match_the_fleet_seed() -> None:
    settings = Settings.from_env({})
    assert settings.flux_configuration == "ipc-platform-config"
    assert settings.rings == ("canary", "early", "broad")
    assert settings.expiry_warning_days == (30, 14, 7, 3, 1)


def test_lists_numbers_and_booleans_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "FLUXFLEET_SUBSCRIPTION_IDS": " a , b ,",
            "FLUXFLEET_EXPIRY_WARNING_DAYS": "1,30,7",
            "FLUXFLEET_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
            "FLUXFLEET_ARM_WRITE_RATE": "25.5",
            "FLUXFLEET_ARM_ENDPOINT": "https://127.0.0.1:4443/",
        }
    )
    assert settings.subscription_ids == ("a", "b")
    assert settings.expiry_warning_days == (30, 7, 1)
    assert settings.keyvault_verify_challenge_resource is False
    assert settings.arm_write_rate == 25.5
    assert settings.arm_endpoint == "https://127.0.0.1:4443"


def test_a_missing_required_setting_names_the_variable() -> None:
    with pytest.raises(MissingSetting, match="FLUXFLEET_KEYVAULT_URL"):
        Settings.from_env({}).require("keyvault_url")


def test_an_invalid_setting_names_the_variable() -> None:
    with pytest.raises(InvalidSetting, match="FLUXFLEET_ARM_WRITE_BURST"):
        Settings.from_env({"FLUXFLEET_ARM_WRITE_BURST": "lots"})


def test_capabilities_follow_their_settings() -> None:
    assert Settings.from_env({}).capabilities() == {"fleet": False, "credentials": False, "images": False}


def test_the_readme_lists_every_setting_as_config_documents_it() -> None:
    from pathlib import Path

    from shared.config import settings_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- settings-table")
    block = readme[readme.index("\n", start) + 1 : readme.index("<!-- /settings-table -->")]
    stale = "README's settings table is stale: run `python -m shared.config`"
    assert block.strip() == settings_table(), stale
