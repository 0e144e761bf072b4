"""Who is calling the lab's Azure DevOps: a PAT (HTTP Basic) or an Entra token (Bearer).

Azure DevOps accepts, on both the Git endpoints and the REST API, a PAT as the password of HTTP Basic
(any user name) or a Microsoft Entra access token for its resource `499b84ac-1321-427f-aa17-
267ca6975798` belonging to a member of the organization (users, and service principals / managed
identities that were added with at least Basic access). A PAT must be unexpired and unrevoked by the
lab clock, issued for this organization (or all of the owner's), and carry a scope that covers the
operation: `vso.code` to read, `vso.code_write` (or `vso.code_manage`, `vso.code_full`, full access)
to push. Failures are 401 with the challenges Azure DevOps sends (so git reports "Authentication
failed"), except a valid credential that may read but not write, which gets the 403 Azure DevOps
gives a push it refuses (`GitContributeRefused`, rendered by `errors.Forbidden`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lab.core.tokens import DEVOPS_AUDIENCE, Principal
from lab.devops.errors import GitContributeRefused, Unauthorized

if TYPE_CHECKING:
    from aiohttp import web

    from lab.core.clock import LabClock
    from lab.core.tokens import TokenStore
    from lab.devops.pats import PatRecord, PatStore

NeededScope = Literal["vso.code", "vso.code_write"]

_ANONYMOUS = "TF400813: Resource not available for anonymous access. Client authentication required."


@dataclass(frozen=True)
class Caller:
    principal: Principal
    pat: PatRecord | None  # None: an Entra token

    @property
    def display_name(self) -> str:
        return self.principal.name


class DevOpsAuthenticator:
    def __init__(
        self,
        *,
        org: str,
        pats: PatStore,
        tokens: TokenStore,
        clock: LabClock,
        tenant_id: str,
        members: dict[str, Principal],
    ) -> None:
        self.org = org
        self.pats = pats
        self.tokens = tokens
        self.clock = clock
        self.tenant_id = tenant_id
        self.members = members  # object id -> principal: the organization's users and identities

    def authenticate(
        self, request: web.Request, *, needed_scope: NeededScope, require_username: bool = False
    ) -> Caller:
        """The caller, or `Unauthorized` (401) / `Forbidden` (403)."""
        host = request.host
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "basic":
            return self._basic(
                credential.strip(), needed_scope=needed_scope, host=host, require_username=require_username
            )
        if scheme.lower() == "bearer":
            principal = self.tokens.authenticate(header, DEVOPS_AUDIENCE)
            if principal is None:
                raise self._unauthorized(_ANONYMOUS, host)
            if principal.object_id not in self.members:
                raise self._unauthorized(
                    f"TF400813: The user '{principal.object_id}' is not authorized to access this resource.",
                    host,
                )
            return Caller(principal, None)
        raise self._unauthorized(_ANONYMOUS, host)

    def _basic(
        self, credential: str, *, needed_scope: NeededScope, host: str, require_username: bool
    ) -> Caller:
        try:
            decoded = base64.b64decode(credential, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise self._unauthorized(_ANONYMOUS, host) from exc
        username, _, token = decoded.partition(":")
        if not token or (require_username and not username):
            raise self._unauthorized(_ANONYMOUS, host)
        record = self.pats.find(token)
        if record is None:
            raise self._unauthorized("Access Denied: The Personal Access Token used is not valid.", host)
        status = record.status(self.clock.now())
        if status == "revoked":
            raise self._unauthorized("Access Denied: The Personal Access Token used has been revoked.", host)
        if status == "expired":
            raise self._unauthorized("Access Denied: The Personal Access Token used has expired.", host)
        if record.org is not None and record.org.lower() != self.org.lower():
            raise self._unauthorized(
                f"TF400813: The Personal Access Token used is not valid for the organization '{self.org}'.",
                host,
            )
        if record.owner.object_id not in self.members:
            raise self._unauthorized(
                f"TF400813: The user '{record.owner.object_id}' is not authorized to access this resource.",
                host,
            )
        if self.pats.check(token, needed_scope, self.org) is None:
            if needed_scope == "vso.code_write" and self.pats.check(token, "vso.code", self.org) is not None:
                raise GitContributeRefused(identity=record.owner.name)
            raise self._unauthorized(
                f"TF400813: The Personal Access Token's scopes ({record.scope}) do not allow {needed_scope}.",
                host,
            )
        return Caller(record.owner, record)

    def _unauthorized(self, message: str, host: str) -> Unauthorized:
        return Unauthorized(message, host=host, tenant_id=self.tenant_id)
