"""The `vssps` lab service: vssps.dev.azure.com's PAT Lifecycle API, and the operator's Entra authority.

A listener of its own, like the real host, so the app is configured with a separate
`FLUXFLEET_DEVOPS_VSSPS_URL` and appends `/{org}/_apis/tokens/pats` itself. The PATs are the
organization's (the `devops` service's store), so a PAT created here clones at once and one revoked
here is refused by the next `git fetch`. The same HTTPS listener serves the operator's sign-in
(`lab.identity.entra`), because MSAL insists on an https authority and the identity endpoint is http.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab.core.service import LabService
from lab.identity.entra import EntraAuthority
from lab.vssps.models import PatLifecycleBackend
from lab.vssps.responses import PatsResponses, ado_errors

if TYPE_CHECKING:
    from aiohttp import web

    from lab.devops.service import DevOpsService
    from lab.server import Lab

_PATS_ROUTE = "/{org}/_apis/tokens/pats"


class VsspsService(LabService):
    name = "vssps"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.entra = EntraAuthority(lab)
        self._responses: PatsResponses | None = None

    def _pats_responses(self) -> PatsResponses:
        # Built on first use: the devops service (which owns the PAT store) is constructed first,
        # but only `lab.services` tells us it exists.
        if self._responses is None:
            devops: DevOpsService = self.lab.service("devops")
            backend = PatLifecycleBackend(pats=devops.pats, clock=self.lab.clock, org=devops.org)
            self._responses = PatsResponses(devops=devops, backend=backend, tenant_id=self.lab.tenant_id)
        return self._responses

    def add_routes(self, app: web.Application) -> None:
        self.entra.add_routes(app)
        responses = self._pats_responses()
        for route in (_PATS_ROUTE, _PATS_ROUTE.replace("tokens/pats", "Tokens/Pats")):
            app.router.add_post(route, ado_errors(responses.create_pat))
            app.router.add_get(route, ado_errors(responses.get_or_list_pats))
            app.router.add_put(route, ado_errors(responses.update_pat))
            app.router.add_delete(route, ado_errors(responses.revoke_pat))

    def describe(self) -> dict[str, Any]:
        return {
            "endpoints": {"vssps": self.endpoint},
            "env": {"FLUXFLEET_DEVOPS_VSSPS_URL": self.endpoint},
            **self.entra.describe(self.endpoint),
        }
