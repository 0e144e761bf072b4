"""Preflight: is a Key Vault version fit to be rolled out, before any panel depends on it?

A missed or botched rotation stops every panel from syncing, so a version is refused unless it is
enabled, already valid, not expired and — the decisive check — authenticates to the repository the
panels sync, by the same Git smart-HTTP ref discovery a Flux source-controller does first. A version
without `exp` is allowed (Azure DevOps enforces the PAT's own expiry) but reported: without it the app
cannot warn before the panels lose access.

Then what the credential may do, proven by the Git protocol itself (issue 15): the `git-receive-pack`
advertisement (the first request of every push) must be answered for the *automation* credential — the
runner pushes the image automation's commits with it — and must be *refused* for the *fleet*
credential: a write PAT on factory panels is a finding, not a convenience (one stolen panel could push
to the repository every panel applies), so such a version is never rolled out.

The checks are ordered from free to costly; the value is read from Key Vault only when the attributes
pass, and lives in this module's locals only for the probes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from shared.errors import PermanentError
from shared.models.credentials import (
    CheckOutcome,
    CredentialPurpose,
    PreflightCheck,
    PreflightReport,
    ProbeResult,
    ProbeVerdict,
    SecretVersionId,
    SecretVersionInfo,
)
from shared.services.credentials.ports import GitProbe

log = logging.getLogger("fluxfleet.credentials.preflight")


def run_preflight(
    *,
    version: SecretVersionInfo,
    now: datetime,
    read_value: Callable[[SecretVersionId], str],
    probe: GitProbe,
    git_url: str,
    https_user: str,
    warn_below_days: int,
    purpose: CredentialPurpose = CredentialPurpose.FLEET,
) -> PreflightReport:
    """Check `version`; `warn_below_days` flags a version that will soon need its own successor."""
    checks = attribute_checks(version, now=now, warn_below_days=warn_below_days)
    retryable = False
    if all(check.outcome is not CheckOutcome.FAILED for check in checks):
        value_checks, retryable = _value_checks(
            version,
            read_value=read_value,
            probe=probe,
            git_url=git_url,
            https_user=https_user,
            purpose=purpose,
        )
        checks += value_checks
    report = PreflightReport(
        secret=version.name,
        version=version.version,
        checked_at=now,
        checks=tuple(checks),
        retryable=retryable,
    )
    log.info(
        "preflight of %s version %s: %s",
        version.name,
        version.version,
        "passed" if report.passed else "refused: " + "; ".join(report.reasons),
        extra={"secret": version.name, "version": version.version, "passed": report.passed},
    )
    return report


def attribute_checks(
    version: SecretVersionInfo, *, now: datetime, warn_below_days: int
) -> list[PreflightCheck]:
    checks = [
        PreflightCheck(
            "enabled",
            CheckOutcome.PASSED if version.enabled else CheckOutcome.FAILED,
            "the version is enabled" if version.enabled else "the version is disabled in Key Vault",
        )
    ]
    if version.not_before is not None and version.not_before > now:
        checks.append(
            PreflightCheck(
                "notBefore",
                CheckOutcome.FAILED,
                f"the version is not valid before {version.not_before:%c} UTC",
            )
        )
    days_left = version.days_left(now)
    if days_left is None:
        checks.append(
            PreflightCheck(
                "expiry",
                CheckOutcome.WARNING,
                "the version has no `exp` attribute: set it to the PAT's expiry so fluxfleet can warn "
                "before panels lose access",
            )
        )
    elif days_left <= 0:
        checks.append(PreflightCheck("expiry", CheckOutcome.FAILED, "the version has expired"))
    elif days_left < warn_below_days:
        checks.append(
            PreflightCheck(
                "expiry",
                CheckOutcome.WARNING,
                f"the version expires in {days_left:.1f} days: mint a successor",
            )
        )
    else:
        checks.append(PreflightCheck("expiry", CheckOutcome.PASSED, f"expires in {int(days_left)} days"))
    return checks


def _value_checks(
    version: SecretVersionInfo,
    *,
    read_value: Callable[[SecretVersionId], str],
    probe: GitProbe,
    git_url: str,
    https_user: str,
    purpose: CredentialPurpose,
) -> tuple[list[PreflightCheck], bool]:
    try:
        value = read_value(version.version)
    except PermanentError as exc:  # transient errors propagate: the trigger retries
        return [
            PreflightCheck("readable", CheckOutcome.FAILED, f"Key Vault refused the read: {exc.message}")
        ], False
    if not value or any(not 0x21 <= ord(ch) <= 0x7E for ch in value):
        # A PAT is printable ASCII (Azure DevOps mints base32/base64-style tokens). A value saved from a
        # file often carries a newline, one pasted from a document a typographic character; Git would
        # send the first and fail obscurely, and HTTP Basic auth cannot carry the second at all.
        return [
            PreflightCheck(
                "wellFormed",
                CheckOutcome.FAILED,
                "the value is empty or contains whitespace, control or non-ASCII characters "
                "(a trailing newline? a character pasted from a document?)",
            )
        ], False
    result = probe.probe(url=git_url, username=https_user, password=value)
    if result.authenticated:
        push = probe.probe(url=git_url, username=https_user, password=value, service="git-receive-pack")
        del value
        authenticates = PreflightCheck("authenticates", CheckOutcome.PASSED, result.detail)
        return [authenticates, push_check(purpose, push)], push.verdict is ProbeVerdict.UNREACHABLE
    del value
    explanation = {
        ProbeVerdict.REFUSED: "the repository refused it: the PAT is wrong, revoked, expired or lacks "
        "Code (Read) on this repository",
        ProbeVerdict.NOT_FOUND: "the repository was not found with this credential",
        ProbeVerdict.UNREACHABLE: "the repository could not be reached; the PAT is untested",
    }[result.verdict]
    return [
        PreflightCheck("authenticates", CheckOutcome.FAILED, f"{explanation} ({result.detail})")
    ], result.verdict is ProbeVerdict.UNREACHABLE


def push_check(purpose: CredentialPurpose, push: ProbeResult) -> PreflightCheck:
    """The capability check: the automation credential must push, the fleet credential must not."""
    if push.verdict is ProbeVerdict.UNREACHABLE:
        name = "canPush" if purpose is CredentialPurpose.AUTOMATION else "readOnly"
        return PreflightCheck(
            name,
            CheckOutcome.FAILED,
            f"the repository could not be reached for git-receive-pack; untested ({push.detail})",
        )
    can_push = push.verdict is ProbeVerdict.AUTHENTICATED
    if purpose is CredentialPurpose.AUTOMATION:
        if can_push:
            return PreflightCheck("canPush", CheckOutcome.PASSED, push.detail)
        return PreflightCheck(
            "canPush",
            CheckOutcome.FAILED,
            "automation-credential-refused: the repository refused git-receive-pack, so the image "
            "automation could not push its commits — the PAT lacks Code (Read & Write); mint one with "
            f"`python -m shared.cli pat mint --purpose automation` ({push.detail})",
        )
    if can_push:
        return PreflightCheck(
            "readOnly",
            CheckOutcome.FAILED,
            "the PAT can push (the repository advertised git-receive-pack): a write credential on factory "
            "panels would let one stolen panel push to the repository every panel applies; mint a "
            "read-only one (Code: Read) with `python -m shared.cli pat mint --purpose fleet`",
        )
    return PreflightCheck(
        "readOnly",
        CheckOutcome.PASSED,
        f"the repository refused git-receive-pack: read-only, as factory panels need ({push.detail})",
    )
