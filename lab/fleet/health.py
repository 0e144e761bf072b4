"""Health checks of a `wait: true` kustomization: do the Deployments it applied become ready?

A panel's Deployment becomes ready only if its pods can start there: every secret and key the pods
read exists on the panel, every ConfigMap they read exists, and every image can be pulled from the
lab's registry. The lab does not run pods, so it decides that from the manifests and the panel's
ground truth, and then reports what kustomize-controller would, in its words:

- kustomize-controller `internal/controller/kustomization_controller.go` (186fb3b): `checkHealth`
  waits with `ssa.WaitOptions{Interval: 5s, Timeout: obj.GetTimeout(), FailFast: r.FailFast}`
  (line 1061-1066; `FailFast` is on unless the `DisableFailFastBehavior` gate is set, main.go line
  273) and returns "health check failed after %s: %w" (line 1072), which `reconcile` writes into
  Ready as `HealthCheckFailed` (line 528-529);
- fluxcd/pkg `ssa/manager_wait.go` (e2cfd1a) `WaitForSetWithContext`: "timeout waiting for: [%s]"
  when the timeout expired, "failed early due to stalled resources: [%s]" otherwise, each entry
  "%s status: '%s'" with `utils.FmtObjMetadata` (`Kind/namespace/name`, ssa/utils/fmt.go line 30);
  entries come from a Go map, so Flux's order varies from run to run — the lab sorts them;
- fluxcd/cli-utils `pkg/kstatus/status/core.go` (967855f) `deploymentConditions`: a Deployment whose
  pods do not become ready is `InProgress` until its `Progressing` condition says
  `ProgressDeadlineExceeded` (after `spec.progressDeadlineSeconds`, 600 by default in apps/v1), then
  `Failed`; the poller's first poll is immediate (`pkg/kstatus/polling/engine/engine.go` line 164).

So a Deployment that cannot start is reported `InProgress` after the kustomization's timeout while it
is younger than its progress deadline, and `Failed` (fail-fast, at the next poll) once older. The lab
answers at once instead of waiting out the timeout; the durations in the message are the ones Flux's
wait would have taken.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from lab.fleet.kustomize import Manifest, containers_of, pod_spec

HEALTH_CHECK_FAILED = "HealthCheckFailed"
# apps/v1 DeploymentSpec.progressDeadlineSeconds defaults to 600.
DEFAULT_PROGRESS_DEADLINE_S = 600
# ssa.WaitOptions.Interval in checkHealth: the status poller looks again every 5 s.
POLL_INTERVAL_S = 5.0
# The wait returns when its context's deadline fires; `time.Since(checkStart)` is then a few
# milliseconds past the timeout (the deferred cancel and the collector's last event).
TIMEOUT_OVERRUN_S = 0.004
# One round of status reads from the panel's API server (the immediate first poll, or any poll
# that finds a Failed object): tens of milliseconds on a single-node panel.
POLL_ROUND_S = 0.037
# Every namespace holds this ConfigMap (the kube-root-ca.crt publisher of kube-controller-manager).
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
_NANOSECONDS = 1_000_000_000


class ImageRegistry(Protocol):
    """Whether a panel can pull an image; a reason when it cannot (the lab's words, for ground truth)."""

    def pull_problem(self, image: str, *, with_pull_secret: bool) -> str | None: ...


@dataclass(frozen=True)
class ClusterObjects:
    """What a panel holds that pods read: secrets and ConfigMaps by (namespace, name) → keys."""

    secrets: Mapping[tuple[str, str], frozenset[str]]
    config_maps: Mapping[tuple[str, str], frozenset[str]]

    def config_map_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        if name == ROOT_CA_CONFIGMAP:
            return frozenset({"ca.crt"})
        return self.config_maps.get((namespace, name))


@dataclass(frozen=True)
class DeploymentHealth:
    object_id: str  # Kind/namespace/name, as Flux prints it
    ready: bool
    problems: tuple[str, ...] = ()  # why its pods cannot start (kubelet's words where it has them)
    status: str = "Current"  # kstatus: Current, InProgress or Failed


@dataclass(frozen=True)
class HealthVerdict:
    ok: bool
    message: str = ""  # kustomize-controller's Ready message when not ok
    deployments: tuple[DeploymentHealth, ...] = ()


@dataclass
class HealthLedger:
    """Since when each Deployment (by its pod template) could not start, per panel and kustomization.

    A changed pod template is a new rollout, whose progress deadline starts again; a Deployment that
    can start is forgotten.
    """

    # scope (panel/configuration/kustomization) → (Deployment id, pod template fingerprint) → since
    unready_since: dict[str, dict[tuple[str, str], datetime]] = field(default_factory=dict)
    last: dict[str, HealthVerdict] = field(default_factory=dict)  # by scope

    def reset(self) -> None:
        self.unready_since.clear()
        self.last.clear()


def object_id(item: Manifest) -> str:
    metadata = item.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name", "")
    kind = item.get("kind", "")
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def cluster_objects(
    panel_secrets: Mapping[tuple[str, str], frozenset[str]], applied: list[Manifest]
) -> ClusterObjects:
    """The panel's own secrets plus the Secrets and ConfigMaps its kustomizations applied."""
    secrets = dict(panel_secrets)
    config_maps: dict[tuple[str, str], frozenset[str]] = {}
    for item in applied:
        kind = item.get("kind")
        if kind not in ("Secret", "ConfigMap"):
            continue
        metadata = item.get("metadata") or {}
        key = (str(metadata.get("namespace") or "default"), str(metadata.get("name", "")))
        keys = frozenset(
            str(name)
            for section in ("data", "stringData", "binaryData")
            for name in (item.get(section) or {})
        )
        (secrets if kind == "Secret" else config_maps)[key] = keys
    return ClusterObjects(secrets=secrets, config_maps=config_maps)


@dataclass(frozen=True)
class _Reference:
    """A Secret or ConfigMap (or one key of it) a pod reads, and whether the pod may start without it."""

    kind: str  # "Secret" or "ConfigMap"
    name: str
    key: str | None
    optional: bool


def _reference(kind: str, name: object, key: object, optional: object) -> _Reference:
    return _Reference(kind, str(name or ""), None if key is None else str(key), optional is True)


# (field, kind) of what a container's env `valueFrom` / `envFrom` and a volume source may read.
_ENV_SOURCES = (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap"))
_ENV_FROM_SOURCES = (("secretRef", "Secret"), ("configMapRef", "ConfigMap"))
_VOLUME_SOURCES = (("secret", "Secret"), ("configMap", "ConfigMap"))


def _container_references(container: Mapping[str, Any]) -> list[_Reference]:
    found: list[_Reference] = []
    for env in container.get("env") or ():
        source = (env or {}).get("valueFrom") or {}
        found.extend(
            _reference(kind, ref.get("name"), ref.get("key", ""), ref.get("optional"))
            for field_name, kind in _ENV_SOURCES
            if isinstance(ref := source.get(field_name), dict)
        )
    for env_from in container.get("envFrom") or ():
        found.extend(
            _reference(kind, ref.get("name"), None, ref.get("optional"))
            for field_name, kind in _ENV_FROM_SOURCES
            if isinstance(ref := (env_from or {}).get(field_name), dict)
        )
    return found


def _volume_references(volume: Mapping[str, Any]) -> list[_Reference]:
    found: list[_Reference] = []
    for source in [volume, *((volume.get("projected") or {}).get("sources") or ())]:
        for field_name, kind in _VOLUME_SOURCES:
            ref = (source or {}).get(field_name)
            if not isinstance(ref, dict):
                continue
            name = ref.get("secretName") or ref.get("name")
            found.append(_reference(kind, name, None, ref.get("optional")))
            found.extend(
                _reference(kind, name, (item or {}).get("key", ""), ref.get("optional"))
                for item in ref.get("items") or ()
            )
    return found


def _references(spec: Mapping[str, Any]) -> list[_Reference]:
    """What a pod spec reads: env `valueFrom`, `envFrom`, and `secret`/`configMap` (projected) volumes."""
    found = [ref for c in containers_of(spec) if isinstance(c, dict) for ref in _container_references(c)]
    found.extend(
        ref for v in spec.get("volumes") or () if isinstance(v, dict) for ref in _volume_references(v)
    )
    return found


def deployment_problems(item: Manifest, cluster: ClusterObjects, registry: ImageRegistry | None) -> list[str]:
    """Why this Deployment's pods cannot start on the panel (empty: they can), in kubelet's words."""
    spec = pod_spec(item) or {}
    namespace = str((item.get("metadata") or {}).get("namespace") or "default")
    problems: list[str] = []
    for ref in _references(spec):
        if ref.optional:
            continue
        if ref.kind == "Secret":
            keys = cluster.secrets.get((namespace, ref.name))
        else:
            keys = cluster.config_map_keys(namespace, ref.name)
        if keys is None:
            problems.append(f'{ref.kind.lower()} "{ref.name}" not found')
        elif ref.key is not None and ref.key not in keys:
            problems.append(f"couldn't find key {ref.key} in {ref.kind} {namespace}/{ref.name}")
    pull_secrets = [str((ref or {}).get("name", "")) for ref in spec.get("imagePullSecrets") or ()]
    # kubelet pulls without a listed secret it cannot find ("Unable to retrieve some image pull secrets").
    with_pull_secret = any((namespace, name) in cluster.secrets for name in pull_secrets)
    if registry is not None:
        for container in containers_of(spec):
            image = container.get("image") if isinstance(container, dict) else None
            if isinstance(image, str):
                problem = registry.pull_problem(image, with_pull_secret=with_pull_secret)
                if problem is not None:
                    problems.append(problem)
    return list(dict.fromkeys(problems))


def _template_fingerprint(item: Manifest) -> str:
    template = (item.get("spec") or {}).get("template")
    return hashlib.sha256(json.dumps(template, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _replicas(item: Manifest) -> int:
    value = (item.get("spec") or {}).get("replicas", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def _progress_deadline_s(item: Manifest) -> float:
    value = (item.get("spec") or {}).get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S)
    return (
        float(value)
        if isinstance(value, int) and not isinstance(value, bool)
        else DEFAULT_PROGRESS_DEADLINE_S
    )


def check_health(
    objects: tuple[Manifest, ...],
    *,
    cluster: ClusterObjects,
    registry: ImageRegistry | None,
    ledger: HealthLedger,
    scope: str,
    now: datetime,
    timeout_s: float,
) -> HealthVerdict:
    """kustomize-controller's health check of the applied `objects` (only Deployments can be unready)."""
    results: list[DeploymentHealth] = []
    known = ledger.unready_since.get(scope, {})
    still_unready: dict[tuple[str, str], datetime] = {}
    # For each blocked Deployment: seconds from now until its progress deadline passes (0: passed).
    until_failed: dict[str, float] = {}
    for item in objects:
        if item.get("kind") != "Deployment":
            continue
        identifier = object_id(item)
        problems = deployment_problems(item, cluster, registry) if _replicas(item) > 0 else []
        if not problems:
            results.append(DeploymentHealth(identifier, ready=True))
            continue
        key = (identifier, _template_fingerprint(item))
        since = still_unready[key] = known.get(key, now)
        until_failed[identifier] = max(0.0, _progress_deadline_s(item) - (now - since).total_seconds())
        results.append(DeploymentHealth(identifier, ready=False, problems=tuple(problems)))
    if still_unready:
        ledger.unready_since[scope] = still_unready
    else:
        ledger.unready_since.pop(scope, None)
    if not until_failed:
        verdict = HealthVerdict(ok=True, deployments=tuple(results))
        ledger.last[scope] = verdict
        return verdict
    # The poller sees a Deployment Failed at the first poll after its deadline (polls at 0, 5 s, …);
    # fail-fast then ends the wait. A poll due exactly at the timeout never happens: the wait has ended.
    first_poll = min(
        math.ceil(seconds / POLL_INTERVAL_S) * POLL_INTERVAL_S for seconds in until_failed.values()
    )
    if first_poll < timeout_s:
        failed = {name for name, seconds in until_failed.items() if seconds <= first_poll}
        statuses = {name: ("Failed" if name in failed else "InProgress") for name in until_failed}
        listed = sorted(failed)
        elapsed = first_poll + POLL_ROUND_S
        reason = "failed early due to stalled resources"
    else:
        statuses = dict.fromkeys(until_failed, "InProgress")
        listed = sorted(until_failed)
        elapsed = timeout_s + TIMEOUT_OVERRUN_S
        reason = "timeout waiting for"
    entries = ", ".join(f"{name} status: '{statuses[name]}'" for name in listed)
    message = f"health check failed after {go_duration(elapsed)}: {reason}: [{entries}]"
    verdict = HealthVerdict(
        ok=False,
        message=message,
        deployments=tuple(
            DeploymentHealth(r.object_id, r.ready, r.problems, statuses.get(r.object_id, "Current"))
            for r in results
        ),
    )
    ledger.last[scope] = verdict
    return verdict


def go_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` (e.g. `10m0.004s`, `37ms`), as Flux prints elapsed times."""
    nanoseconds = round(seconds * _NANOSECONDS)
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < _NANOSECONDS:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000)):
            if nanoseconds >= size:
                return _trim(nanoseconds / size) + unit
        return f"{nanoseconds}ns"
    whole, fraction = divmod(nanoseconds, _NANOSECONDS)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs}" + (f".{fraction:09d}".rstrip("0") if fraction else "") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def describe(verdict: HealthVerdict) -> list[dict[str, Any]]:
    """A health verdict's Deployments for ground truth."""
    return [
        {"object": d.object_id, "ready": d.ready, "status": d.status, "problems": list(d.problems)}
        for d in verdict.deployments
    ]
