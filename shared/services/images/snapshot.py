"""The GitOps repository as image automation sees it at one commit, read once and cached.

A verdict needs the ImageRepository/ImagePolicy/ImageUpdateAutomation objects and every setter
marker at HEAD of the tracked branch. A commit never changes, so its snapshot is cached by commit
id; and most files do not change between two commits, so file texts are cached by Git object id
and a new commit costs one tree listing plus the files that actually changed (read concurrently).
Only files Flux could read are fetched (`*.yaml`, `*.yml`, `Kustomization`), and only those that
mention image automation are kept in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from shared.image_policy import (
    ImageObjects,
    ImagePolicy,
    ImageUpdateAutomation,
    Marker,
    MarkerScan,
    files_in_update_path,
    parse_image_objects,
    scan_markers,
)
from shared.models.images import CommitId, RepoFile
from shared.services.images.ports import RepoReader

# Texts that cannot matter to image automation are dropped after screening: an object needs its
# apiVersion group, a marker needs IAC's screen token (reference §9.2).
_RELEVANT_TOKENS = ("image.toolkit.fluxcd.io", '"$imagepolicy"')
# A handful of recent commits covers HEAD moving while follow-ups look at older ones.
SNAPSHOTS_KEPT = 8
# File texts by object id; a GitOps repository has hundreds of manifests, not tens of thousands.
BLOBS_KEPT = 4096


def _flux_reads(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return base.endswith((".yaml", ".yml")) or base == "Kustomization"


@dataclass(frozen=True)
class RepoSnapshot:
    """Image automation objects and setter markers at one commit."""

    commit: CommitId
    files: Mapping[str, str] = field(hash=False)  # relevant files only: path -> text
    objects: ImageObjects = field(hash=False)
    scan: MarkerScan = field(hash=False)

    def automations_for(self, policy: ImagePolicy) -> list[ImageUpdateAutomation]:
        """Automations whose namespace and `policySelector` take `policy` (Flux's `getPolicies`)."""
        return [automation for automation in self.objects.automations if automation.selects(policy)]

    def markers_for(self, policy: ImagePolicy, automation: ImageUpdateAutomation) -> list[Marker]:
        """Markers that `automation` would rewrite for `policy`: under its update path, same namespace."""
        if policy.namespace != automation.namespace:
            return []
        in_path = set(files_in_update_path(self.files, automation.update_path))
        return [
            marker
            for marker in self.scan.markers
            if marker.path in in_path
            and marker.policy_namespace == policy.namespace
            and marker.policy_name == policy.name
        ]

    def markers_anywhere(self, policy: ImagePolicy) -> list[Marker]:
        """Markers naming `policy` in any file (to explain a `no-marker` verdict)."""
        return [
            marker
            for marker in self.scan.markers
            if marker.policy_namespace == policy.namespace and marker.policy_name == policy.name
        ]


def build_snapshot(commit: CommitId, files: Mapping[str, str]) -> RepoSnapshot:
    """A snapshot from file texts (pure; what `RepoSnapshots` does after reading)."""
    relevant = {
        path: text for path, text in files.items() if any(token in text for token in _RELEVANT_TOKENS)
    }
    return RepoSnapshot(commit, relevant, parse_image_objects(relevant), scan_markers(relevant))


class RepoSnapshots:
    """Reads and caches snapshots through a `RepoReader`; safe to share between threads."""

    def __init__(self, *, reader: RepoReader, executor: Executor) -> None:
        self._reader = reader
        self._executor = executor
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[CommitId, RepoSnapshot] = OrderedDict()
        self._blobs: OrderedDict[str, str] = OrderedDict()

    def at(self, commit: CommitId) -> RepoSnapshot:
        with self._lock:
            cached = self._snapshots.get(commit)
            if cached is not None:
                self._snapshots.move_to_end(commit)
                return cached
        snapshot = build_snapshot(commit, self._read_files(commit))
        with self._lock:
            self._snapshots[commit] = snapshot
            while len(self._snapshots) > SNAPSHOTS_KEPT:
                self._snapshots.popitem(last=False)
        return snapshot

    def _read_files(self, commit: CommitId) -> dict[str, str]:
        listing = [item for item in self._reader.list_files(commit=commit) if _flux_reads(item.path)]
        texts: dict[str, str] = {}
        missing: list[RepoFile] = []
        with self._lock:
            for item in listing:
                text = self._blobs.get(item.object_id)
                if text is None:
                    missing.append(item)
                else:
                    texts[item.path] = text
        fetched = self._fetch(missing, commit)
        with self._lock:
            for item, text in zip(missing, fetched, strict=True):
                texts[item.path] = text
                self._blobs[item.object_id] = text
            while len(self._blobs) > BLOBS_KEPT:
                self._blobs.popitem(last=False)
        return texts

    def _fetch(self, items: Sequence[RepoFile], commit: CommitId) -> list[str]:
        if len(items) <= 1:
            return [self._reader.read_file(path=item.path, commit=commit) for item in items]
        futures = [
            self._executor.submit(self._reader.read_file, path=item.path, commit=commit) for item in items
        ]
        return [future.result() for future in futures]
