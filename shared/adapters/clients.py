"""Azure SDK clients, built once per worker and on first use.

The Functions host imports `function_app` on every cold start; importing the Azure SDKs there would
cost most of a second (see bench/cold_start.py), so nothing here runs at import time: each client is
created the first time a capability needs it and then reused by every invocation in this worker.
Tests replace the whole `AzureClients` through one fixture, never by patching import paths.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from shared.config import Settings

if TYPE_CHECKING:
    from azure.containerregistry import ContainerRegistryClient
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.keyvault.secrets import SecretClient
    from azure.storage.queue import QueueServiceClient

# The ARM management clients the app uses; `AzureClients.arm_client` builds them for the ARM boundary.
ArmClientKind = Literal["connected_clusters", "flux_configurations", "extensions"]

# The SDKs log every request at INFO; fluxfleet's own logs carry what matters.
for _name in ("azure", "azure.core.pipeline.policies.http_logging_policy", "azure.identity", "msal"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# azure-core retries 429/5xx honouring Retry-After; a bounded count keeps one panel from holding a
# batch for minutes. Pacing (shared.services.fleet.pacing, applied by shared.adapters.arm_fleet) is what
# keeps 429s rare in the first place.
ARM_RETRY: dict[str, Any] = {"retry_total": 6, "retry_backoff_factor": 0.5, "retry_backoff_max": 30}
# Connection and read timeouts (seconds) for every client: a hung call must not eat a function's time.
TIMEOUTS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60}


class AzureClients:
    def __init__(self, settings: Settings, *, credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self._credential = credential

    @cached_property
    def credential(self) -> TokenCredential:
        if self._credential is not None:
            return self._credential
        from azure.identity import DefaultAzureCredential

        # Interactive and developer-tool credentials never apply inside the Functions host.
        return DefaultAzureCredential(
            exclude_interactive_browser_credential=True, exclude_visual_studio_code_credential=True
        )

    def arm_client(self, kind: ArmClientKind, subscription_id: str, *, per_retry_policies: list[Any]) -> Any:
        """A new ARM management client for one subscription. Only the ARM boundary
        (`shared.adapters.arm_fleet.ArmFleet`) calls this, once per kind and subscription, handing in the
        policy that paces and observes every request."""
        options: dict[str, Any] = {
            "base_url": self.settings.arm_endpoint,
            "per_retry_policies": per_retry_policies,
            **ARM_RETRY,
            **TIMEOUTS,
        }
        if kind == "connected_clusters":
            from azure.mgmt.hybridkubernetes import ConnectedKubernetesClient

            return ConnectedKubernetesClient(self.credential, subscription_id, **options)
        if kind == "flux_configurations":
            from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
                KubernetesConfigurationFluxConfigurationsMgmtClient,
            )

            return KubernetesConfigurationFluxConfigurationsMgmtClient(
                self.credential, subscription_id, **options
            )
        from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient

        return KubernetesConfigurationExtensionsMgmtClient(self.credential, subscription_id, **options)

    def resource_graph_client(self, *, api_version: str, per_retry_policies: list[Any]) -> Any:
        """A new Resource Graph client (one per worker, built by `shared.adapters.resource_graph`).
        Resource Graph is a resource provider behind ARM's endpoint, so it shares ARM's base URL."""
        from azure.mgmt.resourcegraph import ResourceGraphClient

        return ResourceGraphClient(
            self.credential,
            base_url=self.settings.arm_endpoint,
            api_version=api_version,
            per_retry_policies=per_retry_policies,
            **ARM_RETRY,
            **TIMEOUTS,
        )

    @cached_property
    def secrets(self) -> SecretClient:
        from azure.keyvault.secrets import SecretClient

        return SecretClient(
            self.settings.require("keyvault_url"),
            self.credential,
            verify_challenge_resource=self.settings.keyvault_verify_challenge_resource,
            **TIMEOUTS,
        )

    @cached_property
    def registry(self) -> ContainerRegistryClient:
        from azure.containerregistry import ContainerRegistryClient

        return ContainerRegistryClient(
            self.settings.require("acr_endpoint"),
            self.credential,
            audience=self.settings.acr_audience,
            **TIMEOUTS,
        )

    @cached_property
    def tables(self) -> TableServiceClient:
        from azure.data.tables import TableServiceClient

        return TableServiceClient.from_connection_string(
            self.settings.require("storage_connection"), **TIMEOUTS
        )

    @cached_property
    def queues(self) -> QueueServiceClient:
        """The queue service. Callers take queue clients with `get_queue_client(name,
        message_encode_policy=TextBase64EncodePolicy())`: the Functions host's queue trigger expects base64
        messages (`messageEncoding`), and `get_queue_client` does not pass a service-level policy on."""
        from azure.storage.queue import QueueServiceClient

        return QueueServiceClient.from_connection_string(
            self.settings.require("storage_connection"), **TIMEOUTS
        )
