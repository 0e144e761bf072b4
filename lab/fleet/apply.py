"""What applying a revision does on a panel: build every kustomization, then wait for its Deployments.

kustomize-controller reconciles each Kustomization on its interval: it builds the path from the
source artifact (`lab.fleet.kustomize`), applies the objects, and — `wait: true`, which Arc's Flux
configurations default to — waits until they are healthy (`lab.fleet.health`). The agent does the
same on every sync, with the revision it holds, so a panel reports a broken commit as `BuildFailed`
and a Deployment that cannot start there as `HealthCheckFailed`, while its GitRepository goes on
fetching new revisions. A repaired secret or a fixed commit shows at the next sync.

A build depends only on the commit and the path, so it is made once per (revision, kustomization)
and shared by the fleet; health depends on the panel (its secrets) and on the registry, so it is
judged per panel and sync.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from lab.fleet.health import (
    HEALTH_CHECK_FAILED,
    HealthLedger,
    HealthVerdict,
    ImageRegistry,
    check_health,
    cluster_objects,
)
from lab.fleet.kustomize import BuildResult, Manifest, RepoTree, build_kustomization, work_dir_for
from lab.fleet.model import ConfigAgentState, DeliveredConfig, FluxConfig, Panel
from lab.fleet.secrets import PanelSecrets

log = logging.getLogger("lab.fleet.apply")

# Builds kept: (revision, kustomization) pairs; a few per revision, for as many revisions as the
# fetcher keeps files of (git_fetch.TREE_CACHE_REVISIONS), so a build is never redone while it matters.
BUILD_CACHE_ENTRIES = 1024
TREE_CACHE_REVISIONS = 256


@dataclass(frozen=True)
class KustomizationFailure:
    """Why a Kustomization is not Ready, in kustomize-controller's reason and message."""

    reason: str
    message: str


@dataclass(frozen=True)
class KustomizationRecord:
    """The last build and health check of one kustomization on one panel (ground truth)."""

    revision: str
    build: BuildResult
    health: HealthVerdict | None


class Applier:
    """Builds and health checks for every panel's agent; `reset()` forgets panels' history."""

    def __init__(self, *, registry: ImageRegistry | None = None, secrets: PanelSecrets | None = None) -> None:
        self.registry = registry
        self.secrets = secrets or PanelSecrets()
        self.ledger = HealthLedger()
        self._trees: OrderedDict[str, RepoTree] = OrderedDict()
        self._builds: OrderedDict[tuple[str, str, str], BuildResult] = OrderedDict()
        self.records: dict[tuple[str, str], KustomizationRecord] = {}  # (panel, object name) → last
        self._warned: set[tuple[str, str]] = set()

    def reset(self) -> None:
        """A new fleet: seeded secrets everywhere, no health history (builds stay: they are pure)."""
        self.secrets.reset()
        self.ledger.reset()
        self.records.clear()

    def remember(self, tree: RepoTree) -> None:
        self._trees[tree.revision] = tree
        self._trees.move_to_end(tree.revision)
        while len(self._trees) > TREE_CACHE_REVISIONS:
            self._trees.popitem(last=False)

    def outcomes(
        self,
        config: FluxConfig,
        state: ConfigAgentState,
        delivered: DeliveredConfig,
        panel: Panel | None,
        now: datetime,
    ) -> dict[str, KustomizationFailure | None]:
        """Per kustomization name: a failure, or None when applied and healthy.

        Kustomizations missing from the answer could not be judged (no artifact yet, or the
        revision's files are not known): the caller keeps its path-only judgement for them. Without
        a `panel` (the seed sync, which records a fleet before it runs) health is not checked: the
        seeded secrets are what the seeded manifests read.
        """
        revision = state.applied_revision
        tree = self._trees.get(revision) if revision is not None else None
        if revision is None or tree is None:
            return {}
        builds = {
            k.name: self._build(tree, k.path, f"{config.name}-{k.name}")
            for k in delivered.spec.kustomizations
        }
        applied: list[Manifest] = [item for build in builds.values() if build.ok for item in build.objects]
        cluster = cluster_objects(self.secrets.keys_of(panel.name), applied) if panel is not None else None
        results: dict[str, KustomizationFailure | None] = {}
        for k in delivered.spec.kustomizations:
            object_name = f"{config.name}-{k.name}"
            build = builds[k.name]
            health: HealthVerdict | None = None
            if not build.ok:
                results[k.name] = KustomizationFailure(build.reason or "BuildFailed", build.message)
            elif k.wait and panel is not None and cluster is not None:
                health = check_health(
                    build.objects,
                    cluster=cluster,
                    registry=self.registry,
                    ledger=self.ledger,
                    scope=f"{panel.name}/{config.uid}/{k.name}",
                    now=now,
                    timeout_s=float(k.timeout_in_seconds),
                )
                results[k.name] = (
                    None if health.ok else KustomizationFailure(HEALTH_CHECK_FAILED, health.message)
                )
            else:
                results[k.name] = None
            if panel is not None:
                self.records[(panel.name.lower(), object_name)] = KustomizationRecord(revision, build, health)
        return results

    def records_of(self, panel: str) -> Mapping[str, KustomizationRecord]:
        """The last build and health check of each kustomization of a panel, by Flux object name."""
        key = panel.lower()
        return {name: record for (owner, name), record in self.records.items() if owner == key}

    def _build(self, tree: RepoTree, path: str, object_name: str) -> BuildResult:
        key = (tree.revision, path, object_name)
        build = self._builds.get(key)
        if build is None:
            build = build_kustomization(tree, path, work_dir=work_dir_for(object_name))
            self._builds[key] = build
            while len(self._builds) > BUILD_CACHE_ENTRIES:
                self._builds.popitem(last=False)
            if build.unapplied_fields and (tree.revision, path) not in self._warned:
                self._warned.add((tree.revision, path))
                log.warning(
                    "kustomize fields the lab does not apply: %s",
                    ", ".join(build.unapplied_fields),
                    extra={"revision": tree.revision, "path": path},
                )
        else:
            self._builds.move_to_end(key)
        return build
