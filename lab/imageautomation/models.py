"""The simulated image controllers' state and decisions (the backend, after moto's `models.py`).

What image-reflector-controller and image-automation-controller keep in their objects' status is
kept here per object (`namespace/name`): the ImageRepository's last scan, each ImagePolicy's
`latestRef`, each ImageUpdateAutomation's last run and push. The decisions — which tag a policy
selects, which setter-marked fields change, what the commit message says — come from
`shared.image_policy` (the same Flux semantics the app uses) and `template`; this module only
applies them to the objects found in Git and remembers the outcome. No I/O here: the service
fetches the repository and the tags and pushes the commit.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    excluded_by,
    files_in_update_path,
    find_markers,
)

# Digest reflection policies under which `latestRef.digest` is set (reference §1).
_DIGEST_REFLECTING = ("Always", "IfNotPresent")
# IRC keeps the first tags of its stored (descending) order in `status.lastScanResult.latestTags`.
LATEST_TAGS_SHOWN = 10


def key_of(obj: ImageRepository | ImagePolicy | ImageUpdateAutomation) -> str:
    return f"{obj.namespace}/{obj.name}"


@dataclass
class RepositoryStatus:
    image: str
    last_scan: datetime | None = None
    next_scan_at: float = 0.0  # lab elapsed seconds
    tags: tuple[str, ...] = ()
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

    def document(self) -> dict[str, Any]:
        def ref(value: LatestRef | None) -> dict[str, Any] | None:
            return None if value is None else {"name": value.name, "tag": value.tag, "digest": value.digest}

        return {
            "latestRef": ref(self.latest_ref),
            "observedPreviousRef": ref(self.previous_ref),
            "error": self.error,
        }


@dataclass
class AutomationStatus:
    next_run_at: float = 0.0  # lab elapsed seconds
    last_run: datetime | None = None
    last_push_commit: str | None = None
    last_push_time: datetime | None = None
    observed_policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    warning: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "lastAutomationRunTime": iso(self.last_run) if self.last_run else None,
            "lastPushCommit": self.last_push_commit,
            "lastPushTime": iso(self.last_push_time) if self.last_push_time else None,
            "observedPolicies": self.observed_policies,
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


class ImageAutomationBackend:
    def __init__(self) -> None:
        self.repositories: dict[str, RepositoryStatus] = {}
        self.policies: dict[str, PolicyStatus] = {}
        self.automations: dict[str, AutomationStatus] = {}
        self.last_cycle: datetime | None = None
        self.source_error: str | None = None
        self.source_revision: str | None = None

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    # --- image-reflector-controller ------------------------------------------------------------------
    def repository_due(self, repository: ImageRepository, elapsed: float) -> bool:
        status = self.repositories.get(key_of(repository))
        return status is None or status.next_scan_at <= elapsed

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
        status.last_scan = now
        status.error = None

    def reconcile_policy(
        self, policy: ImagePolicy, repository: ImageRepository | None, digest_of: Callable[[str], str | None]
    ) -> None:
        """ImagePolicy reconcile: select from the repository's stored tags; keep the old ref on failure."""
        status = self.policies.setdefault(key_of(policy), PolicyStatus())
        scanned = self.repositories.get(key_of(repository)) if repository is not None else None
        if repository is None or scanned is None:
            status.error = "referenced ImageRepository not found or not scanned yet"
            return
        try:
            selection = compute_selection(policy.spec, scanned.tags)
        except InvalidPolicy as error:
            status.error = f"InvalidPolicy: {error}"
            return
        if selection.tag is None:
            status.error = selection.failure
            return
        digest = digest_of(selection.tag) if policy.digest_reflection_policy in _DIGEST_REFLECTING else None
        latest = LatestRef(repository.image, selection.tag, digest)
        if latest != status.latest_ref:
            status.previous_ref = status.latest_ref
            status.latest_ref = latest
        status.error = None

    # --- image-automation-controller -----------------------------------------------------------------
    def automation_due(self, automation: ImageUpdateAutomation, elapsed: float) -> bool:
        status = self.automations.get(key_of(automation))
        return status is None or status.next_run_at <= elapsed

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

    def record_run(
        self,
        automation: ImageUpdateAutomation,
        objects: ImageObjects,
        *,
        now: datetime,
        elapsed: float,
        pushed: str | None = None,
        error: str | None = None,
        warning: str | None = None,
    ) -> None:
        status = self.automations.setdefault(key_of(automation), AutomationStatus())
        status.last_run = now
        status.next_run_at = elapsed + (automation.interval_seconds or 0.0)
        status.error = error
        status.warning = warning
        if pushed is not None:
            status.last_push_commit = pushed
            status.last_push_time = now
        if error is None:
            status.observed_policies = {
                name: {"name": ref.name, "tag": ref.tag, "digest": ref.digest}
                for (_, name), ref in sorted(self.latest_refs(automation, objects).items())
            }

    def next_due(self) -> float:
        """The lab-elapsed time at which the next repository scan or automation run is due (0: now)."""
        times = [status.next_scan_at for status in self.repositories.values()]
        times += [status.next_run_at for status in self.automations.values()]
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
