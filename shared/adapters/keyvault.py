"""The Key Vault secret that holds the Flux Git PAT, over `azure-keyvault-secrets` (a `SecretStore`).

Three reads, each as cheap as Key Vault allows: the version list carries attributes and tags but no
value, so listing never touches the PAT; the value is fetched by version only when a preflight probes
it or a worker patches a panel. The vault's `Date` header is kept with every list as "now": days left
are counted on the clock next to the data (see `SecretVersions`).

The operator CLI stores freshly minted PATs through `store_new_version`, with the PAT's expiry as `exp`
and its `authorizationId` as a tag, so the app can later say which PAT is safe to revoke.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from shared.errors import from_azure_error
from shared.models.credentials import SecretVersionId, SecretVersionInfo, SecretVersions

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient, SecretProperties

log = logging.getLogger("fluxfleet.adapters.keyvault")

# Key Vault lists 25 versions a page by default; a quarterly rotation makes this a few years of history
# in one request.
VERSIONS_PAGE_SIZE = 25


class KeyVaultSecretStore:
    """`SecretStore` over one secret of one vault."""

    def __init__(
        self,
        *,
        client: Callable[[], SecretClient],
        secret_name: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        # A factory: the SDK client (and the Key Vault setting it needs) is only required on first use.
        self._client_factory = client
        self._name = secret_name
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def secret_name(self) -> str:
        return self._name

    @property
    def _client(self) -> SecretClient:
        return self._client_factory()

    def list_versions(self) -> SecretVersions:
        from azure.core.exceptions import AzureError

        dates: list[str] = []

        def remember_date(pipeline_response: Any) -> None:
            date = pipeline_response.http_response.headers.get("Date")
            if date:
                dates.append(date)

        try:
            items = list(
                self._client.list_properties_of_secret_versions(
                    self._name, max_page_size=VERSIONS_PAGE_SIZE, raw_response_hook=remember_date
                )
            )
        except AzureError as exc:
            raise from_azure_error(exc, what=f"list versions of Key Vault secret {self._name}") from exc
        # Newest first by `created`; within one second (Key Vault's resolution), later in the list first.
        listed = [_info(item, self._name) for item in items]
        order = sorted(range(len(listed)), key=lambda i: (_created_key(listed[i]), i), reverse=True)
        versions = [listed[i] for i in order]
        if len(versions) > 1 and versions[0].created_on == versions[1].created_on:
            versions = self._latest_first(versions)
        return SecretVersions(
            name=self._name, versions=tuple(versions), observed_at=_observed_at(dates, self._clock)
        )

    def _latest_first(self, versions: list[SecretVersionInfo]) -> list[SecretVersionInfo]:
        """Two versions created in the same second: ask Key Vault which one is the latest.

        `exp`, `created` are whole seconds, so creation order can tie; only an unversioned GET says which
        version Key Vault itself serves as current. Its value is dropped at once.
        """
        from azure.core.exceptions import AzureError

        try:
            latest = self._client.get_secret(self._name).properties.version
        except AzureError:
            return versions  # a disabled latest version cannot be read: keep creation order
        versions.sort(key=lambda v: (_created_key(v), v.version == latest), reverse=True)
        return versions

    def get_version(self, version: SecretVersionId) -> SecretVersionInfo:
        found = self.list_versions().find(version)
        if found is None:
            from shared.errors import NotFound

            raise NotFound(f"Key Vault secret {self._name} has no version {version}", version=version)
        return found

    def read_value(self, version: SecretVersionId) -> str:
        from azure.core.exceptions import AzureError

        try:
            secret = self._client.get_secret(self._name, version)
        except AzureError as exc:
            raise from_azure_error(exc, what=f"read Key Vault secret {self._name} version {version}") from exc
        if secret.value is None:
            from shared.errors import PermanentError

            raise PermanentError(f"Key Vault secret {self._name} version {version} has no value")
        return secret.value


def store_new_version(
    *,
    client: SecretClient,
    secret_name: str,
    value: str,
    expires_on: datetime,
    tags: Mapping[str, str],
    content_type: str = "text/plain",
) -> SecretVersionInfo:
    """Write `value` as a new version (operator CLI); returns its attributes, never the value."""
    from azure.core.exceptions import AzureError

    try:
        secret = client.set_secret(
            secret_name,
            value,
            expires_on=expires_on,
            tags=dict(tags),
            content_type=content_type,
            enabled=True,
        )
    except AzureError as exc:
        raise from_azure_error(exc, what=f"store a new version of Key Vault secret {secret_name}") from exc
    return _info(secret.properties, secret_name)


def _info(item: SecretProperties, name: str) -> SecretVersionInfo:
    return SecretVersionInfo(
        name=item.name or name,
        version=SecretVersionId(item.version or ""),
        enabled=bool(item.enabled),
        expires_on=item.expires_on,
        not_before=item.not_before,
        created_on=item.created_on,
        tags=dict(item.tags or {}),
    )


def _created_key(version: SecretVersionInfo) -> datetime:
    return version.created_on or datetime.min.replace(tzinfo=UTC)


def _observed_at(dates: list[str], clock: Callable[[], datetime]) -> datetime:
    for date in reversed(dates):
        try:
            return parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            log.debug("unparseable Date header from Key Vault: %r", date)
    return clock()
