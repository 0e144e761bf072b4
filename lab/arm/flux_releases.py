"""The released versions of the `microsoft.flux` cluster extension, and the one upgrade path rule they state.

Source: MicrosoftDocs/azure-management-docs, `articles/azure-arc/kubernetes/flux-gitops-release-notes.md`
(HEAD 2026-08-20) and its predecessor, the "Flux (GitOps)" section of `extensions-release.md`, read over
the file's whole git history (first commit 2023-01-26): every `microsoft.flux` version that a release-notes
heading ever named, from 1.6.0 (September 2022) to 1.24.1 (August 2026). Versions released before the
history starts (below 1.6.0) are not listed, so the lab does not know them.

The one stated upgrade-path constraint (flux-gitops-release-notes.md, 1.23.0 and the API removal notice):
"Clusters must be running version 1.21.0 or higher in order to subsequently upgrade to version 1.23.0, which
includes the Flux 2.7 API version" and "If your clusters are running 1.20.4 or lower, upgrade them to an
interim version (1.21.0 - 1.22.2) first". The lab applies it to every target from 1.23.0 on, since every
later release carries the same Flux 2.7 APIs; no other step is required by the notes.
"""

from __future__ import annotations

from dataclasses import dataclass

FLUX_EXTENSION_TYPE = "microsoft.flux"
STABLE_TRAIN = "Stable"


@dataclass(frozen=True)
class FluxRelease:
    version: str
    released: str  # month and year, as the release notes date it


# Oldest first. Each line is a heading of the release notes (see the module docstring).
RELEASES: tuple[FluxRelease, ...] = tuple(
    FluxRelease(version, released)
    for version, released in (
        ("1.6.0", "September 2022"),
        ("1.6.1", "October 2022"),
        ("1.6.3", "December 2022"),
        ("1.6.4", "February 2023"),
        ("1.7.0", "March 2023"),
        ("1.7.3", "April 2023"),
        ("1.7.4", "June 2023"),
        ("1.7.5", "August 2023"),
        ("1.7.6", "August 2023"),
        ("1.7.7", "September 2023"),
        ("1.7.8", "October 2023"),
        ("1.8.0", "October 2023"),
        ("1.8.1", "November 2023"),
        ("1.8.2", "February 2024"),
        ("1.8.3", "March 2024"),
        ("1.8.4", "April 2024"),
        ("1.9.1", "April 2024"),
        ("1.10.0", "June 2024"),
        ("1.11.1", "August 2024"),
        ("1.12.0", "September 2024"),
        ("1.13.0", "October 2024"),
        ("1.13.1", "October 2024"),
        ("1.14.1", "January 2025"),
        ("1.15.1", "February 2025"),
        ("1.15.2", "May 2025"),
        ("1.16.1", "March 2025"),
        ("1.16.2", "March 2025"),
        ("1.16.3", "May 2025"),
        ("1.16.8", "June 2025"),
        ("1.16.12", "July 2025"),
        ("1.17.2", "August 2025"),
        ("1.17.3", "September 2025"),
        ("1.18.2", "October 2025"),
        ("1.18.4", "November 2025"),
        ("1.18.5", "December 2025"),
        ("1.19.5", "February 2026"),
        ("1.20.4", "March 2026"),
        ("1.21.0", "April 2026"),
        ("1.21.1", "April 2026"),
        ("1.22.1", "May 2026"),
        ("1.22.2", "May 2026"),
        ("1.23.0", "June 2026"),
        ("1.23.1", "June 2026"),
        ("1.23.3", "July 2026"),
        ("1.24.0", "July 2026"),
        ("1.24.1", "August 2026"),
    )
)
KNOWN_VERSIONS = frozenset(release.version for release in RELEASES)
# The release notes publish one train for microsoft.flux; `Preview` builds are not listed.
RELEASE_TRAINS = (STABLE_TRAIN,)

# "Clusters must be running version 1.21.0 or higher in order to subsequently upgrade to version 1.23.0".
FLUX_27_FIRST = (1, 23, 0)
FLUX_27_REQUIRES = (1, 21, 0)


def version_key(version: str) -> tuple[int, ...]:
    """`1.16.12` -> (1, 16, 12): versions compare numerically, not as text."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def newest(release_train: str) -> str | None:
    """What `autoUpgradeMinorVersion: true` installs: the newest on the train (None: unknown train)."""
    if release_train.lower() != STABLE_TRAIN.lower():
        return None
    return max(KNOWN_VERSIONS, key=version_key)


def is_released(version: str) -> bool:
    return version in KNOWN_VERSIONS


def upgrade_blocker(current: str | None, target: str) -> str | None:
    """Why moving from `current` to `target` is not allowed by the release notes, or None."""
    if current is None or not is_released(current):
        return None
    if version_key(target) >= FLUX_27_FIRST and version_key(current) < FLUX_27_REQUIRES:
        return (
            f"Clusters must be running version 1.21.0 or higher in order to upgrade to version {target}, "
            f"which includes the Flux 2.7 API version; the cluster runs {current}. Upgrade to an interim "
            "version (1.21.0 - 1.22.2) first."
        )
    return None
