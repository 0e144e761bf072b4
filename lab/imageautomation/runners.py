"""Which cluster runs the image controllers, and what they see there: the runner, as its cluster has it.

The fleet's design (DESIGN.md, "Least privilege for image automation") has exactly one automation
runner: the cluster tagged `fluxfleet-role: image-automation`, whose `microsoft.flux` extension
enables image-reflector-controller and image-automation-controller and whose Flux configuration
applies `./kubernetes/flux-system/image-automation` with the write credential. The simulator does
what those controllers would do on each such cluster (several runners run, and race, separately),
so this module reads, for each runner, what its controllers would find in the cluster:

- whether they run at all: the cluster is up and its Arc agents work (`Panel.agents_can_run`: online,
  managed-identity certificate valid, microsoft.flux installed and running) and the extension's
  `configurationSettings` switch the controller on (`Panel.image_controllers`; on Arc both are off by
  default, tutorial-use-gitops-flux2.md);
- which image objects exist: those the runner's kustomization applied — the manifests kustomize builds
  at the revision the runner's agent applied (not the branch HEAD), refused entirely when the
  extension's CRDs do not serve their API version (`shared.image_policy.extension_support`) or when
  an ImagePolicy breaks the CRD's CEL rules, as the API server refuses them at kustomize-controller's
  dry-run;
- the credential: the one the runner's agent holds (`httpsUser` and the base64-decoded `httpsKey`
  of its delivered configuration), never a lab-internal one.

A kustomization removed from the configuration leaves no objects behind here (the seeded
configurations prune, so kustomize-controller deletes what it applied).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lab.fleet.kustomize import RepoTree, build_kustomization, tree_path, work_dir_for
from lab.fleet.model import FLUX_CONFIGURATION_NAME, ROLE_TAG, RUNNER_ROLE, Panel, fingerprint
from shared.image_policy import (
    ImageObjects,
    dry_run_error,
    interval_rule_violation,
    parse_image_documents,
    unserved_objects,
)
from shared.image_policy.extension_support import RECONCILIATION_FAILED_REASON

if TYPE_CHECKING:
    from lab.devops.models import GitRepositoryBackend

# The folder the runner's `image-automation` kustomization applies (the repository's layout).
IMAGE_AUTOMATION_PATH = "./kubernetes/flux-system/image-automation"
REFLECTOR = "image-reflector-controller"
AUTOMATION = "image-automation-controller"
_EMPTY = ImageObjects((), (), (), ())


@dataclass(frozen=True)
class KustomizationOutcome:
    """The runner's kustomization that applies the image objects, as kustomize-controller reports it."""

    name: str  # the Flux object: `<configuration>-<kustomization>`
    path: str
    ready: bool
    reason: str
    message: str

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "ready": self.ready,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True)
class RunnerView:
    """What the image controllers on one runner cluster see right now. Never logged: holds a PAT."""

    name: str
    cluster_id: str
    extension_version: str | None
    reflector: bool  # image-reflector-controller runs
    automation: bool  # image-automation-controller runs
    reason: str | None  # why nothing runs (None: the enabled controllers run)
    configuration: str | None
    git_url: str | None
    branch: str | None
    applied_revision: str | None
    kustomization: KustomizationOutcome | None
    objects: ImageObjects
    objects_fingerprint: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.reason is None and (self.reflector or self.automation)

    @property
    def credential_fingerprint(self) -> str | None:
        return fingerprint(self.password) if self.password else None

    def document(self) -> dict[str, Any]:
        return {
            "cluster": self.name,
            "id": self.cluster_id,
            "running": self.running,
            "reason": self.reason,
            "extensionVersion": self.extension_version,
            "controllers": {REFLECTOR: self.reflector, AUTOMATION: self.automation},
            "configuration": self.configuration,
            "appliedRevision": self.applied_revision,
            "kustomization": self.kustomization.document() if self.kustomization else None,
            "credentialFingerprint": self.credential_fingerprint,
            "httpsUser": self.username,
        }


def is_runner(panel: Panel) -> bool:
    return panel.identity.tags.get(ROLE_TAG) == RUNNER_ROLE


class RunnerObserver:
    """Reads runners from the fleet; trees of applied revisions are cached (a commit never changes)."""

    # Commits whose trees are kept: the runner's current one and a few it moved from, which is all a
    # cycle asks for; more would only grow memory over a long demo.
    TREE_CACHE_SIZE = 8

    def __init__(self, repository: GitRepositoryBackend | None) -> None:
        self._repository = repository
        self._trees: dict[str, RepoTree] = {}

    def reset(self) -> None:
        self._trees.clear()  # the repository was reseeded: the same sha cannot come back, but be tidy

    def observe(self, panel: Panel, now: datetime) -> RunnerView:
        ident = panel.identity
        controllers = panel.image_controllers()
        reflector, automation = controllers.get(REFLECTOR, False), controllers.get(AUTOMATION, False)
        base: dict[str, Any] = {
            "name": ident.name,
            "cluster_id": ident.id,
            "extension_version": panel.flux_extension_version,
            "reflector": reflector,
            "automation": automation,
        }
        found = self._automation_kustomization(panel)
        if found is None:
            return _idle(base, "no Flux configuration on the cluster applies " + IMAGE_AUTOMATION_PATH)
        config_name, kustomization_name, path = found
        delivered = panel.delivered(config_name)
        git = delivered.spec.git_repository if delivered is not None else None
        state = panel.agents.get(config_name.lower())
        revision = state.applied_revision if state is not None else None
        credentials = delivered.https_credentials() if delivered is not None else None
        base |= {
            "configuration": config_name,
            "git_url": git.url if git is not None else None,
            "branch": git.repository_ref.branch if git is not None and git.repository_ref else None,
            "applied_revision": revision,
            "username": credentials[0] if credentials else None,
            "password": credentials[1] if credentials else None,
        }
        if not panel.connectivity.online:
            return _idle(base, "the cluster is offline")
        if not panel.agents_can_run(now):
            status = panel.connectivity.status(now)
            why = "its Arc certificate expired" if status == "Expired" else "microsoft.flux is not running"
            return _idle(base, f"Flux does not run on the cluster: {why}")
        if not (reflector or automation):
            return _idle(
                base,
                "microsoft.flux runs neither image controller (configurationSettings "
                "image-reflector-controller.enabled / image-automation-controller.enabled)",
            )
        if revision is None:
            return _idle(base, f"kustomization {config_name}-{kustomization_name} has not applied a revision")
        outcome, objects = self._applied_objects(
            panel,
            revision,
            object_name=f"{config_name}-{kustomization_name}",
            path=path,
            label=base["branch"] or "master",  # Flux's revision label; a GitRepository without ref: master
        )
        return RunnerView(
            **base,
            reason=None if outcome.ready else f"kustomization {outcome.name}: {outcome.reason}",
            kustomization=outcome,
            objects=objects,
            objects_fingerprint=_fingerprint_objects(objects),
        )

    def _automation_kustomization(self, panel: Panel) -> tuple[str, str, str] | None:
        """(configuration, kustomization, path) of the first kustomization applying the image objects."""
        wanted = tree_path(IMAGE_AUTOMATION_PATH)
        names = sorted(panel.flux_configs, key=lambda key: (key != FLUX_CONFIGURATION_NAME, key))
        for key in names:
            delivered = panel.delivered(key)
            if delivered is None:
                continue
            for kustomization in delivered.spec.kustomizations:
                if tree_path(kustomization.path) == wanted:
                    return panel.flux_configs[key].name, kustomization.name, kustomization.path
        return None

    def _applied_objects(
        self, panel: Panel, revision: str, *, object_name: str, path: str, label: str
    ) -> tuple[KustomizationOutcome, ImageObjects]:
        tree = self._tree(revision)
        if tree is None:
            return _failed(
                object_name, path, "ArtifactFailed", "Source artifact not found, retrying in 30s"
            ), _EMPTY
        built = build_kustomization(tree, path, work_dir=work_dir_for(object_name))
        if not built.ok:
            return _failed(object_name, path, built.reason or "BuildFailed", built.message), _EMPTY
        objects = parse_image_documents((f"{path} (built)", manifest) for manifest in built.objects)
        version = panel.flux_extension_version or ""
        unserved = unserved_objects(version, objects)
        if unserved:
            return _failed(
                object_name, path, RECONCILIATION_FAILED_REASON, dry_run_error(unserved[0])
            ), _EMPTY
        for policy in sorted(objects.policies, key=lambda item: (item.namespace, item.name)):
            rule = interval_rule_violation(policy)
            if rule is not None:
                # The API server's CEL refusal at kustomize-controller's dry-run [derived: apiserver's
                # field-error format `<field>: Invalid value: "object": <rule message>`].
                message = (
                    f"ImagePolicy/{policy.namespace}/{policy.name} dry-run failed (Invalid): "
                    f'ImagePolicy.image.toolkit.fluxcd.io "{policy.name}" is invalid: spec: '
                    f'Invalid value: "object": {rule}\n'
                )
                return _failed(object_name, path, RECONCILIATION_FAILED_REASON, message), _EMPTY
        applied = KustomizationOutcome(
            object_name, path, True, "ReconciliationSucceeded", f"Applied revision: {label}@sha1:{revision}"
        )
        return applied, objects

    def _tree(self, revision: str) -> RepoTree | None:
        cached = self._trees.get(revision)
        if cached is not None or self._repository is None:
            return cached
        items = self._repository.get_items("/", revision, "full")
        if items is None:
            return None
        files: dict[str, bytes] = {}
        dirs: set[str] = set()
        for item in items:
            relative = item.path.strip("/")
            if not relative:
                continue
            if item.is_folder:
                dirs.add(relative)
            else:
                data = self._repository.read_blob(relative, revision)
                if data is not None:
                    files[relative] = data
        tree = RepoTree(revision=revision, files=files, dirs=frozenset(dirs))
        if len(self._trees) >= self.TREE_CACHE_SIZE:
            self._trees.pop(next(iter(self._trees)))
        self._trees[revision] = tree
        return tree


def _idle(base: Mapping[str, Any], reason: str) -> RunnerView:
    values = {
        "configuration": None,
        "git_url": None,
        "branch": None,
        "applied_revision": None,
        **base,
    }
    return RunnerView(**values, reason=reason, kustomization=None, objects=_EMPTY, objects_fingerprint="")


def _failed(name: str, path: str, reason: str, message: str) -> KustomizationOutcome:
    return KustomizationOutcome(name, path, False, reason, message)


def _fingerprint_objects(objects: ImageObjects) -> str:
    """Changes when any applied image object changes (what a controller's watch would notice)."""
    digest = hashlib.sha256()
    for obj in (*objects.repositories, *objects.policies, *objects.automations):
        digest.update(repr(obj).encode())
    return digest.hexdigest()[:16]
