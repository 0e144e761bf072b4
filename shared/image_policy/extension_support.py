"""Which image automation features a cluster's `microsoft.flux` extension version can run.

On Azure Arc the Flux controllers, and the CRDs that define which `image.toolkit.fluxcd.io` API
versions the cluster serves, come with the `microsoft.flux` cluster extension, so whether a
repository's ImageRepository/ImagePolicy/ImageUpdateAutomation objects can even be applied depends on
the extension version. The table below is the extension's release history: for each version, the
Flux release and the image-reflector-controller (IRC) and image-automation-controller (IAC) versions
it ships.

Sources:
- MicrosoftDocs/azure-management-docs `articles/azure-arc/kubernetes/flux-gitops-release-notes.md`
  (HEAD 2026-08-20: 1.19.5 to 1.24.1, and the removal notice: "upgrade your clusters to use
  `microsoft.flux` version 1.23.0, which introduces the Flux 2.7 API version") and the git history of
  `articles/azure-arc/kubernetes/extensions-release.md` (1.6.0 to 1.21.0, before the notes moved;
  1.6.4 changed no controller, so it ships 1.6.3's).
- Served API versions per controller release: the CRDs at each tag,
  fluxcd/image-reflector-controller `config/crd/bases/image.toolkit.fluxcd.io_imagepolicies.yaml`
  (v0.20.x-v0.22.x serve v1alpha1, v1alpha2 and v1beta1; v0.23.x-v0.24.x v1beta1 only;
  v0.25.0-v0.35.2 v1beta1 and v1beta2; v1.0.x-v1.1.x v1 and a deprecated v1beta2; v1.2.0 v1 only;
  ImageRepository alike) and fluxcd/image-automation-controller
  `config/crd/bases/image.toolkit.fluxcd.io_imageupdateautomations.yaml` (v0.24.x-v0.26.x serve
  v1alpha1, v1alpha2 and v1beta1; v0.27.0-v0.37.x v1beta1 only; v0.38.0-v0.41.x v1beta1 and v1beta2;
  v1.0.x-v1.1.x v1 and v1beta2; v1.2.0 v1 only).
- Features: `spec.digestReflectionPolicy`/`spec.interval` on ImagePolicy from IRC v0.35.0
  (`api/v1beta2/imagepolicy_types.go` at v0.35.0); ImagePolicy `spec.suspend` from IRC v1.0.0 (its
  CHANGELOG for 1.0.0); the `:digest` setter from IAC v0.41.0 (commit 806d410).

A kind whose API version the cluster does not serve cannot be applied: kustomize-controller's
server-side dry-run fails the whole kustomization with the RESTMapper's error, which fluxcd/pkg
`ssa/errors/errors.go` (`DryRunErr.Error`, "%s dry-run failed%s: %s" with the object as
`Kind/namespace/name`) and kustomize-controller v1.7.3 `internal/controller/kustomization_controller.go`
(`apply`: "%w\\n%s", then Ready=False `ReconciliationFailed`) turn into the message of
`dry_run_error`. The extension notes quote the same signature: `no matches for kind "HelmRelease"
in version "helm.toolkit.fluxcd.io/v2beta1"`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from shared.image_policy.manifests import (
    API_V1,
    API_V1BETA2,
    GROUP,
    ImageObjects,
    ImagePolicy,
    ImageRepository,
    ImageUpdateAutomation,
)

API_V1BETA1: Final = f"{GROUP}/v1beta1"
API_V1ALPHA1: Final = f"{GROUP}/v1alpha1"
API_V1ALPHA2: Final = f"{GROUP}/v1alpha2"
_ALPHAS_AND_V1BETA1: Final = frozenset({API_V1ALPHA1, API_V1ALPHA2, API_V1BETA1})
# The first extension whose image controllers serve `image.toolkit.fluxcd.io/v1` (Flux 2.7).
FIRST_EXTENSION_WITH_IMAGE_V1: Final = "1.23.0"
# kustomize-controller's Ready reason when applying a kustomization's objects fails.
RECONCILIATION_FAILED_REASON: Final = "ReconciliationFailed"


@dataclass(frozen=True)
class FluxExtensionRelease:
    """One `microsoft.flux` release: the Flux version and the image controllers it ships."""

    version: str
    released: str  # month and year, as the release notes head the entry
    flux: str
    image_reflector_controller: str
    image_automation_controller: str


# Oldest first. Controller versions without Microsoft's build suffix (`v1.0.4-13` -> `1.0.4`).
RELEASES: Final[tuple[FluxExtensionRelease, ...]] = (
    FluxExtensionRelease("1.6.0", "September 2022", "0.33.0", "0.20.1", "0.24.2"),
    FluxExtensionRelease("1.6.1", "October 2022", "0.35.0", "0.22.0", "0.26.0"),
    FluxExtensionRelease("1.6.3", "December 2022", "0.37.0", "0.23.0", "0.27.0"),
    FluxExtensionRelease("1.6.4", "February 2023", "0.37.0", "0.23.0", "0.27.0"),
    FluxExtensionRelease("1.7.0", "March 2023", "0.39.0", "0.24.0", "0.29.0"),
    FluxExtensionRelease("1.7.3", "April 2023", "0.41.2", "0.26.1", "0.31.0"),
    FluxExtensionRelease("1.7.4", "June 2023", "0.41.2", "0.26.1", "0.31.0"),
    FluxExtensionRelease("1.7.5", "August 2023", "2.0.1", "0.29.1", "0.35.0"),
    FluxExtensionRelease("1.7.6", "August 2023", "2.0.1", "0.29.1", "0.35.0"),
    FluxExtensionRelease("1.7.7", "September 2023", "2.0.1", "0.29.1", "0.35.0"),
    FluxExtensionRelease("1.7.8", "October 2023", "2.1.1", "0.30.0", "0.36.1"),
    FluxExtensionRelease("1.8.0", "October 2023", "2.1.1", "0.30.0", "0.36.1"),
    FluxExtensionRelease("1.8.1", "November 2023", "2.1.2", "0.30.0", "0.36.1"),
    FluxExtensionRelease("1.8.2", "February 2024", "2.1.2", "0.30.0", "0.36.1"),
    FluxExtensionRelease("1.8.3", "March 2024", "2.1.2", "0.30.0", "0.36.1"),
    FluxExtensionRelease("1.8.4", "April 2024", "2.1.2", "0.30.0", "0.36.1"),
    FluxExtensionRelease("1.9.1", "April 2024", "2.1.2", "0.30.0", "0.36.1"),
    FluxExtensionRelease("1.10.0", "June 2024", "2.1.2", "0.30.0", "0.36.1"),
    FluxExtensionRelease("1.11.1", "August 2024", "2.3.0", "0.32.0", "0.38.0"),
    FluxExtensionRelease("1.12.0", "September 2024", "2.3.0", "0.32.0", "0.38.0"),
    FluxExtensionRelease("1.13.0", "October 2024", "2.4.0", "0.33.0", "0.39.0"),
    FluxExtensionRelease("1.13.1", "October 2024", "2.4.0", "0.33.0", "0.39.0"),
    FluxExtensionRelease("1.14.1", "January 2025", "2.4.0", "0.33.0", "0.39.0"),
    FluxExtensionRelease("1.15.1", "February 2025", "2.4.0", "0.33.0", "0.39.0"),
    FluxExtensionRelease("1.15.2", "May 2025", "2.4.0", "0.33.0", "0.39.0"),
    FluxExtensionRelease("1.16.1", "March 2025", "2.5.1", "0.34.0", "0.40.0"),
    FluxExtensionRelease("1.16.2", "March 2025", "2.5.1", "0.34.0", "0.40.0"),
    FluxExtensionRelease("1.16.3", "May 2025", "2.5.1", "0.34.0", "0.40.0"),
    FluxExtensionRelease("1.16.8", "June 2025", "2.5.1", "0.34.0", "0.40.0"),
    FluxExtensionRelease("1.16.12", "July 2025", "2.5.1", "0.34.0", "0.40.0"),
    FluxExtensionRelease("1.17.2", "August 2025", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.17.3", "September 2025", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.18.2", "October 2025", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.18.4", "November 2025", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.18.5", "December 2025", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.19.5", "February 2026", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.20.4", "March 2026", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.21.0", "April 2026", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.21.1", "April 2026", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.22.1", "May 2026", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.22.2", "May 2026", "2.6.4", "0.35.2", "0.41.2"),
    FluxExtensionRelease("1.23.0", "June 2026", "2.7.5", "1.0.4", "1.0.4"),
    FluxExtensionRelease("1.23.1", "June 2026", "2.7.5", "1.0.4", "1.0.4"),
    FluxExtensionRelease("1.23.3", "July 2026", "2.7.5", "1.0.4", "1.0.4"),
    FluxExtensionRelease("1.24.0", "July 2026", "2.7.5", "1.0.4", "1.0.4"),
    FluxExtensionRelease("1.24.1", "August 2026", "2.7.5", "1.0.4", "1.0.4"),
)


def version_tuple(version: str) -> tuple[int, ...]:
    """`1.16.3` -> (1, 16, 3); a leading `v` and a build suffix (`-13`) are ignored."""
    core = version.strip().removeprefix("v").split("-", 1)[0].split("+", 1)[0]
    parts: list[int] = []
    for part in core.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def release_for(extension_version: str) -> FluxExtensionRelease | None:
    """The release an extension version runs: the newest listed release not newer than it.

    Unlisted patch versions (the notes skip some) ship what the listed one before them ships; a
    version newer than the newest listed one is taken to ship that one's controllers. None for a
    version older than the table (or unparsable).
    """
    wanted = version_tuple(extension_version)
    if not wanted:
        return None
    found: FluxExtensionRelease | None = None
    for release in RELEASES:
        if version_tuple(release.version) <= wanted:
            found = release
    return found


def _served_by_reflector(controller: str) -> frozenset[str]:
    version = version_tuple(controller)
    if version >= (1, 2, 0):
        return frozenset({API_V1})
    if version >= (1, 0, 0):
        return frozenset({API_V1, API_V1BETA2})
    if version >= (0, 25, 0):
        return frozenset({API_V1BETA1, API_V1BETA2})
    if version >= (0, 23, 0):
        return frozenset({API_V1BETA1})
    return _ALPHAS_AND_V1BETA1


def _served_by_automation(controller: str) -> frozenset[str]:
    version = version_tuple(controller)
    if version >= (1, 2, 0):
        return frozenset({API_V1})
    if version >= (1, 0, 0):
        return frozenset({API_V1, API_V1BETA2})
    if version >= (0, 38, 0):
        return frozenset({API_V1BETA1, API_V1BETA2})
    if version >= (0, 27, 0):
        return frozenset({API_V1BETA1})
    return _ALPHAS_AND_V1BETA1


def served_api_versions(extension_version: str, kind: str) -> frozenset[str]:
    """The `image.toolkit.fluxcd.io` versions of `kind` a cluster with this extension serves."""
    release = release_for(extension_version)
    if release is None:
        return frozenset()
    if kind == "ImageUpdateAutomation":
        return _served_by_automation(release.image_automation_controller)
    if kind in ("ImagePolicy", "ImageRepository"):
        return _served_by_reflector(release.image_reflector_controller)
    return frozenset()


def serves(extension_version: str, kind: str, api_version: str) -> bool:
    return api_version in served_api_versions(extension_version, kind)


def supports_policy_suspend(extension_version: str) -> bool:
    """Whether ImagePolicy `spec.suspend` exists (IRC >= v1.0.0); older CRDs prune the field."""
    release = release_for(extension_version)
    return release is not None and version_tuple(release.image_reflector_controller) >= (1, 0, 0)


def supports_digest_reflection(extension_version: str) -> bool:
    """Whether ImagePolicy `spec.digestReflectionPolicy` exists (IRC >= v0.35.0)."""
    release = release_for(extension_version)
    return release is not None and version_tuple(release.image_reflector_controller) >= (0, 35, 0)


def supports_digest_setter(extension_version: str) -> bool:
    """Whether a `<ns>:<policy>:digest` setter marker is understood (IAC >= v0.41.0)."""
    release = release_for(extension_version)
    return release is not None and version_tuple(release.image_automation_controller) >= (0, 41, 0)


@dataclass(frozen=True)
class UnservedObject:
    """An image object the cluster cannot store: its kind is not served in its API version."""

    kind: str
    namespace: str
    name: str
    api_version: str
    path: str

    @property
    def no_match(self) -> str:
        """The RESTMapper's error (k8s.io/apimachinery `NoKindMatchError`)."""
        return f'no matches for kind "{self.kind}" in version "{self.api_version}"'


def _kind_of(obj: ImageRepository | ImagePolicy | ImageUpdateAutomation) -> str:
    if isinstance(obj, ImageRepository):
        return "ImageRepository"
    if isinstance(obj, ImagePolicy):
        return "ImagePolicy"
    return "ImageUpdateAutomation"


def unserved_objects(extension_version: str, objects: ImageObjects) -> list[UnservedObject]:
    """The objects of `objects` a cluster with this extension cannot apply, in Flux's apply order.

    fluxcd/pkg `ssa/sort.go` orders objects whose kinds are not in its fixed list by group, then
    kind, then namespace, then name, which for the three image kinds is ImagePolicy,
    ImageRepository, ImageUpdateAutomation.
    """
    found: list[UnservedObject] = []
    everything: Iterable[ImageRepository | ImagePolicy | ImageUpdateAutomation] = (
        *objects.repositories,
        *objects.policies,
        *objects.automations,
    )
    for obj in everything:
        kind = _kind_of(obj)
        if not serves(extension_version, kind, obj.api_version):
            found.append(UnservedObject(kind, obj.namespace, obj.name, obj.api_version, obj.path))
    return sorted(found, key=lambda item: (item.kind, item.namespace, item.name))


def dry_run_error(unserved: UnservedObject) -> str:
    """kustomize-controller's Ready message when applying fails on an unserved kind.

    The trailing newline is Flux's: the apply error is followed by the (here empty) change log.
    """
    return f"{unserved.kind}/{unserved.namespace}/{unserved.name} dry-run failed: {unserved.no_match}\n"
