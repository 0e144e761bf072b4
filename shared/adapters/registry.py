"""The container registry's tags through ACR's data plane (`azure-containerregistry`).

Flux's image-reflector-controller lists every tag of a repository and applies the policy to all
of them, so the verdict does the same: every page of `list_tag_properties`, at the largest page
size ACR serves, because the number of round trips is most of a verdict's latency. The client (and
its Entra-to-ACR token exchange, which the SDK caches) is built once per worker in
`shared.adapters.clients`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.errors import from_azure_error

if TYPE_CHECKING:
    from azure.containerregistry import ContainerRegistryClient

# ACR returns at most this many tags per page (`n` of its `_tags` API); fewer pages, fewer round trips.
TAGS_PER_PAGE = 1000


class AcrTagLister:
    """A `TagLister` over one registry."""

    def __init__(self, *, client: ContainerRegistryClient) -> None:
        self._client = client

    def list_tags(self, *, repository: str) -> Sequence[str]:
        from azure.core.exceptions import AzureError

        try:
            return [
                str(tag.name)
                for tag in self._client.list_tag_properties(repository, results_per_page=TAGS_PER_PAGE)
            ]
        except AzureError as exc:
            raise from_azure_error(exc, what=f"list the tags of {repository}") from exc
