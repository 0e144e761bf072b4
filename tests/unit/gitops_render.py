"""The small part of `kustomize build` that the seed's `kubernetes/` tree uses, in pure Python.

Why not run kustomize: the tests must run offline with nothing but the venv, and the seed only
needs `resources:` (files and folders, followed recursively) plus `namespace:`. Why not accept
more: a renderer that silently ignored, say, `patches:` or `images:` would let the tests pass on
content Flux renders differently. So every Kustomization field outside that subset, and every
resource this subset cannot load the way kustomize does, raises `UnsupportedKustomizeFeatureError`,
and a test that meets one fails loudly until the renderer learns the feature.

What is implemented, following kustomize (api/krusty, api/filters/namespace):

- a folder is a kustomization when it holds exactly one of `kustomization.yaml`,
  `kustomization.yml` or `Kustomization`; two of them is an error, as in kustomize;
- `resources:` entries are files (multi-document YAML, empty documents skipped) or folders, in
  the order listed; a folder is rendered first and its objects appended;
- `namespace:` sets `metadata.namespace` on every namespaced object, replacing any value, leaves
  cluster-scoped kinds alone, and renames `Namespace` objects to it (kustomize's default
  field spec `metadata/name` for kind Namespace); kinds where it also rewrites references inside
  the object (bindings, APIService, CRD webhooks) are refused;
- two objects with the same group, kind, namespace and name are an error, as is a cycle of
  folders;
- a path may not leave the repository root (Flux builds inside the fetched artifact only).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILE_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
"""The file names kustomize recognises as a kustomization, in its order of preference."""

KUSTOMIZE_API_VERSION = "kustomize.config.k8s.io/v1beta1"

SUPPORTED_KUSTOMIZATION_FIELDS = frozenset({"apiVersion", "kind", "metadata", "namespace", "resources"})
"""Kustomization fields this renderer implements; `metadata` is informational only in kustomize."""

CLUSTER_SCOPED_KINDS = frozenset(
    {
        # Core and built-in API kinds that have no namespace (kustomize's namespace transformer
        # skips the same ones; `kubectl api-resources --namespaced=false` on Kubernetes 1.30).
        "APIService",
        "CSIDriver",
        "CSINode",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)

KINDS_WITH_NAMESPACED_REFERENCES = frozenset(
    {"RoleBinding", "ClusterRoleBinding", "APIService", "CustomResourceDefinition"}
)
"""Kinds where kustomize's `namespace:` also rewrites a reference inside the object (binding
subjects, the service of an APIService or of a CRD conversion webhook); not implemented, so refused."""

Manifest = dict[str, Any]
"""One Kubernetes object as loaded from YAML (a raw, untyped payload)."""


class KustomizeRenderError(Exception):
    """The tree cannot be rendered: kustomize (and so Flux) would refuse it too."""


class UnsupportedKustomizeFeatureError(KustomizeRenderError):
    """The tree uses something kustomize supports but this subset does not implement."""


@dataclass(frozen=True)
class RenderedObject:
    """One object of a rendered kustomization and the file it came from."""

    manifest: Manifest
    source_file: Path

    @property
    def api_version(self) -> str:
        return str(self.manifest["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        namespace = self.manifest["metadata"].get("namespace")
        return None if namespace is None else str(namespace)

    @property
    def labels(self) -> Mapping[str, str]:
        labels: Mapping[str, str] = self.manifest["metadata"].get("labels") or {}
        return labels


def find_kustomization_file(directory: Path) -> Path | None:
    """The kustomization file of `directory`, None when it has none; two of them is an error."""
    present = [directory / name for name in KUSTOMIZATION_FILE_NAMES if (directory / name).is_file()]
    if len(present) > 1:
        raise KustomizeRenderError(f"{directory}: found multiple kustomization files: {present}")
    return present[0] if present else None


def load_kustomization(kustomization_file: Path) -> Manifest:
    """Read a kustomization file and refuse any field or form this subset does not implement."""
    document = yaml.safe_load(kustomization_file.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise KustomizeRenderError(f"{kustomization_file}: not a YAML mapping")
    kind = document.get("kind", "Kustomization")
    if kind != "Kustomization" or document.get("apiVersion", KUSTOMIZE_API_VERSION) != KUSTOMIZE_API_VERSION:
        raise UnsupportedKustomizeFeatureError(
            f"{kustomization_file}: only {KUSTOMIZE_API_VERSION} Kustomization is implemented, "
            f"not {document.get('apiVersion')} {kind}"
        )
    unsupported = sorted(set(document) - SUPPORTED_KUSTOMIZATION_FIELDS)
    if unsupported:
        raise UnsupportedKustomizeFeatureError(
            f"{kustomization_file}: kustomization fields not implemented by gitops_render: {unsupported}"
        )
    resources = document.get("resources", [])
    if not isinstance(resources, list) or not all(isinstance(entry, str) for entry in resources):
        raise KustomizeRenderError(f"{kustomization_file}: `resources` must be a list of strings")
    namespace = document.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise KustomizeRenderError(f"{kustomization_file}: `namespace` must be a string")
    return document


def resolve_resource_entry(entry: str, *, kustomization_dir: Path, repo_root: Path) -> Path:
    """The local path a `resources:` entry names, refusing remote bases and paths outside the repo."""
    if "://" in entry or entry.startswith(("github.com/", "git@")):
        raise UnsupportedKustomizeFeatureError(
            f"{kustomization_dir}: remote resource {entry!r} is not implemented"
        )
    path = (kustomization_dir / entry).resolve()
    if not path.is_relative_to(repo_root.resolve()):
        raise KustomizeRenderError(f"{kustomization_dir}: resource {entry!r} is outside the repository")
    return path


def load_manifests(manifest_file: Path) -> list[Manifest]:
    """Every non-empty document of a (multi-document) YAML file, each checked to be an object."""
    manifests: list[Manifest] = []
    for document in yaml.safe_load_all(manifest_file.read_text(encoding="utf-8")):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise KustomizeRenderError(f"{manifest_file}: a document is not a YAML mapping")
        if document.get("kind") == "List" or str(document.get("kind", "")).endswith("List"):
            raise UnsupportedKustomizeFeatureError(f"{manifest_file}: List kinds are not implemented")
        metadata = document.get("metadata")
        if not document.get("apiVersion") or not document.get("kind") or not isinstance(metadata, dict):
            raise KustomizeRenderError(f"{manifest_file}: object without apiVersion, kind or metadata")
        if not metadata.get("name"):
            raise KustomizeRenderError(f"{manifest_file}: {document['kind']} without metadata.name")
        manifests.append(document)
    return manifests


def render_kustomization(directory: Path, *, repo_root: Path) -> list[RenderedObject]:
    """`kustomize build directory`, restricted to the subset this module implements."""
    rendered = list(_render(directory.resolve(), repo_root=repo_root, folders_being_rendered=()))
    _refuse_duplicate_ids(rendered)
    return rendered


def _render(
    directory: Path, *, repo_root: Path, folders_being_rendered: tuple[Path, ...]
) -> Iterator[RenderedObject]:
    if directory in folders_being_rendered:
        raise KustomizeRenderError(f"{directory}: cycle in kustomization resources")
    kustomization_file = find_kustomization_file(directory)
    if kustomization_file is None:
        raise KustomizeRenderError(
            f"{directory}: no kustomization file ({', '.join(KUSTOMIZATION_FILE_NAMES)})"
        )
    kustomization = load_kustomization(kustomization_file)
    namespace: str | None = kustomization.get("namespace")
    for entry in kustomization.get("resources", []):
        path = resolve_resource_entry(entry, kustomization_dir=directory, repo_root=repo_root)
        if path.is_dir():
            children = list(
                _render(
                    path, repo_root=repo_root, folders_being_rendered=(*folders_being_rendered, directory)
                )
            )
        elif path.is_file():
            children = [RenderedObject(manifest, path) for manifest in load_manifests(path)]
        else:
            raise KustomizeRenderError(f"{kustomization_file}: resource {entry!r} does not exist")
        for child in children:
            yield child if namespace is None else _with_namespace(child, namespace)


def _with_namespace(rendered: RenderedObject, namespace: str) -> RenderedObject:
    if rendered.kind in KINDS_WITH_NAMESPACED_REFERENCES:
        raise UnsupportedKustomizeFeatureError(
            f"{rendered.source_file}: `namespace:` over the references inside {rendered.kind} "
            "is not implemented"
        )
    manifest = copy.deepcopy(rendered.manifest)
    if rendered.kind == "Namespace":
        manifest["metadata"]["name"] = namespace
    elif rendered.kind not in CLUSTER_SCOPED_KINDS:
        manifest["metadata"]["namespace"] = namespace
    return RenderedObject(manifest, rendered.source_file)


def _refuse_duplicate_ids(rendered: list[RenderedObject]) -> None:
    seen: dict[tuple[str, str, str | None, str], Path] = {}
    for item in rendered:
        api_group = item.api_version.rpartition("/")[0]
        object_id = (api_group, item.kind, item.namespace, item.name)
        if object_id in seen:
            raise KustomizeRenderError(
                f"{item.source_file}: {item.kind} {item.namespace}/{item.name} is already defined "
                f"in {seen[object_id]}"
            )
        seen[object_id] = item.source_file
