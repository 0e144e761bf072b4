"""Digest reflection and `spec.suspend` of an ImagePolicy, as image-reflector-controller applies them.

Source: fluxcd/image-reflector-controller at tag v1.0.4 (the release that microsoft.flux 1.23.x ships
with Flux 2.7; see `extension_support`), `api/v1/imagepolicy_types.go` and
`internal/controller/imagepolicy_controller.go`
(https://github.com/fluxcd/image-reflector-controller/blob/v1.0.4/api/v1/imagepolicy_types.go,
https://github.com/fluxcd/image-reflector-controller/blob/v1.0.4/internal/controller/imagepolicy_controller.go;
Flux's docs say the same in https://fluxcd.io/flux/components/image/imagepolicies/#digest-reflection):

- `status.latestRef` is an `ImageRef` `{name, tag, digest}` (types L148-159), `name` being the
  ImageRepository's `spec.image`; `status.observedPreviousRef` the one before it (L174-178).
- `spec.digestReflectionPolicy` is `Always`, `IfNotPresent` or `Never`; empty means `Never`
  (types L46-58, `GetDigestReflectionPolicy` L217-222).
- `updateImageRefs` (controller L398-443) decides whether the registry is asked for the selected tag's
  digest: `IfNotPresent` only when there is no previous `latestRef`, or its name or tag differ from the
  newly selected one, or its digest is empty (L412-421, the old digest is kept otherwise); `Always` on
  every reconcile (L423-424); `Never` never, so the digest stays empty. A failed lookup fails the
  reconcile and leaves the status as it was (L428-432). `latestRef` (and `observedPreviousRef`) change
  only when the resulting ref differs (L436-440).
- `spec.interval` is only accepted, and then required, with `Always` (the CRD's CEL rules, types
  L30-31); the controller also stalls an `Always` policy without it with reason `IntervalNotConfigured`
  (controller L297-302). An `Always` policy requeues every `interval`, 10m when it is zero
  (`GetInterval`, types L224-234); the others requeue 0: they reconcile only when their object or
  their ImageRepository's scan result changes (the watch predicate, controller L160-184).
- `spec.suspend` (types L70-73, new in IRC v1.0.0 — its CHANGELOG: "The `ImagePolicy` now supports the
  `.spec.suspend` field"): a suspended policy is not reconciled at all (controller L236-240), so its
  `status.latestRef` keeps whatever it last was. Before v1.0.0 the field did not exist (the API server
  prunes it as an unknown field): see `extension_support.supports_policy_suspend`.

How that reaches Git: image-automation-controller v1.0.4 `internal/update/setters.go` (L125-171,
https://github.com/fluxcd/image-automation-controller/blob/v1.0.4/internal/update/setters.go)
defines, per policy with a `latestRef`, the whole-image setter `ns:name` with the value
`latestRef.String()` (`name:tag`, plus `@digest` when the digest is set: `ImageRef.String`, types
L161-167), and `ns:name:tag`, `ns:name:name`, `ns:name:digest` with those fields (an empty digest
blanks a `:digest` field). So a new digest changes Git only where a whole-image or a `:digest`
marker uses it.

Pure functions only: the app's verdict uses them to say whether a re-pushed tag rolls out
(`judge_digest`, with `ref_in_markers` for what Git holds today), and the lab's image-reflector
simulator uses them to decide what the policy's status becomes (`reflect_digest`, `next_latest_ref`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from shared.image_policy.extension_support import release_for, supports_digest_reflection
from shared.image_policy.manifests import ImagePolicy, parse_duration
from shared.image_policy.setters import LatestRef, Marker

ReflectionPolicy = Literal["Always", "IfNotPresent", "Never"]
REFLECT_ALWAYS: Final = "Always"
REFLECT_IF_NOT_PRESENT: Final = "IfNotPresent"
REFLECT_NEVER: Final = "Never"
REFLECTION_POLICIES: Final = (REFLECT_ALWAYS, REFLECT_IF_NOT_PRESENT, REFLECT_NEVER)
# `GetInterval`: an `Always` policy whose interval is zero re-checks the digest every 10 minutes.
DEFAULT_ALWAYS_INTERVAL_S: Final = 600.0

# The CRD's two CEL rules on ImagePolicySpec, in Flux's words (types L30-31). The API server refuses
# an object that breaks one, so such a policy never reaches the controller.
INTERVAL_NOT_ACCEPTED: Final = (
    "spec.interval is only accepted when spec.digestReflectionPolicy is set to 'Always'"
)
INTERVAL_REQUIRED: Final = "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'"
# The Stalled reason the controller gives an `Always` policy without an interval (controller L299).
INTERVAL_NOT_CONFIGURED_REASON: Final = "IntervalNotConfigured"

DigestLookup = Callable[[LatestRef], str]


def reflection_policy_of(policy: ImagePolicy | Mapping[str, Any]) -> str:
    """`spec.digestReflectionPolicy` with Flux's default (`Never` when unset or empty)."""
    if isinstance(policy, ImagePolicy):
        return policy.digest_reflection_policy or REFLECT_NEVER
    written = policy.get("digestReflectionPolicy")
    return written if isinstance(written, str) and written else REFLECT_NEVER


def digest_lookup_needed(reflection_policy: str, previous: LatestRef | None, selected: LatestRef) -> bool:
    """Whether the controller asks the registry for `selected`'s digest (`shouldFetch`, L410-425).

    `selected` is the newly selected ref (name and tag; its digest is ignored), `previous` the
    policy's current `status.latestRef`.
    """
    if reflection_policy == REFLECT_ALWAYS:
        return True
    if reflection_policy == REFLECT_IF_NOT_PRESENT:
        return (
            previous is None
            or previous.name != selected.name
            or previous.tag != selected.tag
            or not previous.digest
        )
    return False


def reflect_digest(
    reflection_policy: str, previous: LatestRef | None, selected: LatestRef, lookup: DigestLookup
) -> LatestRef:
    """The `latestRef` a reconcile produces for the selected tag, digest included (`updateImageRefs`).

    `lookup` asks the registry for the digest of `selected` (HEAD `name:tag`); it is called only when
    Flux would call it, and whatever it raises propagates (Flux fails the reconcile and keeps the old
    status: the caller must then leave `previous` in place).
    """
    bare = replace(selected, digest=None)
    if digest_lookup_needed(reflection_policy, previous, bare):
        return replace(bare, digest=lookup(bare) or None)
    if reflection_policy == REFLECT_IF_NOT_PRESENT and previous is not None:
        return replace(bare, digest=previous.digest)  # kept: same name and tag, digest already known
    return bare


def next_latest_ref(previous: LatestRef | None, reflected: LatestRef) -> LatestRef:
    """`status.latestRef` after the reconcile: replaced only when the reflected ref differs (L436-440)."""
    return reflected if previous is None or reflected != previous else previous


def digest_would_change(
    reflection_policy: str, previous: LatestRef | None, selected: LatestRef, registry_digest: str | None
) -> bool:
    """Whether reconciling now would give the policy a different digest than it reflects today.

    The verdict's question for a tag pushed again with new content: the registry now answers
    `registry_digest` for `selected` (the tag the policy still selects). Under `Always` the next
    reconcile (within `spec.interval`) reflects it, so a changed digest rolls out wherever a
    `:digest` marker or a whole-image marker (`name:tag@digest`) uses it; under `IfNotPresent` the
    digest already reflected for the same tag is kept; under `Never` there is no digest at all.
    """
    reflected = reflect_digest(reflection_policy, previous, selected, lambda _: registry_digest or "")
    before = previous.digest if previous is not None else None
    return (reflected.digest or None) != (before or None)


def digest_interval_seconds(policy: ImagePolicy | Mapping[str, Any]) -> float:
    """How often the controller requeues the policy on its own (`GetInterval`): 0 means never.

    Only `Always` requeues, every `spec.interval` (10 minutes when it is zero or unparsable here;
    the API server would have refused an unparsable one).
    """
    spec = policy.spec if isinstance(policy, ImagePolicy) else policy
    if reflection_policy_of(policy) != REFLECT_ALWAYS:
        return 0.0
    raw = spec.get("interval")
    seconds = parse_duration(str(raw)) if raw is not None else None
    return seconds if seconds else DEFAULT_ALWAYS_INTERVAL_S


def interval_rule_violation(policy: ImagePolicy | Mapping[str, Any]) -> str | None:
    """The CEL rule of ImagePolicySpec an object breaks (Flux's message), or None.

    These are admission rules: the API server refuses such an object, so a kustomization applying it
    fails and the controller never sees it.
    """
    spec = policy.spec if isinstance(policy, ImagePolicy) else policy
    has_interval = spec.get("interval") is not None
    always = reflection_policy_of(policy) == REFLECT_ALWAYS
    if has_interval and not always:
        return INTERVAL_NOT_ACCEPTED
    if always and not has_interval:
        return INTERVAL_REQUIRED
    return None


# --- the verdict's question: does a tag pushed again with new content roll out? ------------------------
# Characters of a digest a reason shows (`sha256:` and the first 12 hex digits, as registries list it).
_SHORT_DIGEST = len("sha256:") + 12
# Setter fields whose value carries the digest (whole image `name:tag@digest`, or the digest alone).
_DIGEST_FIELDS: Final = frozenset({"image", "digest"})


def _short(digest: str | None) -> str:
    return (digest or "")[:_SHORT_DIGEST]


def _split_image_value(value: str) -> tuple[str, str | None] | None:
    """(tag, digest) of a whole-image setter value `name:tag[@digest]`; None without a tag."""
    reference, _, digest = value.partition("@")
    last = reference.rsplit("/", 1)[-1]  # a registry port (`host:5000/...`) is not a tag
    if ":" not in last:
        return None
    return last.rsplit(":", 1)[1], digest or None


def ref_in_markers(markers: Iterable[Marker], image: str) -> LatestRef | None:
    """The `latestRef` one policy's markers in Git hold today: what its last automation run wrote.

    `markers` are the policy's (the caller filters them); `image` is the ImageRepository's
    `spec.image`. A whole-image marker gives tag and digest at once; otherwise a `:tag` marker gives
    the tag and a `:digest` marker the digest. None when no marker says which tag is deployed.
    This stands in for the policy's `status.latestRef`, which lives on the runner cluster only: Git
    holds exactly what Flux last wrote from it.
    """
    tag: str | None = None
    digest: str | None = None
    for marker in markers:
        if marker.field == "image":
            split = _split_image_value(marker.current_value)
            if split is not None:
                return LatestRef(image, split[0], split[1])
        elif marker.field == "tag" and tag is None:
            tag = marker.current_value or None
        elif marker.field == "digest" and digest is None:
            digest = marker.current_value or None
    return LatestRef(image, tag, digest) if tag else None


def uses_digest(markers: Iterable[Marker]) -> bool:
    """Whether any of these markers writes the digest (a whole-image or a `:digest` marker)."""
    return any(marker.field in _DIGEST_FIELDS for marker in markers)


@dataclass(frozen=True)
class DigestOutcome:
    """What digest reflection makes of a push of `latest.tag`, for the verdict.

    `latest` is the `latestRef` the policy will carry once the push is reflected: pass it to
    `compute_rewrites` as the policy's ref, and the rewrites are exactly Flux's. `digest_changes`
    says whether that digest differs from the one Git holds (`held`); `reason` says why, in Flux's
    terms, either way; `within_s` is how soon the controller reads the digest again on its own
    (`spec.interval` under `Always`; 0 when it only reacts to a new scan result).
    """

    latest: LatestRef
    reflection_policy: str
    digest_changes: bool
    reason: str
    within_s: float


def effective_reflection_policy(policy: ImagePolicy, extension_version: str | None = None) -> str:
    """`spec.digestReflectionPolicy`, or `Never` where the runner's CRD has no such field (pruned).

    `extension_version` is the runner's `microsoft.flux` version; None means "assume it has it".
    """
    if extension_version is not None and not supports_digest_reflection(extension_version):
        return REFLECT_NEVER
    return reflection_policy_of(policy)


def judge_digest(
    policy: ImagePolicy,
    *,
    selected: LatestRef,
    pushed_digest: str | None,
    held: LatestRef | None,
    extension_version: str | None = None,
) -> DigestOutcome:
    """The digest the policy reflects after `selected.tag` was pushed with `pushed_digest`.

    `selected` is the ref the policy selects after the push (its digest is ignored) and
    `pushed_digest` the registry's digest for that tag now (the ACR event's `target.digest`);
    `held` is what Git holds today (`ref_in_markers`). A tag pushed again with new content rolls
    out under `Always` (the next reconcile, within `spec.interval`, reads the new digest) and not
    under `IfNotPresent` (the digest reflected for the same tag is kept) or `Never` (no digest).
    """
    name = f"{policy.namespace}/{policy.name}"
    reflection = effective_reflection_policy(policy, extension_version)
    latest = reflect_digest(reflection, held, selected, lambda _: pushed_digest or "")
    before = held.digest if held is not None else None
    changes = (latest.digest or None) != (before or None)
    within = digest_interval_seconds(policy) if reflection == REFLECT_ALWAYS else 0.0
    tag = selected.tag
    if reflection == REFLECT_NEVER:
        if reflection_policy_of(policy) != REFLECT_NEVER and extension_version is not None:
            release = release_for(extension_version)
            controller = release.image_reflector_controller if release else "unknown"
            why = (
                f"microsoft.flux {extension_version} runs image-reflector-controller {controller}, "
                "which has no spec.digestReflectionPolicy (v0.35.0 and later have it)"
            )
        else:
            why = "digestReflectionPolicy Never, the default"
        reason = (
            f"ImagePolicy {name} reflects no digest ({why}), so new content pushed as {tag} "
            "changes nothing in Git; with digestReflectionPolicy Always (and spec.interval) it would"
        )
    elif pushed_digest is None and reflection == REFLECT_ALWAYS:
        reason = f"ImagePolicy {name} re-reads the digest of {tag}, but the push carried no digest to compare"
        changes = False
    elif not changes:
        reason = f"ImagePolicy {name} already reflects digest {_short(latest.digest)} for {tag}"
        if reflection == REFLECT_IF_NOT_PRESENT and pushed_digest and pushed_digest != latest.digest:
            reason += (
                " and keeps it (digestReflectionPolicy IfNotPresent reads a digest only for a newly "
                f"selected tag), so the new content pushed as {tag} ({_short(pushed_digest)}) does not "
                "roll out; with Always it would"
            )
    elif reflection == REFLECT_ALWAYS:
        reason = (
            f"ImagePolicy {name} re-reads the digest of {tag} every {within:g}s (digestReflectionPolicy "
            f"Always) and will reflect {_short(latest.digest)}"
            + (f" instead of {_short(before)}" if before else "")
        )
    else:
        reason = (
            f"ImagePolicy {name} reflects the digest of {tag} once (digestReflectionPolicy IfNotPresent): "
            f"{_short(latest.digest)}"
        )
    return DigestOutcome(latest, reflection, changes, reason, within)
