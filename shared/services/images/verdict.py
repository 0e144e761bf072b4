"""The verdict: will `image:tag` roll out, when, and if not, why — decided as Flux would, without I/O.

Flux answers this question in four places that nobody looks at together: the ImageRepository
(is the image scanned, is the tag excluded), each ImagePolicy (does the tag pass the filter and the
range, does a higher tag win, is the policy valid), the ImageUpdateAutomation (does one select the
policy, is it suspended) and the setter markers (does any file under the automation's
`update.path` carry a marker for the policy, and does it already hold the tag). `judge` walks that
chain for every policy that watches the pushed image, in Flux's order, and stops at the first link
that breaks, so the reason names the one thing to fix. The semantics themselves (tag selection,
markers, rewrites) come from `shared.image_policy`.

When several policies watch one image, each gets its own `PolicyVerdict` and the check's verdict is
the most hopeful of them (`VERDICT_PRIORITY`): if any policy rolls the tag out, the check says so.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from shared.image_policy import (
    ImagePolicy,
    ImageRepository,
    ImageUpdateAutomation,
    InvalidPolicy,
    LatestRef,
    compute_rewrites,
    evaluate_tag,
    excluded_by,
    normalise_image,
)
from shared.image_policy.digests import judge_digest, ref_in_markers, uses_digest
from shared.models.images import (
    SHORT_SHA,
    VERDICT_KINDS,
    Eta,
    FilterRule,
    ImageRef,
    MarkerChange,
    PolicyVerdict,
    Verdict,
    VerdictKind,
)
from shared.services.images.snapshot import RepoSnapshot

# Most hopeful first: the check takes the verdict of the policy closest to rolling out.
VERDICT_PRIORITY: tuple[VerdictKind, ...] = VERDICT_KINDS  # `VerdictKind` is declared in this order
# Arc's Flux configuration default `syncIntervalInSeconds` (the SDK and `az k8s-configuration flux
# create` default), used when no panel's configuration can be read.
DEFAULT_SYNC_INTERVAL_S = 600.0
# How many markers or images a reason lists before it says "and N more".
_LISTED = 5
_V1BETA2_NOTE = (
    "uses image.toolkit.fluxcd.io/v1beta2, which image-reflector-controller and "
    "image-automation-controller v1.2.0 and later no longer serve; move it to image.toolkit.fluxcd.io/v1"
)


def _name(obj: ImageRepository | ImagePolicy | ImageUpdateAutomation) -> str:
    return f"{obj.namespace}/{obj.name}"


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown if len(items) <= _LISTED else f"{shown} and {len(items) - _LISTED} more"


def judge(
    *,
    snapshot: RepoSnapshot,
    ref: ImageRef,
    tags: Collection[str],
    branch: str,
    pushed_at: datetime,
    sync_interval_s: float | None,
) -> Verdict:
    """The verdict for `ref` with the repository at `snapshot` and the registry holding `tags`.

    `tags` need not contain `ref.tag` (a preflight check judges a tag before it is pushed); it is
    added. `pushed_at` anchors the ETA; `sync_interval_s` is the panels' Flux sync interval.
    """
    commit = snapshot.commit
    at = f"{branch}@{commit[:SHORT_SHA]}"
    objects = snapshot.objects
    warnings = [f"{problem.path}: {problem.message}" for problem in objects.problems]
    canonical = normalise_image(ref.image)
    repositories = [
        repository for repository in objects.repositories if repository.canonical_image == canonical
    ]
    if not repositories:
        scanned = sorted({repository.image for repository in objects.repositories})
        reason = f"no ImageRepository in {at} scans {ref.image}, so Flux never sees its tags"
        if scanned:
            reason += f" (the repository scans {_listing(scanned)})"
        return Verdict(ref, "no-image-repository", reason, commit, branch, warnings=tuple(warnings))

    pairs = [
        (repository, policy)
        for repository in repositories
        for policy in objects.policies
        if policy.repository_ref == (repository.namespace, repository.name)
    ]
    for repository in repositories:
        if repository.is_deprecated_api:
            warnings.append(f"ImageRepository {_name(repository)} {_V1BETA2_NOTE}")
    if not pairs:
        names = _listing([_name(repository) for repository in repositories])
        reason = (
            f"ImageRepository {names} scans {ref.image}, but no ImagePolicy in {at} refers to it, "
            "so no tag is ever selected"
        )
        return Verdict(ref, "no-policy", reason, commit, branch, warnings=tuple(warnings))

    all_tags = set(tags) | {ref.tag}
    verdicts: list[PolicyVerdict] = []
    etas: list[Eta] = []
    for repository, policy in pairs:
        policy_verdict, eta = _judge_policy(
            snapshot=snapshot,
            repository=repository,
            policy=policy,
            ref=ref,
            tags=all_tags,
            pushed_at=pushed_at,
            sync_interval_s=sync_interval_s,
            branch=branch,
            warnings=warnings,
        )
        verdicts.append(policy_verdict)
        if eta is not None:
            etas.append(eta)
    deciding = min(verdicts, key=lambda item: VERDICT_PRIORITY.index(item.verdict))
    reason = deciding.reason
    others = [item for item in verdicts if item is not deciding]
    if others:
        reason += "; " + "; ".join(f"{item.policy}: {item.verdict}" for item in others)
    eta = (
        max(etas, key=lambda item: item.applied_by) if etas and deciding.verdict == "will-roll-out" else None
    )
    return Verdict(
        ref,
        deciding.verdict,
        reason,
        commit,
        branch,
        policies=tuple(verdicts),
        eta=eta,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _judge_policy(
    *,
    snapshot: RepoSnapshot,
    repository: ImageRepository,
    policy: ImagePolicy,
    ref: ImageRef,
    tags: set[str],
    pushed_at: datetime,
    sync_interval_s: float | None,
    branch: str,
    warnings: list[str],
) -> tuple[PolicyVerdict, Eta | None]:
    """One policy's verdict: first whether it selects the tag, then whether anything writes it."""
    if policy.is_deprecated_api:
        warnings.append(f"ImagePolicy {_name(policy)} {_V1BETA2_NOTE}")
    selection = _selection(repository, policy, ref.tag, tags)
    if isinstance(selection, PolicyVerdict):
        return selection, None
    return _delivery(
        snapshot=snapshot,
        repository=repository,
        policy=policy,
        ref=ref,
        pushed_at=pushed_at,
        sync_interval_s=sync_interval_s,
        branch=branch,
        warnings=warnings,
    )


def _selection(
    repository: ImageRepository, policy: ImagePolicy, tag: str, tags: set[str]
) -> PolicyVerdict | str:
    """The selected tag (== `tag`) when the policy picks it, else the verdict that says why not."""
    name, repository_name = _name(policy), _name(repository)

    def verdict(kind: VerdictKind, reason: str, **extra: Any) -> PolicyVerdict:
        return PolicyVerdict(name, repository_name, kind, reason, **extra)

    try:
        excluded = excluded_by(repository.exclusion_list, tag)
        kept = [item for item in tags if excluded_by(repository.exclusion_list, item) is None]
    except InvalidPolicy as error:
        return verdict("invalid-policy", f"ImageRepository {repository_name} cannot scan: {error}")
    if excluded is not None:
        which = (
            "Flux's default exclusion list" if repository.exclusion_list_is_default else "its exclusionList"
        )
        reason = (
            f"ImageRepository {repository_name} drops {tag}: it matches '{excluded}' in {which}, "
            "so no policy ever sees it"
        )
        return verdict("filtered-out", reason, rule="exclusion")
    try:
        evaluation = evaluate_tag(policy.spec, tag, kept)
    except InvalidPolicy as error:
        return verdict(
            "invalid-policy", f"ImagePolicy {name} is invalid; Flux stalls it (InvalidPolicy): {error}"
        )
    if not evaluation.eligible:
        rule: FilterRule = evaluation.rejected_by or "range"
        return verdict("filtered-out", f"ImagePolicy {name} rejects {tag}: {evaluation.detail}", rule=rule)
    if evaluation.selected is None:
        return verdict(
            "invalid-policy", f"ImagePolicy {name} selects no tag (Ready=False): {evaluation.detail}"
        )
    if evaluation.selected != tag:
        reason = f"ImagePolicy {name} selects {evaluation.selected}, not {tag}: {evaluation.detail}"
        return verdict("not-latest", reason, selected=evaluation.selected)
    return evaluation.selected


def _delivery(
    *,
    snapshot: RepoSnapshot,
    repository: ImageRepository,
    policy: ImagePolicy,
    ref: ImageRef,
    pushed_at: datetime,
    sync_interval_s: float | None,
    branch: str,
    warnings: list[str],
) -> tuple[PolicyVerdict, Eta | None]:
    """The policy selects the tag: will an automation write it into a marker, and when?"""
    name, tag = _name(policy), ref.tag
    automations = snapshot.automations_for(policy)

    def verdict(kind: VerdictKind, reason: str, **extra: Any) -> PolicyVerdict:
        names = tuple(_name(automation) for automation in automations)
        return PolicyVerdict(name, _name(repository), kind, reason, selected=tag, automations=names, **extra)

    warnings.extend(
        f"ImageUpdateAutomation {_name(automation)} {_V1BETA2_NOTE}"
        for automation in automations
        if automation.is_deprecated_api
    )
    if not automations:
        reason = (
            f"ImagePolicy {name} selects {tag}, but no ImageUpdateAutomation in namespace "
            f"{policy.namespace} selects the policy, so nothing writes the tag to Git"
        )
        return verdict("automation-missing", reason), None
    paused = _suspension(repository, policy, automations)
    if paused is not None:
        kind, why = paused
        return verdict(kind, why), None

    active = [automation for automation in automations if not automation.suspend]
    # The digest the policy reflects after this push, as image-reflector-controller decides it
    # (shared/image_policy/digests.py): a re-pushed tag's new digest under `Always`, the digest already
    # reflected for that tag under `IfNotPresent`, none under `Never`. Git's markers stand in for the
    # policy's status.latestRef (it lives on the runner).
    held = ref_in_markers(
        [marker for automation in active for marker in snapshot.markers_for(policy, automation)],
        repository.image,
    )
    digest = judge_digest(
        policy, selected=LatestRef(repository.image, tag), pushed_digest=ref.digest, held=held
    )
    latest = {(policy.namespace, policy.name): digest.latest}
    changes: dict[tuple[str, int, str], MarkerChange] = {}
    writers: list[ImageUpdateAutomation] = []
    marker_count = 0
    for automation in active:
        markers = snapshot.markers_for(policy, automation)
        marker_count += len(markers)
        rewrites = compute_rewrites(markers, latest, namespace=automation.namespace)
        if rewrites:
            writers.append(automation)
        for rewrite in rewrites:
            change = MarkerChange(rewrite.path, rewrite.line, rewrite.setter, rewrite.old, rewrite.new)
            changes.setdefault((change.file, change.line, change.setter), change)
        if automation.push_branch and automation.push_branch != branch:
            warnings.append(
                f"ImageUpdateAutomation {_name(automation)} pushes to branch {automation.push_branch}, "
                f"but the panels sync {branch}: its commits reach them only once merged"
            )
    if marker_count == 0:
        return verdict("no-marker", _no_marker_reason(snapshot, policy, active, tag)), None
    if not changes:
        reason = f"every marker of ImagePolicy {name} ({marker_count}) already holds {tag}; nothing to commit"
        if held is not None and held.tag == tag and uses_digest(
            marker for automation in active for marker in snapshot.markers_for(policy, automation)
        ):
            reason += f" ({digest.reason})"
        return verdict("already-deployed", reason), None
    ordered = tuple(sorted(changes.values(), key=lambda change: (change.file, change.line)))
    files = sorted({change.file for change in ordered})
    reason = (
        f"ImagePolicy {name} selects {tag}; ImageUpdateAutomation "
        f"{_listing([_name(automation) for automation in writers])} will rewrite {len(ordered)} field(s) "
        f"in {_listing(files)}"
    )
    if held is not None and held.tag == tag and digest.digest_changes:
        reason += f" ({digest.reason})"  # the same tag pushed again with new content
    return verdict("will-roll-out", reason, markers=ordered), _eta(
        repository, writers, pushed_at, sync_interval_s
    )


def _suspension(
    repository: ImageRepository, policy: ImagePolicy, automations: Sequence[ImageUpdateAutomation]
) -> tuple[VerdictKind, str] | None:
    if repository.suspend:
        return "automation-suspended", (
            f"ImageRepository {_name(repository)} is suspended: the registry is not scanned, "
            "so the tag is never seen"
        )
    if policy.suspend:
        # ImagePolicy `spec.suspend` (image-reflector-controller v1.0, Flux 2.7): the reconciler returns
        # before it selects, so `status.latestRef` keeps the old tag and nothing is written.
        return "policy-suspended", (
            f"ImagePolicy {_name(policy)} is suspended (spec.suspend: true): its latest tag is not "
            "updated, so no automation writes the new one"
        )
    if all(automation.suspend for automation in automations):
        names = _listing([_name(automation) for automation in automations])
        return "automation-suspended", (
            f"ImagePolicy {_name(policy)} selects the tag, but ImageUpdateAutomation {names} is suspended"
        )
    return None


def _no_marker_reason(
    snapshot: RepoSnapshot, policy: ImagePolicy, automations: Sequence[ImageUpdateAutomation], tag: str
) -> str:
    name = _name(policy)
    setter = f"{policy.namespace}:{policy.name}"
    paths = _listing([_update_path(automation) for automation in automations])
    reason = (
        f"ImagePolicy {name} selects {tag}, but no file under {paths} has a "
        f'{{"$imagepolicy": "{setter}"}} marker, so the automation never writes it'
    )
    elsewhere = [f"{marker.path}:{marker.line}" for marker in snapshot.markers_anywhere(policy)]
    if elsewhere:
        reason += f"; markers outside the update path are not scanned: {_listing(elsewhere)}"
    ignored = [
        f"{item.path}:{item.line} ({item.reason})"
        for item in snapshot.scan.ignored
        if item.setter == setter or item.setter.startswith(setter + ":")
    ]
    if ignored:
        reason += f"; Flux ignores {_listing(ignored)}"
    return reason


def _update_path(automation: ImageUpdateAutomation) -> str:
    cleaned = automation.update_path.strip().removeprefix("./").strip("/")
    return f"./{cleaned}" if cleaned and cleaned != "." else "the repository root"


def _eta(
    repository: ImageRepository,
    writers: Sequence[ImageUpdateAutomation],
    pushed_at: datetime,
    sync_interval_s: float | None,
) -> Eta | None:
    intervals = [automation.interval_seconds for automation in writers if automation.interval_seconds]
    if repository.interval_seconds is None or not intervals:
        return None
    automation_interval = min(intervals)
    sync = sync_interval_s or DEFAULT_SYNC_INTERVAL_S
    commit_by = pushed_at + timedelta(seconds=repository.interval_seconds + automation_interval)
    return Eta(
        commit_by=commit_by,
        applied_by=commit_by + timedelta(seconds=sync),
        repository_interval_s=repository.interval_seconds,
        automation_interval_s=automation_interval,
        sync_interval_s=sync,
    )
