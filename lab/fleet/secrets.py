"""The secrets each panel holds, as ground truth: names, types and keys, never a value.

A panel's workloads start only if the secrets they read are there, so which secrets a panel holds is
part of what the lab must know about it — and what a test takes away to make a panel fail the way a
factory panel does when someone deletes or never bootstraps a secret. Values play no part in
whether a pod starts, so the lab never holds one: a secret here is its namespace, name, type and
key names.

Every panel starts with the seed's required secrets (the seed's table; `kubernetes/README.md` lists
which workload reads which): in `ipc-workloads` `iot-hub-connection` (connectionString),
`log-analytics-connection` (workspaceId, key), `blob-storage-connection` (connectionString) and the
pull secret `acr-pull-secret` (.dockerconfigjson, type kubernetes.io/dockerconfigjson); in
`flux-system` `acr-credentials` (.dockerconfigjson), which the ImageRepositories scan with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

WORKLOAD_NAMESPACE = "ipc-workloads"
FLUX_NAMESPACE = "flux-system"
OPAQUE = "Opaque"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_JSON_KEY = ".dockerconfigjson"
# Secret data keys must be valid config keys (k8s.io/apimachinery validation.IsConfigMapKey):
# alphanumerics, '-', '_' or '.', at most 253 characters.
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
# Object names are DNS-1123 subdomains (lower-case alphanumerics, '-', '.'), at most 253 characters.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAX_NAME = 253


@dataclass(frozen=True)
class PanelSecret:
    namespace: str
    name: str
    type: str
    keys: frozenset[str]

    def describe(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "type": self.type, "keys": sorted(self.keys)}


SEED_SECRETS: tuple[PanelSecret, ...] = (
    PanelSecret(WORKLOAD_NAMESPACE, "iot-hub-connection", OPAQUE, frozenset({"connectionString"})),
    PanelSecret(WORKLOAD_NAMESPACE, "log-analytics-connection", OPAQUE, frozenset({"workspaceId", "key"})),
    PanelSecret(WORKLOAD_NAMESPACE, "blob-storage-connection", OPAQUE, frozenset({"connectionString"})),
    PanelSecret(
        WORKLOAD_NAMESPACE, "acr-pull-secret", DOCKER_CONFIG_JSON, frozenset({DOCKER_CONFIG_JSON_KEY})
    ),
    PanelSecret(FLUX_NAMESPACE, "acr-credentials", DOCKER_CONFIG_JSON, frozenset({DOCKER_CONFIG_JSON_KEY})),
)

SecretKey = tuple[str, str]  # (namespace, name)


class InvalidSecret(ValueError):
    """A secret the Kubernetes API server would refuse (the message names the field)."""


def validated_secret(namespace: str, name: str, secret_type: object, keys: object) -> PanelSecret:
    """A `PanelSecret` from a control call, checked as the API server checks a Secret."""
    for what, value in (("namespace", namespace), ("name", name)):
        if len(value) > _MAX_NAME or not _SUBDOMAIN.match(value):
            raise InvalidSecret(f"{what} {value!r} is not a valid Kubernetes name")
    if secret_type is None:
        secret_type = OPAQUE
    if not isinstance(secret_type, str) or not secret_type:
        raise InvalidSecret("type must be a non-empty string")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise InvalidSecret("keys must be a list of key names")
    bad = [key for key in keys if not _CONFIG_KEY.match(key)]
    if bad:
        raise InvalidSecret(f"keys {bad} are not valid secret keys (alphanumerics, '-', '_' or '.')")
    if secret_type == DOCKER_CONFIG_JSON and DOCKER_CONFIG_JSON_KEY not in keys:
        raise InvalidSecret(f"a {DOCKER_CONFIG_JSON} secret needs the key {DOCKER_CONFIG_JSON_KEY}")
    return PanelSecret(namespace, name, secret_type, frozenset(keys))


class PanelSecrets:
    """Every panel's secrets, by panel name; a panel not touched yet holds exactly the seed's."""

    def __init__(self, seed: Iterable[PanelSecret] = SEED_SECRETS) -> None:
        self._seed = {(secret.namespace, secret.name): secret for secret in seed}
        self._changed: dict[str, dict[SecretKey, PanelSecret]] = {}  # only panels that differ

    def reset(self) -> None:
        """Every panel back to the seed's secrets (a lab reset or a new fleet)."""
        self._changed.clear()

    def of(self, panel: str) -> Mapping[SecretKey, PanelSecret]:
        return self._changed.get(panel.lower(), self._seed)

    def keys_of(self, panel: str) -> dict[SecretKey, frozenset[str]]:
        return {key: secret.keys for key, secret in self.of(panel).items()}

    def delete(self, panel: str, namespace: str, name: str) -> PanelSecret | None:
        held = self._writable(panel)
        return held.pop((namespace, name), None)

    def put(self, panel: str, secret: PanelSecret) -> bool:
        """Create or replace a secret; True when it did not exist."""
        held = self._writable(panel)
        created = (secret.namespace, secret.name) not in held
        held[(secret.namespace, secret.name)] = secret
        return created

    def _writable(self, panel: str) -> dict[SecretKey, PanelSecret]:
        return self._changed.setdefault(panel.lower(), dict(self._seed))


def secrets_truth(store: PanelSecrets, panel: str) -> list[dict[str, Any]]:
    """A panel's secrets for ground truth: names, types and keys (the lab holds no value to show)."""
    return [secret.describe() for _, secret in sorted(store.of(panel).items())]
