"""What conformance reads and writes, as ports (implemented by `shared.adapters.arm_fleet.ArmFleet`).

The reads are a seam: `ConformanceReader` is what the report needs of the fleet (every panel, each
one's extension and Flux configuration as ARM returns them). Today ArmFleet answers it with one paced
GET per resource; at 10,000+ panels an Azure Resource Graph adapter (`kubernetesconfigurationresources`
returns the same resource JSON, 1,000 rows a page) can implement the same Protocol without changing the
service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from shared.models import Panel
from shared.ports import AcceptedWrite


class ConformanceReader(Protocol):
    def list_panels(self, *, subscriptions: Sequence[str]) -> list[Panel]: ...

    def get_extension(self, *, panel: Panel, name: str) -> dict[str, Any] | None:
        """ARM's extension resource (as_dict), None when absent."""
        ...

    def get_flux_resource(self, *, panel: Panel, configuration: str) -> dict[str, Any] | None:
        """ARM's fluxConfiguration resource (as_dict, every 2025-04-01 property), None when absent."""
        ...


class ConformanceWriter(Protocol):
    """ARM writes; each returns once ARM accepted it (the LRO is followed via provisioningState)."""

    def put_extension(self, *, panel: Panel, name: str, body: Mapping[str, Any]) -> AcceptedWrite: ...

    def patch_extension(self, *, panel: Panel, name: str, properties: Mapping[str, Any]) -> AcceptedWrite: ...

    def put_flux_configuration(
        self, *, panel: Panel, configuration: str, body: Mapping[str, Any]
    ) -> AcceptedWrite: ...

    def begin_patch(self, *, panel: Panel, configuration: str, patch: Mapping[str, Any]) -> AcceptedWrite: ...

    def delete_flux_configuration(self, *, panel: Panel, configuration: str) -> AcceptedWrite: ...


class ConformanceArm(ConformanceReader, ConformanceWriter, Protocol):
    """Both: the one ARM boundary."""


class DeclarationSource(Protocol):
    def at(self, revision: str) -> Any:
        """The valid declaration read at `revision` (a `Declaration`)."""
        ...


class HttpsKeySource(Protocol):
    def https_key(self, *, secret: str | None) -> str:
        """base64 of the current *proven* PAT of `secret` (None: the app's own), read now from Key Vault.
        Never logged, never stored; raises `PermanentError` when no version passed preflight."""
        ...
