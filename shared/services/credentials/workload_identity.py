"""The way off PATs: which panels can authenticate Flux with workload identity instead.

Flux's `GitRepository.spec.provider: azure` lets source-controller fetch from Azure DevOps with a
federated workload identity — no PAT to mint, rotate, leak or revoke. On an Arc-connected cluster that
needs all of: the `microsoft.flux` extension at 1.15.1 or later (the first to support workload identity
on Arc), and the connected cluster's `securityProfile.workloadIdentity.enabled` and
`oidcIssuerProfile.enabled`. The identity's federated credential and its membership in the Azure
DevOps organization are set up once per fleet (docs/credentials.md); ARM cannot show them, so a
panel's move is proven the same way as a PAT rollout: by a successful fetch after the change.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.models.credentials import WorkloadIdentityFacts

# microsoft.flux 1.15.1 (Feb 2025): "Support of workload identity in Arc-enabled clusters".
MIN_FLUX_EXTENSION = (1, 15, 1)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]  # why not (empty when ready)


def version_tuple(version: str) -> tuple[int, ...]:
    """`1.15.1` → (1, 15, 1); a pre-release suffix is ignored (`1.16.0-rc.1` → (1, 16, 0))."""
    parts: list[int] = []
    for part in version.split("-", maxsplit=1)[0].split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def assess(facts: WorkloadIdentityFacts) -> Readiness:
    reasons: list[str] = []
    if facts.flux_extension_version is None:
        reasons.append("no microsoft.flux extension found")
    elif version_tuple(facts.flux_extension_version) < MIN_FLUX_EXTENSION:
        minimum = ".".join(map(str, MIN_FLUX_EXTENSION))
        reasons.append(f"microsoft.flux {facts.flux_extension_version} is older than {minimum}")
    if not facts.workload_identity_enabled:
        reasons.append(
            "securityProfile.workloadIdentity is not enabled "
            "(az connectedk8s update --enable-workload-identity)"
        )
    if not facts.oidc_issuer_enabled:
        reasons.append("oidcIssuerProfile is not enabled (az connectedk8s update --enable-oidc-issuer)")
    return Readiness(ready=not reasons, reasons=tuple(reasons))
