"""ARM's errors: one class per error code, each knowing its HTTP status and rendering ARM's envelope.

Every failure the emulated ARM returns goes through here, so the codes, statuses and message wording
live in one catalogue (after Azurite's). Messages copy ARM's own phrasing where it is known, since
clients and people grep for them; none ever contains a token or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, NotRequired, TypedDict

# The audiences ARM accepts, in the order its error message lists them.
ARM_ALLOWED_AUDIENCES = (
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
)
_AUTHORIZATION_URI = "https://login.windows.net/"


class ErrorDetail(TypedDict):
    code: str
    message: str
    target: NotRequired[str]


class ErrorEnvelope(TypedDict):
    error: ErrorDetail


class ArmError(Exception):
    """An ARM error response; `status` and `code` are fixed per subclass."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "BadRequest"

    def __init__(
        self, message: str, *, headers: Mapping[str, str] | None = None, target: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.target = target

    def envelope(self) -> ErrorEnvelope:
        detail = ErrorDetail(code=self.code, message=self.message)
        if self.target is not None:
            detail["target"] = self.target
        return ErrorEnvelope(error=detail)


# --- 400 ------------------------------------------------------------------------------------------
class MissingApiVersionParameter(ArmError):
    code = "MissingApiVersionParameter"

    def __init__(self) -> None:
        super().__init__("The api-version query parameter (?api-version=) is required for all requests.")


class NoRegisteredProviderFound(ArmError):
    """ARM's answer to an api-version the resource type does not have."""

    code = "NoRegisteredProviderFound"

    def __init__(
        self, *, api_version: str, resource_type: str, supported: Sequence[str], location: str
    ) -> None:
        super().__init__(
            f"No registered resource provider found for location '{location}' and API version "
            f"'{api_version}' for type '{resource_type}'. The supported api-versions are "
            f"'{', '.join(supported)}'. The supported locations are '{location}'."
        )


class InvalidRequestContent(ArmError):
    """The body is not JSON, or a field has the wrong JSON type."""

    code = "InvalidRequestContent"

    def __init__(self, problem: str, *, path: str = "") -> None:
        where = f" Path '{path}'." if path else ""
        super().__init__(
            f"The request content was invalid and could not be deserialized: '{problem}{where}'.",
            target=path or None,
        )


class BadRequest(ArmError):
    """The resource provider's own validation (Microsoft.KubernetesConfiguration)."""

    code = "BadRequest"


class ValidationFailed(ArmError):
    """The Flux RP's own validation as it names it (`(ValidationFailed) Invalid source kind match. ...`,
    quoted from an `az k8s-configuration flux update` answer in gbaeke/quick-guides#2)."""

    code = "ValidationFailed"


class FluxExtensionNotInstalled(ValidationFailed):
    """A Flux configuration cannot be created where microsoft.flux does not run.

    "The microsoft.flux extension must be installed in the cluster before one or more
    fluxConfigurations can be created" (conceptual-gitops-flux2.md, quoted in MicrosoftDocs/azure-docs#86695).
    The RP's message for it is not published; this one is the lab's, after the CLI's own check
    (azure-cli-extensions k8s-configuration `FLUX_EXTENSION_NOT_SUCCEEDED_OR_CREATING_ERROR`).
    """

    def __init__(self, cluster: str, state: str | None) -> None:
        found = "is not installed" if state is None else f"is in the '{state}' state"
        super().__init__(
            f"The 'microsoft.flux' extension {found} on the cluster '{cluster}'. The extension must be "
            "installed and in a 'Succeeded' state before Flux configurations can be created.",
            target="properties",
        )


class InvalidResourceType(ArmError):
    code = "InvalidResourceType"

    def __init__(self, *, resource_type: str, namespace: str, api_version: str) -> None:
        super().__init__(
            f"The resource type '{resource_type}' could not be found in the namespace "
            f"'{namespace}' for api version '{api_version}'."
        )


# --- 401 (with ARM's WWW-Authenticate challenge) ------------------------------------------------
def _challenge(description: str) -> dict[str, str]:
    return {
        "WWW-Authenticate": f'Bearer authorization_uri="{_AUTHORIZATION_URI}", error="invalid_token", '
        f'error_description="{description}"'
    }


class AuthenticationFailed(ArmError):
    status = 401
    code = "AuthenticationFailed"

    @classmethod
    def missing_header(cls) -> AuthenticationFailed:
        return cls(
            "Authentication failed. The 'Authorization' header is missing.",
            headers=_challenge("The authentication failed because of missing 'Authorization' header."),
        )

    @classmethod
    def malformed_header(cls) -> AuthenticationFailed:
        return cls(
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            headers=_challenge("The authentication failed because of malformed 'Authorization' header."),
        )


class InvalidAuthenticationToken(ArmError):
    status = 401
    code = "InvalidAuthenticationToken"

    def __init__(self) -> None:
        super().__init__("The access token is invalid.", headers=_challenge("The access token is invalid."))


class InvalidAuthenticationTokenAudience(ArmError):
    status = 401
    code = "InvalidAuthenticationTokenAudience"

    def __init__(self, audience: str) -> None:
        allowed = ",".join(f"'{item}'" for item in ARM_ALLOWED_AUDIENCES)
        message = (
            f"The access token has been obtained for wrong audience or resource '{audience}'. "
            f"It should exactly match with one of the allowed audiences {allowed}."
        )
        super().__init__(message, headers=_challenge(message))


# --- 404 / 405 ------------------------------------------------------------------------------------
class SubscriptionNotFound(ArmError):
    status = 404
    code = "SubscriptionNotFound"

    def __init__(self, subscription: str) -> None:
        super().__init__(f"The subscription '{subscription}' could not be found.")


class ResourceGroupNotFound(ArmError):
    status = 404
    code = "ResourceGroupNotFound"

    def __init__(self, group: str) -> None:
        super().__init__(f"Resource group '{group}' could not be found.")


class ResourceNotFound(ArmError):
    status = 404
    code = "ResourceNotFound"

    def __init__(self, *, resource_type: str, name: str, group: str) -> None:
        super().__init__(
            f"The Resource '{resource_type}/{name}' under resource group '{group}' was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        )


class ExtensionNotFound(ResourceNotFound):
    """The extensions RP's own 404: `{"code": "ResourceNotFound", "message": "Extension instance with
    name 'flux' not found."}` (a deployment error quoted in Azure/AKS-Construction#291)."""

    def __init__(self, name: str) -> None:
        # Skips ResourceNotFound's constructor: its message is ARM's generic one, not the RP's.
        ArmError.__init__(self, f"Extension instance with name '{name}' not found.")


class MethodNotAllowed(ArmError):
    status = 405
    code = "MethodNotAllowed"

    def __init__(self, method: str) -> None:
        super().__init__(f"The requested resource does not support http method '{method}'.")


# --- 429 ------------------------------------------------------------------------------------------
class SubscriptionRequestsThrottled(ArmError):
    status = 429
    code = "SubscriptionRequestsThrottled"

    def __init__(self, *, operation: str, subscription: str, actor: str, retry_after_s: int) -> None:
        super().__init__(
            f"Number of '{operation}' requests for subscription '{subscription}' actor '{actor}' exceeded. "
            f"Please try again after '{retry_after_s}' seconds after additional tokens are available. "
            "Refer to https://aka.ms/arm-throttling",
            headers={"Retry-After": str(retry_after_s)},
        )
