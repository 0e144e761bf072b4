"""The image-automation runner: the one cluster that runs Flux's image controllers (issue 15).

Every factory panel syncs the GitOps repository read-only; exactly one cluster — a designated panel or
a hub — also applies `./kubernetes/flux-system/image-automation` and pushes the automation's commits
with its own write credential. It is found the way the lab's simulator and an operator find it: by a
tag on its connected cluster (`fluxfleet-role: image-automation` by default, setting
`FLUXFLEET_RUNNER_TAG`). Tag *names* are case-insensitive in ARM, values are not (`Panel.tag`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.models import Panel

DEFAULT_RUNNER_TAG = "fluxfleet-role=image-automation"


@dataclass(frozen=True)
class RunnerSelector:
    """Which clusters are image-automation runners: those carrying tag `name` with value `value`."""

    name: str = "fluxfleet-role"
    value: str = "image-automation"

    @classmethod
    def parse(cls, raw: str) -> RunnerSelector:
        """`name=value` (the setting's form); ValueError naming what is wrong."""
        name, sep, value = raw.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected <tag name>=<tag value>, got {raw!r}")
        return cls(name=name.strip(), value=value.strip())

    def matches(self, panel: Panel) -> bool:
        return panel.tag(self.name) == self.value

    def runners(self, panels: Iterable[Panel]) -> list[Panel]:
        return sorted((p for p in panels if self.matches(p)), key=lambda p: p.key)

    def factory_panels(self, panels: Iterable[Panel]) -> list[Panel]:
        return [p for p in panels if not self.matches(p)]

    def __str__(self) -> str:
        return f"{self.name}={self.value}"
