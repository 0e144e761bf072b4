"""Azure DevOps' errors as the lab answers them (shared by `devops` and `vssps`).

Azure DevOps REST errors are .NET exceptions serialised as a "wrapped exception":
`{"$id":"1","innerException":null,"message":...,"typeName":...,"typeKey":...,"errorCode":0,
"eventId":3000}`. The `azure-devops` SDK deserialises exactly that into `AzureDevOpsServiceError`
(whose `type_key` callers branch on), so every REST error here renders that envelope with the status
and the type names the real service uses. Authentication failures are different on the real service:
a 401 with a plain-text body (the SDK then raises `AzureDevOpsAuthenticationError`) and the
`WWW-Authenticate` challenges git needs to ask for credentials; `Unauthorized` renders that.
Messages never contain a token.
"""

from __future__ import annotations

import json
import uuid
from typing import ClassVar

from aiohttp import web

# Every wrapped exception the REST API returns carries this event id ("general REST error").
_EVENT_ID = 3000


def ado_headers(api_version: str | None = None) -> dict[str, str]:
    """Headers every Azure DevOps response carries (the SDK keeps `X-TFS-Session` for the next call)."""
    content_type = "application/json; charset=utf-8"
    if api_version:
        content_type += f"; api-version={api_version}"
    return {
        "Content-Type": content_type,
        "ActivityId": str(uuid.uuid4()),
        "X-TFS-ProcessId": str(uuid.uuid4()),
        "X-VSS-E2EID": str(uuid.uuid4()),
    }


class AdoError(Exception):
    """A REST error rendered as Azure DevOps' wrapped exception."""

    status: ClassVar[int] = 400
    type_key: ClassVar[str] = "VssServiceException"
    type_name: ClassVar[str] = (
        "Microsoft.VisualStudio.Services.Common.VssServiceException, Microsoft.VisualStudio.Services.Common"
    )

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, object]:
        return {
            "$id": "1",
            "innerException": None,
            "message": self.message,
            "typeName": self.type_name,
            "typeKey": self.type_key,
            "errorCode": 0,
            "eventId": _EVENT_ID,
        }

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=json.dumps(self.body()), headers=ado_headers())


# --- Git --------------------------------------------------------------------------------------------
class GitItemNotFound(AdoError):
    status = 404
    type_key = "GitItemNotFoundException"
    # Its assembly is Git.Server, like the other Git exceptions (as captured responses name it).
    type_name = (
        "Microsoft.TeamFoundation.Git.Server.GitItemNotFoundException, Microsoft.TeamFoundation.Git.Server"
    )


class GitUnresolvableToCommit(AdoError):
    status = 404
    type_key = "GitUnresolvableToCommitException"
    type_name = (
        "Microsoft.TeamFoundation.Git.Server.GitUnresolvableToCommitException, "
        "Microsoft.TeamFoundation.Git.Server"
    )


class GitRepositoryNotFound(AdoError):
    status = 404
    type_key = "GitRepositoryNotFoundException"
    type_name = (
        "Microsoft.TeamFoundation.Git.Server.GitRepositoryNotFoundException, "
        "Microsoft.TeamFoundation.Git.Server"
    )


class ProjectDoesNotExist(AdoError):
    status = 404
    type_key = "ProjectDoesNotExistWithNameException"
    type_name = (
        "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, "
        "Microsoft.TeamFoundation.Core.WebApi"
    )


class InvalidArgumentValue(AdoError):
    status = 400
    type_key = "InvalidArgumentValueException"
    type_name = (
        "Microsoft.TeamFoundation.SourceControl.WebServer.InvalidArgumentValueException, "
        "Microsoft.TeamFoundation.SourceControl.WebServer"
    )


# --- API versions -------------------------------------------------------------------------------
class VssInvalidPreviewVersion(AdoError):
    status = 400
    type_key = "VssInvalidPreviewVersionException"
    type_name = (
        "Microsoft.VisualStudio.Services.WebApi.VssInvalidPreviewVersionException, "
        "Microsoft.VisualStudio.Services.WebApi"
    )


class VssVersionOutOfRange(AdoError):
    status = 400
    type_key = "VssVersionOutOfRangeException"
    type_name = (
        "Microsoft.VisualStudio.Services.WebApi.VssVersionOutOfRangeException, "
        "Microsoft.VisualStudio.Services.WebApi"
    )


class VssVersionNotSpecified(AdoError):
    status = 400
    type_key = "VssVersionNotSpecifiedException"
    type_name = (
        "Microsoft.VisualStudio.Services.WebApi.VssVersionNotSpecifiedException, "
        "Microsoft.VisualStudio.Services.WebApi"
    )


class VssInvalidApiVersion(AdoError):
    status = 400
    type_key = "VssInvalidApiVersionException"
    type_name = (
        "Microsoft.VisualStudio.Services.WebApi.VssInvalidApiVersionException, "
        "Microsoft.VisualStudio.Services.WebApi"
    )


# --- access -----------------------------------------------------------------------------------------
class InvalidAccess(AdoError):
    """What the PAT Lifecycle API answers a PAT or a service principal (HTTP 403)."""

    status = 403
    type_key = "InvalidAccessException"
    type_name = (
        "Microsoft.TeamFoundation.Framework.Server.InvalidAccessException, "
        "Microsoft.TeamFoundation.Framework.Server"
    )


class SessionTokenNotFound(AdoError):
    status = 404
    type_key = "SessionTokenNotFoundException"
    type_name = (
        "Microsoft.VisualStudio.Services.DelegatedAuthorization.SessionTokenNotFoundException, "
        "Microsoft.VisualStudio.Services.WebApi"
    )


class OrganizationNotFound(AdoError):
    status = 404
    type_key = "HostDoesNotExistException"
    type_name = (
        "Microsoft.TeamFoundation.Framework.Server.HostDoesNotExistException, "
        "Microsoft.TeamFoundation.Framework.Server"
    )


class Unauthorized(Exception):
    """HTTP 401: plain text and the challenges Azure DevOps sends (Bearer for Entra, Basic for PATs)."""

    def __init__(self, message: str, *, host: str, tenant_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.tenant_id = tenant_id

    def response(self) -> web.Response:
        response = web.Response(status=401, text=self.message, content_type="text/plain")
        response.headers.add(
            "WWW-Authenticate", f"Bearer authorization_uri=https://login.microsoftonline.com/{self.tenant_id}"
        )
        response.headers.add("WWW-Authenticate", f'Basic realm="https://{self.host}/"')
        response.headers.add("WWW-Authenticate", "TFS-Federated")
        response.headers["X-TFS-FedAuthRealm"] = f"https://{self.host}/"
        # The organization's Entra tenant: Git Credential Manager and `az` discover it from an anonymous
        # request's 401 through this header before they sign in.
        response.headers["X-VSS-ResourceTenant"] = self.tenant_id
        response.headers["ActivityId"] = str(uuid.uuid4())
        return response


class Forbidden(Exception):
    """HTTP 403 in plain text: what git shows when a credential may read but not push."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> web.Response:
        return web.Response(status=403, text=self.message, content_type="text/plain")


def _pkt_line(payload: str) -> str:
    """One Git pkt-line: four hex digits of length (themselves included), then the payload."""
    return f"{len(payload.encode()) + 4:04x}{payload}"


# A pkt-line "flush" packet (length 0000): the end of a section of the smart-HTTP answer.
_FLUSH_PKT = "0000"


class GitContributeRefused(Forbidden):
    """A push (or its ref advertisement) by a credential that may read but not contribute.

    Azure DevOps' words and shape, as captured from dev.azure.com by users whose push it refused
    (gbrueckl/PowerBI.CICD#2, Azure/AzOps#299: an identity without the Git 'GenericContribute'
    permission): `GET info/refs?service=git-receive-pack` answers **403** with a plain-text body that
    git prints line by line as `remote: ...` before "The requested URL returned error: 403". That
    body starts like a smart-HTTP advertisement — the `# service=git-receive-pack` pkt-line, two
    flush packets, the message as a pkt-line — and ends with the message again as plain text:

        001f# service=git-receive-pack
        0000000000aaTF401027: You need the Git 'GenericContribute' permission to perform this
        action. Details: identity 'Build\\<guid>', scope 'repository'.
        TF401027: You need the Git 'GenericContribute' permission to perform this action. ...

    The captures are of an identity lacking the *permission*; the lab answers the same to a PAT
    lacking the `vso.code_write` *scope*, which is not attested (see lab/docs/devops.md). A POST to
    `git-receive-pack` (a client that skipped the advertisement) gets the message alone.
    """

    def __init__(self, *, identity: str) -> None:
        super().__init__(
            "TF401027: You need the Git 'GenericContribute' permission to perform this action. "
            f"Details: identity '{identity}', scope 'repository'."
        )

    def advertisement_response(self) -> web.Response:
        line = self.message + "\n"
        body = _pkt_line("# service=git-receive-pack\n") + _FLUSH_PKT + _FLUSH_PKT + _pkt_line(line) + line
        return web.Response(status=403, text=body, content_type="text/plain")
