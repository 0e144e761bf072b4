"""Whether a panel can pull an image: the lab's registry (`acr`) is the only one a panel reaches.

The manifests name images as `<login server>/ipc/<name>:<tag>`, and the devops service seeds the
repository with the lab ACR's `127.0.0.1:PORT` as the login server (lab/docs/devops.md), the same
host the acr service seeds its repositories and tags under (lab/acr/seed.py). A pull succeeds when
the tag (or digest) is in the registry and the pod has a pull secret to present: the lab's ACR, like
a real one without anonymous pull, refuses an unauthenticated pull. The reasons are for ground truth
only (containerd's wording, shortened); Flux's message names the Deployment, not the image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.acr.errors import AcrError
from lab.fleet.kustomize import split_image

DEFAULT_TAG = "latest"


def image_registry_host(reference: str) -> str:
    """The registry host of an image reference (Docker's rule: the first part, when it looks like a host)."""
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


class LabRegistryImages:
    """`ImageRegistry` (lab.fleet.health) over the lab's ACR."""

    def __init__(
        self,
        *,
        login_server: Callable[[], str],
        has_tag: Callable[[str, str], bool],
        has_digest: Callable[[str, str], bool],
    ) -> None:
        self._login_server = login_server
        self._has_tag = has_tag
        self._has_digest = has_digest

    def pull_problem(self, image: str, *, with_pull_secret: bool) -> str | None:
        host = image_registry_host(image)
        login_server = self._login_server()
        if host != login_server:
            return f'Failed to pull image "{image}": panels reach no registry but the lab\'s ({login_server})'
        if not with_pull_secret:
            return f'Failed to pull image "{image}": unauthorized: authentication required'
        name, tag, digest = split_image(image)
        repository = name[len(host) + 1 :]
        found = (
            self._has_digest(repository, digest) if digest else self._has_tag(repository, tag or DEFAULT_TAG)
        )
        if not found:
            return (
                f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and '
                f'unpack image "{image}": failed to resolve reference "{image}": not found'
            )
        return None


def lab_registry_images(acr: Any) -> LabRegistryImages:
    """The view of the `acr` lab service (`login_server`, `tag_digest`, `backend.get_manifests`)."""

    def has_digest(repository: str, digest: str) -> bool:
        try:
            return any(manifest.digest == digest for manifest in acr.backend.get_manifests(repository))
        except AcrError:  # NameUnknown: no such repository
            return False

    return LabRegistryImages(
        login_server=lambda: str(acr.login_server),
        has_tag=lambda repository, tag: acr.tag_digest(repository, tag) is not None,
        has_digest=has_digest,
    )
