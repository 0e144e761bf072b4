# One module (>500 lines): one backend per runner keeps all three image kinds' status and due rules.
"""The image controllers of one runner cluster: their objects' status and decisions (moto's `models.py`).

What image-reflector-controller and image-automation-controller keep in their objects' status is
kept here per object (`namespace/name`), one backend per runner cluster (each cluster runs its own
controllers): each ImageRepository's last scan, each ImagePolicy's `latestRef` and Ready condition,
each ImageUpdateAutomation's last run, last push and Ready condition. The decisions — which tag a
policy selects, which digest it reflects, which setter-marked fields change, what the commit message
says — come from `shared.image_policy` (the same Flux semantics the app uses) and `template`. No I/O
here: the service lists tags, fetches, commits and pushes.

When each object reconciles follows the controllers' watches (Flux v1.0.4 of both controllers):

- an ImageRepository scans on its `spec.interval`, and at once when it is new or its spec changed;
- an ImagePolicy reconciles when it is new or changed, when its repository's scan result changed
  (IRC `imagepolicy_controller.go` L160-184, `imageRepositoryPredicate`), and — only with
  `digestReflectionPolicy: Always` — every `spec.interval` (`GetInterval`); a suspended one never
  (L236-240);
- an ImageUpdateAutomation runs on its `spec.interval`, at once when it is new or changed, and when an
  ImagePolicy of its namespace got a new `latestRef` (IAC `imageupdateautomation_controller.go`
  L146-159 and `automationsForImagePolicy`); a failed run is retried with controller-runtime's
  exponential backoff (Flux's defaults `--min-retry-delay=750ms`, `--max-retry-delay=15m`).

Ready conditions use the controllers' reasons and messages: IAC L296-543 (`GitOperationFailed`
"failed to checkout source: …" / "failed to update source: …", success "repository up-to-date" with
reason `Succeeded`), IRC L247-443 (`composeImagePolicyReadyMessage`, `DependencyNotReady`,
`InvalidPolicy`, `IntervalNotConfigured`).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from lab.core.clock import iso
from lab.imageautomation.template import (
    DEFAULT_MESSAGE,
    AutomationObject,
    Change,
    Changed,
    ObjectIdentifier,
    TemplateData,
    TemplateUnsupported,
    render_message,
)
from shared.image_policy import (
    INTERVAL_NOT_CONFIGURED_REASON,
    INTERVAL_REQUIRED,
    REFLECT_ALWAYS,
    REFLECT_NEVER,
    ImageObjects,
    ImagePolicy,
    ImageRepository,
    ImageUpdateAutomation,
    InvalidPolicy,
    LatestRef,
    Rewrite,
    apply_rewrites,
    compute_rewrites,
    compute_selection,
    digest_interval_seconds,
    excluded_by,
    files_in_update_path,
    find_markers,
    next_latest_ref,
    reflect_digest,
)

# IRC keeps the first tags of its stored (descending) order in `status.lastScanResult.latestTags`.
LATEST_TAGS_SHOWN = 10
# Flux's controller-runtime retry backoff for a failed reconcile (fluxcd/pkg runtime flags
# `--min-retry-delay` 750ms and `--max-retry-delay` 15m), doubling per consecutive failure.
MIN_RETRY_DELAY_S = 0.75
MAX_RETRY_DELAY_S = 900.0
# IRC's `--requeue-dependency` default: a policy whose repository has no tags yet retries after 30 s.
DEPENDENCY_REQUEUE_S = 30.0
SUCCEEDED = "Succeeded"
GIT_OPERATION_FAILED = "GitOperationFailed"
REPOSITORY_UP_TO_DATE = "repository up-to-date"  # IAC's Ready message on success (L65)

ConditionStatus = Literal["True", "False", "Unknown"]
ImageObject = ImageRepository | ImagePolicy | ImageUpdateAutomation


def key_of(obj: ImageObject) -> str:
    return f"{obj.namespace}/{obj.name}"


def generation_of(obj: ImageObject) -> str:
    """Changes whenever the object's spec (as read) changes: the lab's `metadata.generation`."""
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def retry_delay(failures: int) -> float:
    return float(min(MIN_RETRY_DELAY_S * 2.0 ** max(failures - 1, 0), MAX_RETRY_DELAY_S))


@dataclass(frozen=True)
class Condition:
    """A Ready condition; `last_transition_time` moves only when `status` flips, as in Kubernetes."""

    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime

    def document(self) -> dict[str, str]:
        return {
            "type": "Ready",
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": iso(self.last_transition_time),
        }


def ready(
    previous: Condition | None, status: ConditionStatus, reason: str, message: str, now: datetime
) -> Condition:
    since = previous.last_transition_time if previous is not None and previous.status == status else now
    return Condition(status, reason, message, since)


def _ref_document(value: LatestRef | None) -> dict[str, Any] | None:
    return None if value is None else {"name": value.name, "tag": value.tag, "digest": value.digest}


@dataclass
class RepositoryStatus:
    image: str
    generation: str = ""
    last_scan: datetime | None = None
    next_scan_at: float = 0.0  # lab elapsed seconds
    tags: tuple[str, ...] = ()
    scan_revision: str = ""  # changes when the stored tags change (IRC's `lastScanResult.revision`)
    error: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "lastScanTime": iso(self.last_scan) if self.last_scan else None,
            "tagCount": len(self.tags),
            "latestTags": list(self.tags[:LATEST_TAGS_SHOWN]),
            "error": self.error,
        }


@dataclass
class PolicyStatus:
    latest_ref: LatestRef | None = None
    previous_ref: LatestRef | None = None
    error: str | None = None
    condition: Condition | None = None
    generation: str = ""
    observed_scan: str | None = None  # the repository scan revision last reconciled against
    next_reconcile_at: float | None = None  # only `Always` requeues on its own
    suspended: bool = False
    digest_reflection_policy: str = REFLECT_NEVER
    last_reconcile: datetime | None = None

    def document(self) -> dict[str, Any]:
        return {
            "latestRef": _ref_document(self.latest_ref),
            "observedPreviousRef": _ref_document(self.previous_ref),
            "digestReflectionPolicy": self.digest_reflection_policy,
            "suspended": self.suspended,
            "lastReconcileTime": iso(self.last_reconcile) if self.last_reconcile else None,
            "ready": self.condition.document() if self.condition else None,
            "error": self.error,
        }


@dataclass
class AutomationStatus:
    cluster: str
    generation: str = ""
    next_run_at: float = 0.0  # lab elapsed seconds
    failures: int = 0
    last_run: datetime | None = None
    last_push_commit: str | None = None
    last_push_time: datetime | None = None
    observed_policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    observed_source_revision: str | None = None
    condition: Condition | None = None
    error: str | None = None
    warning: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "lastAutomationRunTime": iso(self.last_run) if self.last_run else None,
            "lastPushCommit": self.last_push_commit,
            "lastPushTime": iso(self.last_push_time) if self.last_push_time else None,
            "observedPolicies": self.observed_policies,
            "observedSourceRevision": self.observed_source_revision,
            "ready": self.condition.document() if self.condition else None,
            "error": self.error,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class AutomationPlan:
    """What one automation run would commit: new file texts and the message (empty when nothing)."""

    files: Mapping[str, str]
    rewrites: tuple[Rewrite, ...]
    message: str
    warning: str | None = None


def registry_path(image: str, login_server: str) -> str | None:
    """`ipc/app` for `<login_server>/ipc/app`; None for an image in another registry."""
    host, slash, path = image.partition("/")
    return path if slash and host.lower() == login_server.lower() else None


def policy_ready_message(status: PolicyStatus) -> str:
    """IRC's `composeImagePolicyReadyMessage` (L249-263)."""
    latest = status.latest_ref
    assert latest is not None
    message = f"Latest image tag for {latest.name} resolved to {latest.tag}"
    if latest.digest:
        message += f" with digest {latest.digest}"
    previous = status.previous_ref
    if previous is not None and previous != latest:
        message += f" (previously {previous.name}:{previous.tag}"
        if previous.digest:
            message += f"@{previous.digest}"
        message += ")"
    return message


# Registry lookups the service hands in: tags of a repository path, and the digest of one image ref.
DigestLookup = Callable[[LatestRef], str]


class ImageAutomationBackend:
    """The image controllers of one cluster."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.repositories: dict[str, RepositoryStatus] = {}
        self.policies: dict[str, PolicyStatus] = {}
        self.automations: dict[str, AutomationStatus] = {}
        self.last_cycle: datetime | None = None
        self.source_error: str | None = None
        self.source_revision: str | None = None
        self.objects_fingerprint: str | None = None

    def reset(self) -> None:
        self.__init__(self.cluster)  # type: ignore[misc]

    def forget_missing(self, objects: ImageObjects) -> None:
        """Objects no longer applied are gone from the cluster, and so is their status."""
        repositories = {key_of(obj) for obj in objects.repositories}
        policies = {key_of(obj) for obj in objects.policies}
        automations = {key_of(obj) for obj in objects.automations}
        self.repositories = {k: v for k, v in self.repositories.items() if k in repositories}
        self.policies = {k: v for k, v in self.policies.items() if k in policies}
        self.automations = {k: v for k, v in self.automations.items() if k in automations}

    # --- image-reflector-controller: ImageRepository ---------------------------------------------------
    def repository_due(self, repository: ImageRepository, elapsed: float) -> bool:
        status = self.repositories.get(key_of(repository))
        return (
            status is None or status.generation != generation_of(repository) or status.next_scan_at <= elapsed
        )

    def scan_repository(
        self,
        repository: ImageRepository,
        tags: list[str] | None,
        *,
        now: datetime,
        elapsed: float,
        error: str | None,
    ) -> None:
        """Record a scan: the tags kept after the exclusion list, in Flux's stored (descending) order."""
        status = self.repositories.setdefault(key_of(repository), RepositoryStatus(repository.image))
        status.image = repository.image
        status.generation = generation_of(repository)
        status.next_scan_at = elapsed + (repository.interval_seconds or 0.0)
        if error is not None or tags is None:
            status.error = error
            return
        try:
            kept = [tag for tag in tags if excluded_by(repository.exclusion_list, tag) is None]
        except InvalidPolicy as exclusion_error:
            status.error = str(exclusion_error)
            return
        status.tags = tuple(sorted(kept, reverse=True))
        status.scan_revision = hashlib.sha256("\n".join(status.tags).encode()).hexdigest()[:16]
        status.last_scan = now
        status.error = None

    # --- image-reflector-controller: ImagePolicy --------------------------------------------------------
    def policy_due(self, policy: ImagePolicy, repository: ImageRepository | None, elapsed: float) -> bool:
        """Whether a policy that is not suspended reconciles now (see the module docstring)."""
        status = self.policies.get(key_of(policy))
        if status is None or status.generation != generation_of(policy):
            return True
        scanned = self.repositories.get(key_of(repository)) if repository is not None else None
        if scanned is not None and scanned.scan_revision != status.observed_scan:
            return True
        return status.next_reconcile_at is not None and status.next_reconcile_at <= elapsed

    def mark_suspended(self, policy: ImagePolicy, *, suspended: bool) -> None:
        status = self.policies.setdefault(key_of(policy), PolicyStatus())
        status.suspended = suspended

    def reconcile_policy(
        self,
        policy: ImagePolicy,
        repository: ImageRepository | None,
        lookup: DigestLookup,
        *,
        now: datetime,
        elapsed: float,
        reflection_policy: str,
    ) -> bool:
        """One ImagePolicy reconcile; True when its `latestRef` changed. A failure keeps the old ref."""
        key = key_of(policy)
        status = self.policies.setdefault(key, PolicyStatus())
        status.generation = generation_of(policy)
        status.suspended = False
        status.digest_reflection_policy = reflection_policy
        status.last_reconcile = now
        interval = digest_interval_seconds(policy) if reflection_policy == REFLECT_ALWAYS else 0.0
        status.next_reconcile_at = elapsed + interval if interval else None
        if reflection_policy == REFLECT_ALWAYS and policy.spec.get("interval") is None:
            self._policy_failed(status, INTERVAL_NOT_CONFIGURED_REASON, INTERVAL_REQUIRED, now)
            status.next_reconcile_at = None  # Stalled: no requeue
            return False
        scanned = self.repositories.get(key_of(repository)) if repository is not None else None
        if repository is None:
            name = policy.repository_ref[1]
            message = (
                "failed to get the referred ImageRepository: referenced ImageRepository does not exist: "
                f'imagerepositories.image.toolkit.fluxcd.io "{name}" not found'
            )
            self._policy_failed(status, "DependencyNotReady", message, now)
            return False
        status.observed_scan = scanned.scan_revision if scanned is not None else None
        if scanned is None or not scanned.tags:
            # IRC L369-374: no tags yet is a dependency, retried after --requeue-dependency.
            self._policy_failed(
                status, "DependencyNotReady", "retrying in 30s error: no tags in database", now
            )
            status.next_reconcile_at = elapsed + DEPENDENCY_REQUEUE_S
            return False
        try:
            selection = compute_selection(policy.spec, scanned.tags)
        except InvalidPolicy as error:
            self._policy_failed(status, "InvalidPolicy", f"invalid policy: {error}", now)
            return False
        if selection.tag is None:
            self._policy_failed(status, "Failure", selection.failure or "no tag selected", now)
            return False
        selected = LatestRef(repository.image, selection.tag)
        try:
            reflected = reflect_digest(reflection_policy, status.latest_ref, selected, lookup)
        except LookupError as error:
            self._policy_failed(status, "Failure", f"failed fetching digest of {selected}: {error}", now)
            return False
        before = status.latest_ref
        latest = next_latest_ref(before, reflected)
        if latest is not before:
            status.previous_ref, status.latest_ref = before, latest
        status.error = None
        status.condition = ready(status.condition, "True", SUCCEEDED, policy_ready_message(status), now)
        return latest is not before

    @staticmethod
    def _policy_failed(status: PolicyStatus, reason: str, message: str, now: datetime) -> None:
        status.error = f"{reason}: {message}"
        status.condition = ready(status.condition, "False", reason, message, now)

    # --- image-automation-controller ---------------------------------------------------------------------
    def automation_due(
        self, automation: ImageUpdateAutomation, elapsed: float, *, policy_changed_in: set[str]
    ) -> bool:
        if automation.suspend:
            return False
        status = self.automations.get(key_of(automation))
        if status is None or status.generation != generation_of(automation):
            return True
        return automation.namespace in policy_changed_in or status.next_run_at <= elapsed

    def latest_refs(
        self, automation: ImageUpdateAutomation, objects: ImageObjects
    ) -> dict[tuple[str, str], LatestRef]:
        """Policies the automation selects that have a latestRef (Flux skips the others)."""
        refs: dict[tuple[str, str], LatestRef] = {}
        for policy in objects.policies:
            status = self.policies.get(key_of(policy))
            if automation.selects(policy) and status is not None and status.latest_ref is not None:
                refs[(policy.namespace, policy.name)] = status.latest_ref
        return refs

    def plan_automation(
        self, automation: ImageUpdateAutomation, objects: ImageObjects, files: Mapping[str, str]
    ) -> AutomationPlan:
        """The files Flux would rewrite and its commit message; raises TemplateError as Flux fails."""
        in_path = {path: files[path] for path in files_in_update_path(files, automation.update_path)}
        latest = self.latest_refs(automation, objects)
        rewrites = tuple(compute_rewrites(find_markers(in_path), latest, namespace=automation.namespace))
        if not rewrites:
            return AutomationPlan({}, (), "")
        new_files = apply_rewrites(in_path, rewrites)
        message, warning = _message(automation, rewrites)
        return AutomationPlan(new_files, rewrites, message, warning)

    def start_run(self, automation: ImageUpdateAutomation, *, now: datetime) -> AutomationStatus:
        """IAC sets `lastAutomationRunTime` as a run starts, whatever its outcome (L296)."""
        status = self.automations.setdefault(key_of(automation), AutomationStatus(self.cluster))
        status.generation = generation_of(automation)
        status.last_run = now
        return status

    def record_run(
        self,
        automation: ImageUpdateAutomation,
        objects: ImageObjects,
        *,
        now: datetime,
        elapsed: float,
        source_revision: str | None = None,
        pushed: str | None = None,
        error: str | None = None,
        reason: str = GIT_OPERATION_FAILED,
        warning: str | None = None,
        stalled: bool = False,
    ) -> None:
        """The outcome of a run: a push, nothing to do, or a failure with Flux's reason and message."""
        status = self.automations.get(key_of(automation)) or self.start_run(automation, now=now)
        status.error = None if error is None else f"{reason}: {error}"
        status.warning = warning
        if error is not None:
            status.condition = ready(status.condition, "False", reason, error, now)
            status.failures += 1
            # Stalled objects are not requeued until their spec changes; failures back off.
            status.next_run_at = float("inf") if stalled else elapsed + retry_delay(status.failures)
            return
        status.failures = 0
        status.next_run_at = elapsed + (automation.interval_seconds or 0.0)
        status.condition = ready(status.condition, "True", SUCCEEDED, REPOSITORY_UP_TO_DATE, now)
        status.observed_policies = {
            name: {"name": ref.name, "tag": ref.tag, "digest": ref.digest}
            for (_, name), ref in sorted(self.latest_refs(automation, objects).items())
        }
        if source_revision is not None:
            status.observed_source_revision = source_revision
        if pushed is not None:
            status.last_push_commit = pushed
            status.last_push_time = now
            status.observed_source_revision = pushed

    def next_due(self) -> float:
        """The lab-elapsed time at which the next scan, policy requeue or automation run is due."""
        times = [status.next_scan_at for status in self.repositories.values()]
        times += [status.next_run_at for status in self.automations.values()]
        times += [
            status.next_reconcile_at
            for status in self.policies.values()
            if status.next_reconcile_at is not None and not status.suspended
        ]
        return min(times, default=0.0)

    def document(self) -> dict[str, Any]:
        return {
            "lastRun": iso(self.last_cycle) if self.last_cycle else None,
            "source": {"revision": self.source_revision, "error": self.source_error},
            "repositories": {name: status.document() for name, status in sorted(self.repositories.items())},
            "policies": {name: status.document() for name, status in sorted(self.policies.items())},
            "automations": {name: status.document() for name, status in sorted(self.automations.items())},
        }


def _message(automation: ImageUpdateAutomation, rewrites: tuple[Rewrite, ...]) -> tuple[str, str | None]:
    root = posixpath.normpath("/" + automation.update_path.replace("\\", "/")).lstrip("/")
    file_changes: dict[str, dict[ObjectIdentifier, list[Change]]] = {}
    for rewrite in rewrites:
        relative = posixpath.relpath(rewrite.path, root) if root and root != "." else rewrite.path
        identity = rewrite.object
        identifier = ObjectIdentifier(
            identity.api_version if identity else "",
            identity.kind if identity else "",
            identity.name if identity else "",
            identity.namespace if identity else "",
        )
        file_changes.setdefault(relative, {}).setdefault(identifier, []).append(
            Change(rewrite.old, rewrite.new, rewrite.setter)
        )
    # `messageTemplateValues` is not read by shared.image_policy's manifest parser: `.Values` is empty.
    data = TemplateData(AutomationObject(automation.namespace, automation.name), Changed(file_changes))
    try:
        return render_message(automation.commit_message_template, data), None
    except TemplateUnsupported as gap:
        return (
            DEFAULT_MESSAGE,
            f"the lab cannot render this messageTemplate ({gap}); used Flux's default message",
        )
