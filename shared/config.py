"""App settings: the one place that reads the environment.

Everything else receives a `Settings` (or the part of it it needs). A setting a capability cannot do
without raises `MissingSetting` naming the variable, at the moment that capability is used, so one
unconfigured capability never stops the others (and `GET /api/health` can say which are configured).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from shared.errors import InvalidSetting, MissingSetting

# ARM's public endpoint; the lab overrides it.
PUBLIC_ARM_ENDPOINT = "https://management.azure.com"
PUBLIC_VSSPS_ENDPOINT = "https://vssps.dev.azure.com"
# The SDK default audience of ACR's Entra token exchange in the public cloud.
PUBLIC_ACR_AUDIENCE = "https://containerregistry.azure.net"


def _env(name: str, *, setting: str) -> dict[str, Any]:
    """Field metadata: the environment variable a setting is read from."""
    return {"env": name, "doc": setting}


@dataclass(frozen=True)
class Settings:
    """fluxfleet's app settings. Every field: where it comes from, unit, default, and why."""

    # --- the fleet ------------------------------------------------------------------------------------
    subscription_ids: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "FLUXFLEET_SUBSCRIPTION_IDS",
            setting="comma-separated subscriptions "
            "holding the panels (Arc connected clusters); required for fleet work",
        ),
    )
    arm_endpoint: str = field(
        default=PUBLIC_ARM_ENDPOINT,
        metadata=_env(
            "FLUXFLEET_ARM_ENDPOINT", setting="ARM base URL; the public cloud unless pointed at the lab"
        ),
    )
    flux_configuration: str = field(
        default="ipc-platform-config",
        metadata=_env(
            "FLUXFLEET_FLUX_CONFIGURATION", setting="name of the Flux configuration every panel runs"
        ),
    )
    # ARM allows 200 writes burst and 10/s refill per subscription and principal. The pacer starts from
    # these and adapts down to what `x-ms-ratelimit-remaining-subscription-writes` says is left, so
    # other callers using the same identity are accounted for. The lab scales them with its clock.
    arm_write_burst: int = field(
        default=200,
        metadata=_env(
            "FLUXFLEET_ARM_WRITE_BURST", setting="client-side write bucket size per subscription (writes)"
        ),
    )
    arm_write_rate: float = field(
        default=10.0,
        metadata=_env(
            "FLUXFLEET_ARM_WRITE_RATE", setting="client-side write refill per subscription (writes/second)"
        ),
    )
    rings: tuple[str, ...] = field(
        default=("canary", "early", "broad"),
        metadata=_env(
            "FLUXFLEET_RINGS", setting="rollout order of the panels' `ring` tag values, comma-separated"
        ),
    )
    platform_auth_enabled: bool = field(
        default=False,
        metadata=_env(
            "WEBSITE_AUTH_ENABLED",
            setting="set by App Service when its authentication is on; only then is the caller read "
            "from `x-ms-client-principal`, else a caller is its function key's id",
        ),
    )
    allowed_principals: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "FLUXFLEET_ALLOWED_PRINCIPALS",
            setting="who may call mutating routes (comma-separated principal "
            "names or function-key ids); empty allows every authenticated caller",
        ),
    )

    # --- fleet changes (issue 6: suspend/resume and the engine credential rollout reuses) --------------
    # ARM reads: 250 burst, 25/s refill per subscription and principal; the pacer shares them the same
    # way as writes. The lab scales the rate with its clock.
    arm_read_burst: int = field(
        default=250,
        metadata=_env(
            "FLUXFLEET_ARM_READ_BURST", setting="client-side read bucket size per subscription (reads)"
        ),
    )
    arm_read_rate: float = field(
        default=25.0,
        metadata=_env(
            "FLUXFLEET_ARM_READ_RATE", setting="client-side read refill per subscription (reads/second)"
        ),
    )
    # Azure Resource Graph's quota is per principal (the app's identity), not per subscription: 15 queries
    # per 5-second window (guidance-for-throttled-requests). Fleet-wide reads are one query per 1,000
    # panels, paced on a shared bucket of their own; the lab scales the window with its clock.
    resource_graph_queries: int = field(
        default=15,
        metadata=_env(
            "FLUXFLEET_RESOURCE_GRAPH_QUERIES",
            setting="Resource Graph queries per window for the app's identity (queries)",
        ),
    )
    resource_graph_window_seconds: float = field(
        default=5.0,
        metadata=_env(
            "FLUXFLEET_RESOURCE_GRAPH_WINDOW_SECONDS",
            setting="the Resource Graph quota's window (seconds)",
        ),
    )
    fleet_batch_size: int = field(
        default=25,
        metadata=_env(
            "FLUXFLEET_FLEET_BATCH_SIZE", setting="panels per fan-out queue message (1-100; default 25)"
        ),
    )
    fleet_verify_delay_seconds: float = field(
        default=30.0,
        metadata=_env(
            "FLUXFLEET_FLEET_VERIFY_DELAY_SECONDS",
            setting="seconds between a write and each check that the panel's agent reported it",
        ),
    )
    fleet_verify_max_checks: int = field(
        default=20,
        metadata=_env(
            "FLUXFLEET_FLEET_VERIFY_MAX_CHECKS",
            setting="checks of an online panel before it is failed as not reporting (20 × 30 s = 10 min)",
        ),
    )
    fleet_offline_recheck_seconds: float = field(
        default=600.0,
        metadata=_env(
            "FLUXFLEET_FLEET_OFFLINE_RECHECK_SECONDS", setting="seconds between looks at an offline panel"
        ),
    )
    fleet_lease_seconds: float = field(
        default=300.0,
        metadata=_env(
            "FLUXFLEET_FLEET_LEASE_SECONDS",
            setting="seconds a worker owns a claimed panel before another may take it over (after a crash)",
        ),
    )

    # --- storage --------------------------------------------------------------------------------------
    storage_connection: str | None = field(
        default=None,
        metadata=_env(
            "AzureWebJobsStorage",
            setting="Storage connection string for operations (Tables) and fan-out "
            "(Queues); the Functions host's own storage",
        ),
    )

    # --- credential rotation -----------------------------------------------------------------------------
    keyvault_url: str | None = field(
        default=None, metadata=_env("FLUXFLEET_KEYVAULT_URL", setting="Key Vault holding the Flux Git PAT")
    )
    keyvault_verify_challenge_resource: bool = field(
        default=True,
        metadata=_env(
            "FLUXFLEET_KEYVAULT_VERIFY_CHALLENGE_RESOURCE",
            setting="keep true in Azure; the lab's vault is an "
            "IP address that cannot match vault.azure.net, so only the lab sets false",
        ),
    )
    pat_secret_name: str = field(
        default="flux-gitops-pat",
        metadata=_env("FLUXFLEET_PAT_SECRET_NAME", setting="the Key Vault secret holding the PAT"),
    )
    # issue 15: the image-automation runner pushes with its own write PAT, its own secret; factory panels
    # keep the read-only one above. Both rotate through the same machinery (docs/credentials.md).
    automation_pat_secret_name: str = field(
        default="flux-gitops-automation-pat",
        metadata=_env(
            "FLUXFLEET_AUTOMATION_PAT_SECRET_NAME",
            setting="the Key Vault secret holding the image-automation runner's write PAT "
            "(Code Read & Write)",
        ),
    )
    runner_tag: str = field(
        default="fluxfleet-role=image-automation",
        metadata=_env(
            "FLUXFLEET_RUNNER_TAG",
            setting="`name=value` of the tag marking the one image-automation runner cluster",
        ),
    )
    git_url: str | None = field(
        default=None,
        metadata=_env("FLUXFLEET_GIT_URL", setting="the GitOps repository's clone URL (Azure DevOps)"),
    )
    git_https_user: str = field(
        default="git",
        metadata=_env(
            "FLUXFLEET_GIT_HTTPS_USER", setting="HTTPS user sent with the PAT; Azure DevOps accepts any"
        ),
    )
    git_branch: str = field(
        default="main", metadata=_env("FLUXFLEET_GIT_BRANCH", setting="the branch the panels sync")
    )
    rotation_schedule: str = field(
        default="0 0 6 * * *",
        metadata=_env(
            "FLUXFLEET_ROTATION_SCHEDULE", setting="NCRONTAB of the daily credential check (06:00 UTC)"
        ),
    )
    expiry_warning_days: tuple[int, ...] = field(
        default=(30, 14, 7, 3, 1),
        metadata=_env(
            "FLUXFLEET_EXPIRY_WARNING_DAYS", setting="days before `exp` at which to warn, once each"
        ),
    )
    webhook_url: str | None = field(
        default=None,
        metadata=_env(
            "FLUXFLEET_WEBHOOK_URL", setting="Teams/Slack incoming webhook for warnings and stuck rollouts"
        ),
    )
    # credential rotation (issue 7): how much of a ring must succeed before the next ring starts. An
    # authentication failure halts a rollout whatever this says; the threshold is about panels that are
    # offline or never report. 0.8 lets one canary in five be offline without stopping the fleet.
    credential_ring_threshold: float = field(
        default=0.8,
        metadata=_env(
            "FLUXFLEET_CREDENTIAL_RING_THRESHOLD",
            setting="share (0-1) of a ring's panels that must succeed before the next ring gets a new PAT",
        ),
    )

    # --- Azure DevOps and images ---------------------------------------------------------------------------
    devops_org_url: str | None = field(
        default=None, metadata=_env("FLUXFLEET_DEVOPS_ORG_URL", setting="https://dev.azure.com/<org>")
    )
    devops_project: str | None = field(
        default=None,
        metadata=_env("FLUXFLEET_DEVOPS_PROJECT", setting="Azure DevOps project of the GitOps repository"),
    )
    devops_repository: str | None = field(
        default=None, metadata=_env("FLUXFLEET_DEVOPS_REPOSITORY", setting="Azure DevOps repository name")
    )
    devops_vssps_url: str = field(
        default=PUBLIC_VSSPS_ENDPOINT,
        metadata=_env("FLUXFLEET_DEVOPS_VSSPS_URL", setting="PAT lifecycle API host (operator CLI only)"),
    )
    acr_endpoint: str | None = field(
        default=None, metadata=_env("FLUXFLEET_ACR_ENDPOINT", setting="https://<registry>.azurecr.io")
    )
    acr_login_server: str | None = field(
        default=None,
        metadata=_env("FLUXFLEET_ACR_LOGIN_SERVER", setting="<registry>.azurecr.io as images name it"),
    )
    acr_audience: str = field(
        default=PUBLIC_ACR_AUDIENCE,
        metadata=_env("FLUXFLEET_ACR_AUDIENCE", setting="Entra audience for ACR's token exchange"),
    )
    # image checks (issue 8): the ETA and the follow-up. The panels' Git sync interval is a fleet-wide
    # choice made when the Flux configuration is created (`--interval 5m` in kubernetes/README.md), so it
    # is a setting rather than one panel's ARM answer; the follow-up measures what really happened.
    flux_sync_interval_seconds: float = field(
        default=300.0,
        metadata=_env(
            "FLUXFLEET_FLUX_SYNC_INTERVAL_SECONDS",
            setting="the Flux configurations' syncIntervalInSeconds, for image rollout ETAs (seconds)",
        ),
    )
    images_follow_up_margin_seconds: float = field(
        default=120.0,
        metadata=_env(
            "FLUXFLEET_IMAGES_FOLLOW_UP_MARGIN_SECONDS",
            setting="seconds after an image's ETA before its first follow-up check (Flux timers jitter)",
        ),
    )
    images_follow_up_recheck_seconds: float = field(
        default=300.0,
        metadata=_env(
            "FLUXFLEET_IMAGES_FOLLOW_UP_RECHECK_SECONDS",
            setting="seconds between follow-up checks while panels are still applying (one sync interval)",
        ),
    )
    images_follow_up_max_checks: int = field(
        default=6,
        metadata=_env(
            "FLUXFLEET_IMAGES_FOLLOW_UP_MAX_CHECKS",
            setting="follow-up checks before a rollout is reported stuck (6 × 5 min after the ETA)",
        ),
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f.metadata["env"])
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(f.name, f.metadata["env"], raw.strip(), f.default)
        return cls(**values)

    def require(self, name: str) -> Any:
        """The value of a setting a capability cannot do without, or MissingSetting naming it."""
        value = getattr(self, name)
        if value in (None, (), ""):
            raise MissingSetting(env_name(name))
        return value

    def capabilities(self) -> dict[str, bool]:
        """Which capabilities have the settings they need (never the values)."""
        return {
            "fleet": bool(self.subscription_ids and self.storage_connection),
            "credentials": bool(
                self.subscription_ids and self.storage_connection and self.keyvault_url and self.git_url
            ),
            "images": bool(
                self.acr_endpoint
                and self.devops_org_url
                and self.devops_project
                and self.devops_repository
                and self.storage_connection
            ),
        }


def env_name(field_name: str) -> str:
    for f in fields(Settings):
        if f.name == field_name:
            return str(f.metadata["env"])
    raise KeyError(field_name)


def _parse(name: str, env: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return raw.lower() in ("true", "1")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            items = tuple(item.strip() for item in raw.split(",") if item.strip())
            if name == "expiry_warning_days":
                return tuple(sorted((int(item) for item in items), reverse=True))
            return items
        if name == "runner_tag" and not all(part.strip() for part in (raw.partition("=")[::2])):
            raise ValueError("expected <tag name>=<tag value>, e.g. fluxfleet-role=image-automation")
        return raw.rstrip("/") if raw.startswith("https://") or raw.startswith("http://") else raw
    except ValueError as exc:
        raise InvalidSetting(env, str(exc)) from exc


def settings_table() -> str:
    """The app settings as a Markdown table (README's "App settings"; a test keeps the two in step)."""
    rows = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for f in fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            shown = ",".join(str(item) for item in default) if default else "(none)"
        elif default is None:
            shown = "(none)"
        else:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
        rows.append(f"| `{f.metadata['env']}` | `{shown}` | {f.metadata['doc']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
