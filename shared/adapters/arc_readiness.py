"""Which panels could use workload identity: connectedClusters and their `microsoft.flux` extension.

Reads ARM through the app's one ARM boundary (`ArmFleet`, paced): one connectedClusters list per
subscription (security and OIDC issuer profiles of every panel, 100 a page) and one extensions list
per panel (ARM has no fleet-wide extension list; Azure Resource Graph's
`kubernetesconfigurationresources` is the way at 10,000+ panels, see docs/credentials.md). Reads run a
few at a time so a report never floods ARM's read budget (250 burst, 25/s per principal).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from shared.adapters.arm_fleet import ArmFleet
from shared.errors import FluxfleetError
from shared.models import Panel
from shared.models.credentials import WorkloadIdentityFacts

log = logging.getLogger("fluxfleet.adapters.arc_readiness")

FLUX_EXTENSION_TYPE = "microsoft.flux"
# Concurrent extension lists: 4 × ~50 ms per read stays far below 25 reads/s.
READ_CONCURRENCY = 4


class ArmWorkloadIdentityReader:
    """`WorkloadIdentityReader` over the ARM boundary."""

    def __init__(self, arm: ArmFleet) -> None:
        self._arm = arm

    def facts(self, *, panels: Sequence[Panel]) -> dict[str, WorkloadIdentityFacts]:
        profiles: dict[str, tuple[bool, bool]] = {}
        for subscription in sorted({panel.subscription for panel in panels}):
            profiles.update(self._arm.list_security_profiles(subscription=subscription))
        with ThreadPoolExecutor(max_workers=READ_CONCURRENCY, thread_name_prefix="wi-facts") as pool:
            versions = dict(zip((p.key for p in panels), pool.map(self._flux_version, panels), strict=True))
        result: dict[str, WorkloadIdentityFacts] = {}
        for panel in panels:
            profile = profiles.get(panel.key)
            version = versions[panel.key]
            if profile is None or isinstance(version, FluxfleetError):
                continue
            result[panel.key] = WorkloadIdentityFacts(
                flux_extension_version=version,
                workload_identity_enabled=profile[0],
                oidc_issuer_enabled=profile[1],
            )
        return result

    def _flux_version(self, panel: Panel) -> str | FluxfleetError | None:
        try:
            return self._arm.get_extension_version(panel=panel, extension_type=FLUX_EXTENSION_TYPE)
        except FluxfleetError as error:
            log.warning("%s", error.message, extra={"cluster": panel.name})
            return error
