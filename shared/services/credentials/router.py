"""Both credentials behind one door: events, the daily check and the map, routed by Key Vault secret.

Issue 15 gives the fleet two Git credentials, each its own Key Vault secret and its own
`CredentialService` (shared.services.credentials.service): the fleet's read-only PAT and the runner's
write PAT. Key Vault raises events for every secret of the vault on one Event Grid topic, so the secret
name decides which service handles one; the daily check runs both; `GET /api/credentials` shows both.
A deployment without the automation secret (no runner yet) keeps the fleet credential working: the
automation part reports why it is not there instead of failing the whole map.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidInput, PermanentError, TransientError
from shared.models.credentials import CredentialPurpose
from shared.services.credentials.keyvault_events import SecretEvent
from shared.services.credentials.service import CredentialService, RolloutRequest, RolloutStarted

log = logging.getLogger("fluxfleet.credentials")


@dataclass
class CredentialRouter:
    """The credential services by purpose (the fleet one is required, the automation one optional)."""

    services: Mapping[CredentialPurpose, CredentialService]

    def service(self, purpose: CredentialPurpose) -> CredentialService:
        found = self.services.get(purpose)
        if found is None:
            raise InvalidInput("purpose", f"the {purpose.value} credential is not configured here")
        return found

    def for_secret(self, secret_name: str) -> CredentialService | None:
        wanted = secret_name.strip().lower()
        return next(
            (s for s in self.services.values() if s.settings.secret_name.lower() == wanted),
            None,
        )

    def start_rollout(self, request: RolloutRequest) -> RolloutStarted:
        return self.service(request.purpose).start_rollout(request)

    def on_secret_event(self, event: SecretEvent) -> str:
        service = self.for_secret(event.secret_name)
        if service is None:
            names = ", ".join(sorted(s.settings.secret_name for s in self.services.values()))
            return f"ignored: secret {event.secret_name} is none of {names}"
        return f"{service.settings.purpose.value}: {service.on_secret_event(event)}"

    def run_scheduled_check(self) -> dict[str, Any]:
        """Each credential's daily check; one failing (e.g. no automation secret yet) spares the other."""
        outcome: dict[str, Any] = {}
        transient: TransientError | None = None
        for purpose, service in self.services.items():
            try:
                outcome[purpose.value] = service.run_scheduled_check()
            except TransientError as exc:
                transient = exc
                outcome[purpose.value] = {"error": exc.message}
            except PermanentError as exc:
                log.error("scheduled check of the %s credential failed: %s", purpose.value, exc.message)
                outcome[purpose.value] = {"error": exc.message}
        if transient is not None:
            raise transient  # the timer's invocation fails visibly; the next occurrence runs it again
        return outcome

    def report(self) -> dict[str, Any]:
        """The fleet credential's map at the top level (as before issue 15), the runner's under
        `automation` — or why it is missing."""
        body = self.service(CredentialPurpose.FLEET).report()
        automation = self.services.get(CredentialPurpose.AUTOMATION)
        if automation is None:
            body["automation"] = {"configured": False, "reason": "no automation credential is configured"}
            return body
        try:
            body["automation"] = automation.report()
        except PermanentError as exc:  # e.g. the setting or the secret is missing; transient ones raise
            body["automation"] = {"configured": False, "reason": exc.message}
        return body
