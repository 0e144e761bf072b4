"""Why each panel is (not) converged: one cause per panel, in Flux's and Arc's own words (issue 13).

The on-call question at 10,000 panels is "which panels are not converged, and why", grouped so that
"37 panels: authentication failed" stands out from "2 panels offline". `classify` answers it for one
panel from what Resource Graph (or ARM) shows: Arc's `connectivityStatus`, the `microsoft.flux`
extension's `provisioningState`, and the Ready condition of every Flux object in `statuses[]`, whose
reasons and messages are the controllers' own:

- GitRepository (fluxcd/source-controller `gitrepository_controller.go`): `Succeeded` "stored artifact
  for revision '…'"; `AuthenticationFailed` ("failed to get secret '…'", "failed to configure
  authentication options: …"); `GitOperationFailed` "failed to checkout and determine revision: unable
  to clone '<url>': <go-git's error>" — go-git says `authentication required` (HTTP 401) or
  `authorization failed` (403) for a bad PAT, `repository not found` for a wrong URL, and `couldn't
  find remote ref "refs/heads/<branch>"` for a wrong branch;
- Kustomization (fluxcd/kustomize-controller `kustomization_controller.go`): `ArtifactFailed`
  ("kustomization path not found: stat …", or "Source artifact not found, retrying in 30s" while the
  source has none), `BuildFailed` (kustomize's and the generator's errors), `HealthCheckFailed`
  ("health check failed after …: timeout waiting for: [Deployment/…]"), `ReconciliationSucceeded`,
  `Progressing` while it works.

The order in which causes are tried is `shared.models.health.CAUSE_PRIORITY` (its comment says why).
Every message is scrubbed with `safe_text`: a clone URL or an echoed header may carry a credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.errors import safe_text
from shared.models import FluxState, ObjectStatus
from shared.models.health import Cause, PanelView

# A message on the wire is enough to act on; Flux's longest (kustomize's accumulation chains) fit.
MAX_MESSAGE = 1000

# go-git's words for a credential the server refused (plumbing/transport: ErrAuthenticationRequired,
# ErrAuthorizationFailed) and source-controller's for one it could not build.
_AUTH_WORDS = ("authentication required", "authorization failed", "authentication failed")
# go-git's ErrRepositoryNotFound, and the missing branch/tag of `couldn't find remote ref`.
_NOT_FOUND_WORDS = ("repository not found", "couldn't find remote ref")
_PATH_NOT_FOUND = "kustomization path not found"

# Remediation per cause: what the seed's runbook (kubernetes/README.md, "Creating the Flux configuration
# on a panel" and "Secrets each workload uses") and Flux's and Arc's troubleshooting guides say to do.
HINTS: dict[Cause, str] = {
    Cause.READY: "Nothing to do: every Flux object is Ready.",
    Cause.RECONCILING: (
        "Flux is applying a new revision or running health checks; wait one sync interval "
        "(`az k8s-configuration flux show` shows progress). Persisting for > 10 minutes means a health "
        "check is about to fail."
    ),
    Cause.SUSPENDED: (
        "Flux is suspended on this panel (a release freeze?). Resume it with `POST /api/fleet/resume` "
        "naming the panel, after checking the freeze's operation in `GET /api/operations?kind=suspend`."
    ),
    Cause.OFFLINE: (
        "Arc has had no heartbeat for 15 minutes: check the panel's power and its outbound network to "
        "Azure Arc endpoints (`az connectedk8s troubleshoot`). Changes wait for it; after 48 hours "
        "offline Arc drops them and fluxfleet re-applies."
    ),
    Cause.AGENT_EXPIRED: (
        "The Arc agents' managed-identity certificate expired (offline for over 90 days): the panel must "
        "be re-onboarded (`az connectedk8s delete` then `az connectedk8s connect`), then conformed."
    ),
    Cause.NOT_ONBOARDED: (
        "The panel has no Flux configuration (or no microsoft.flux extension): create it as in "
        'kubernetes/README.md, "Creating the Flux configuration on a panel", or let conformance do it.'
    ),
    Cause.EXTENSION_FAILED: (
        "The microsoft.flux extension is in Failed state, so no Flux controller runs: read its error "
        "(`az k8s-extension show --name flux`), fix the cause (often a Helm install timeout from low "
        "disk or no image pull), then update or re-create the extension."
    ),
    Cause.GIT_AUTH_FAILED: (
        "The Git server refused the panel's credential: the PAT expired, was revoked, or was changed by "
        "hand. Roll out the current Key Vault PAT (`POST /api/credentials/rollout`) rather than "
        "`az k8s-configuration flux update --https-key` on one panel, and check `GET /api/credentials`."
    ),
    Cause.GIT_SOURCE_NOT_FOUND: (
        "The repository URL or branch does not exist: compare `gitRepository.url` and the branch with "
        "the fleet's (FLUXFLEET_GIT_URL, FLUXFLEET_GIT_BRANCH); a hand-edited configuration is reset by "
        "conformance."
    ),
    Cause.GIT_FETCH_FAILED: (
        "The Git fetch failed for another reason (DNS, TLS, proxy, server error): check the panel's "
        "outbound HTTPS to dev.azure.com; Flux retries every interval."
    ),
    Cause.KUSTOMIZATION_PATH_NOT_FOUND: (
        "The kustomization's path is not in the fetched commit: the folder was renamed or deleted, or "
        "the configuration names a wrong `path` (the fleet's is ./kubernetes/workloads)."
    ),
    Cause.KUSTOMIZE_BUILD_FAILED: (
        "The commit does not build (`kustomize build kubernetes/workloads` fails the same way): fix or "
        "revert the commit named in the message; every panel on that revision fails alike."
    ),
    Cause.HEALTH_CHECK_FAILED: (
        "A Deployment did not become ready: an image tag missing from the registry, a missing secret "
        '(kubernetes/README.md, "Secrets each workload uses") or a crash. `kubectl -n ipc-workloads '
        "describe deployment <name>` on the panel shows which."
    ),
    Cause.UNKNOWN: (
        "Arc reports the configuration Non-Compliant without a Flux object saying why: read "
        "`errorMessage` with `az k8s-configuration flux show` and the flux-system controllers' logs."
    ),
}


@dataclass(frozen=True)
class Diagnosis:
    """One panel's cause, with Flux's or Arc's own words (scrubbed) and since when it holds."""

    cause: Cause
    message: str
    since: datetime | None  # ARM's (the agent's) clock: the condition's lastTransitionTime, or Arc's
    object: str | None = None  # `Kind/namespace/name` of the Flux object that says so

    @property
    def hint(self) -> str:
        return HINTS[self.cause]


def classify(view: PanelView) -> Diagnosis:
    """The one cause of a panel, asking in `CAUSE_PRIORITY`'s order."""
    panel, flux = view.panel, view.flux
    if flux is None or (view.extension_state == "" and view.extension_version == ""):
        what = "no Flux configuration" if flux is None else "no microsoft.flux extension"
        return Diagnosis(Cause.NOT_ONBOARDED, f"panel has {what}", None)
    if panel.connectivity == "Expired":
        return Diagnosis(
            Cause.AGENT_EXPIRED,
            "connectivityStatus Expired: the Arc agents' certificate has expired",
            panel.last_connectivity_time,
        )
    if panel.connectivity == "Offline":
        return Diagnosis(
            Cause.OFFLINE, "connectivityStatus Offline: no Arc agent heartbeat", panel.last_connectivity_time
        )
    if (view.extension_state or "").lower() == "failed":
        return Diagnosis(
            Cause.EXTENSION_FAILED,
            _text(f"microsoft.flux extension provisioningState Failed (version {view.extension_version})"),
            None,
        )
    if flux.suspended or flux.compliance_state == "Suspended":
        return Diagnosis(Cause.SUSPENDED, "suspend: true", flux.status_updated_at)
    failed = [s for s in flux.statuses if s.ready is False]
    source = next((s for s in failed if s.kind == "GitRepository"), None)
    if source is not None:
        return _diagnosis(_source_cause(source), source)
    for status in failed:
        cause = _kustomization_cause(status)
        if cause is not None:
            return _diagnosis(cause, status)
    if failed:
        # Not ready for a reason none of the causes above names (ReconciliationFailed, DependencyNotReady,
        # "Source artifact not found" with a healthy source): Flux is working on it.
        first = failed[0]
        cause = Cause.RECONCILING if _waiting(first) else Cause.UNKNOWN
        return _diagnosis(cause, first)
    if flux.compliance_state == "Non-Compliant":
        return Diagnosis(Cause.UNKNOWN, _text(flux.error_message or "complianceState Non-Compliant"), None)
    pending = next((s for s in flux.statuses if s.ready is None), None)
    if (
        flux.compliance_state != "Compliant"
        or (flux.provisioning_state or "Succeeded") not in ("Succeeded", "")
        or pending is not None
        or not flux.statuses
    ):
        message = f"complianceState {flux.compliance_state}, provisioningState {flux.provisioning_state}"
        return Diagnosis(Cause.RECONCILING, _text(message), flux.status_updated_at)
    newest = max((s.last_transition_time for s in flux.statuses if s.last_transition_time), default=None)
    return Diagnosis(Cause.READY, _text(_ready_message(flux)), newest)


def _source_cause(source: ObjectStatus) -> Cause:
    message = (source.message or "").lower()
    if source.reason == "AuthenticationFailed" or any(word in message for word in _AUTH_WORDS):
        return Cause.GIT_AUTH_FAILED
    if any(word in message for word in _NOT_FOUND_WORDS):
        return Cause.GIT_SOURCE_NOT_FOUND
    return Cause.GIT_FETCH_FAILED


def _kustomization_cause(status: ObjectStatus) -> Cause | None:
    if status.reason == "ArtifactFailed" and _PATH_NOT_FOUND in (status.message or ""):
        return Cause.KUSTOMIZATION_PATH_NOT_FOUND
    if status.reason == "BuildFailed":
        return Cause.KUSTOMIZE_BUILD_FAILED
    if status.reason == "HealthCheckFailed":
        return Cause.HEALTH_CHECK_FAILED
    return None


def _waiting(status: ObjectStatus) -> bool:
    """Reasons Flux uses while it waits on something else, not a failure of its own."""
    return status.reason in ("ArtifactFailed", "DependencyNotReady", "Progressing", "ProgressingWithRetry")


def _diagnosis(cause: Cause, status: ObjectStatus) -> Diagnosis:
    where = "/".join(part for part in (status.kind, status.namespace, status.name) if part)
    return Diagnosis(cause, _text(status.message or status.reason or ""), status.last_transition_time, where)


def _ready_message(flux: FluxState) -> str:
    applied = next((s.message for s in flux.statuses if s.kind == "Kustomization" and s.message), None)
    return applied or f"complianceState {flux.compliance_state}"


def _text(message: str) -> str:
    return safe_text(message, limit=MAX_MESSAGE)


def applied_revision(flux: FluxState | None) -> str | None:
    """The commit the panel runs: Arc's `sourceSyncedCommitId` is `<branch>/<sha>` (or `…@sha1:<sha>`)."""
    raw = flux.source_synced_commit_id if flux else None
    if not raw:
        return None
    for separator in ("@sha1:", "/"):
        if separator in raw:
            return raw.rsplit(separator, 1)[1]
    return raw
