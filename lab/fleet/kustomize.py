"""`kustomize build` as a panel's kustomize-controller runs it, over the tree the agent really fetched.

A panel fails the way a factory's fails only if its build fails for the same reasons, in the same
words. So this module builds a Flux kustomization from the blobs of the fetched commit, and when the
build fails it raises kustomize's (or Flux's) own error text, path by path, with the paths under the
temporary directory kustomize-controller extracts the artifact to (`/tmp/kustomization-<n>`).

Sources (kustomize-controller 186fb3b, 2026-08-01, which pins kustomize api v0.21.1 = v5.8.1):

- kustomize-controller `internal/controller/kustomization_controller.go`: path check (line 377-379,
  "kustomization path not found: %w", `ArtifactFailed`), the generator (line 437-439, `BuildFailed`
  with the generator's error as it is) and the build (line 791, "kustomize build failed: %w");
- fluxcd/pkg `kustomize/kustomize_generator.go` (e2cfd1a, 2026-07-22): `GenerateManifest` reads the root
  kustomization file with `sigs.k8s.io/yaml`'s lenient `Unmarshal` (unknown fields dropped), sets
  build metadata when it lists no resources, generates one from the folder's manifests when there is
  no kustomization file (`findOrGenerateKustomization`, `scanManifests`);
- kustomize `api/internal/target/kusttarget.go` (tag api/v0.21.1): `Load` (strict `Unmarshal`,
  "invalid Kustomization: …", `CheckEmpty`, `EnforceFields`), `accumulateResources` ("accumulation
  err='%s'"), `accumulateDirectory` ("couldn't make target for path '%s'", "recursed accumulation of
  path '%s'"), `accumulateFile` ("accumulating resources from '%s'"), `accumulateTarget` ("accumulating
  resources"); `api/internal/loader/fileloader.go` `New` ("must build at directory", line 172);
  kyaml `filesys/filesystem.go` `ConfirmDir` ("not a valid directory", "file is not directory") and
  `fsondisk.go` `CleanedAbs` ("evalsymlink failure on '%s' : %w"); `api/internal/kusterr`
  (`MalformedYamlError` "%s in File: %s"); kyaml `kio/byteio_reader.go` line 297
  ("MalformedYAMLError"). Errors chain with go-errors' `WrapPrefix` ("prefix: cause").

The subset: `resources` (files, multi-document, `List` kinds expanded; folders with their own
kustomization, recursively), `bases` (folded into resources, as `FixKustomization` does), `namespace`,
`images` (`newName`, `newTag`, `digest`, matched as kustomize's `image.IsImageMatched` does). Every other
field kustomize knows is accepted but not applied, and reported in `BuildResult.unapplied_fields`; a
field kustomize does not know is its strict-decoding error. Remote resources are refused (the lab has
no network to fetch them from).
"""

from __future__ import annotations

import copy
import posixpath
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from lab.fleet.yaml_errors import GoYamlError, load_all, load_first

# konfig.RecognizedKustomizationFileNames(), in kustomize's order.
KUSTOMIZATION_FILE_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZATION_KIND = "Kustomization"
COMPONENT_KIND = "Component"
KUSTOMIZATION_API_VERSION = "kustomize.config.k8s.io/v1beta1"
COMPONENT_API_VERSION = "kustomize.config.k8s.io/v1alpha1"
ARTIFACT_FAILED = "ArtifactFailed"
BUILD_FAILED = "BuildFailed"

# Every JSON field of kustomize's `types.Kustomization` (api/types/kustomization.go, api/v0.21.1),
# TypeMeta's inlined ones included: what strict decoding accepts.
KNOWN_FIELDS = (
    "apiVersion", "kind", "metadata", "openapi", "namePrefix", "nameSuffix", "namespace",
    "commonLabels", "labels", "commonAnnotations", "patchesStrategicMerge", "patchesJson6902",
    "patches", "images", "imageTags", "replacements", "replicas", "vars", "sortOptions", "resources",
    "components", "crds", "bases", "configMapGenerator", "secretGenerator", "helmGlobals",
    "helmCharts", "helmChartInflationGenerator", "generatorOptions", "configurations", "generators",
    "transformers", "validators", "buildMetadata",
)  # fmt: skip
APPLIED_FIELDS = frozenset({"apiVersion", "kind", "metadata", "namespace", "resources", "bases", "images"})
# `types.Image`'s fields (api/types/image.go).
IMAGE_FIELDS = ("name", "newName", "tagSuffix", "newTag", "digest")

# Kinds without a namespace: kustomize's namespace transformer leaves their `metadata.namespace`
# alone (the built-in ones; `kubectl api-resources --namespaced=false` on Kubernetes 1.30).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService", "CSIDriver", "CSINode", "CertificateSigningRequest", "ClusterRole",
        "ClusterRoleBinding", "ComponentStatus", "CustomResourceDefinition", "FlowSchema",
        "IngressClass", "MutatingWebhookConfiguration", "Namespace", "Node", "PersistentVolume",
        "PriorityClass", "PriorityLevelConfiguration", "RuntimeClass", "StorageClass",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration", "VolumeAttachment",
    }
)  # fmt: skip
# Where pod specs live, per kind (kustomize's image fieldspecs cover the same workload kinds).
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# os.MkdirTemp names its directory with a random uint32 in decimal: 2**32 keeps the lab's stand-in
# number in the same range (kustomize-controller's MkdirTempAbs("", "kustomization-")).
_TEMP_NAME_SPACE = 2**32

Manifest = dict[str, Any]


@dataclass(frozen=True)
class RepoTree:
    """The files of one commit as the agent fetched them: path (no leading slash) → content."""

    revision: str
    files: Mapping[str, bytes] = field(repr=False)
    dirs: frozenset[str]

    def kind_of(self, path: str) -> Literal["file", "dir"] | None:
        if path == "" or path in self.dirs:
            return "dir"
        return "file" if path in self.files else None

    def children(self, directory: str) -> list[str]:
        """Direct children of a folder, sorted as Go's `filepath.Walk` visits them (lexically)."""
        prefix = f"{directory}/" if directory else ""
        names = {
            path[len(prefix) :].split("/", 1)[0]
            for path in (*self.files, *self.dirs)
            if path.startswith(prefix) and path != directory
        }
        return sorted(f"{prefix}{name}" for name in names)


@dataclass(frozen=True)
class BuildResult:
    """What building one Flux kustomization gave: its objects, or Flux's reason and message."""

    objects: tuple[Manifest, ...] = ()
    reason: str | None = None  # None: built; ARTIFACT_FAILED or BUILD_FAILED
    message: str = ""
    unapplied_fields: tuple[str, ...] = ()  # kustomize fields the lab accepted but did not apply

    @property
    def ok(self) -> bool:
        return self.reason is None


def work_dir_for(object_name: str) -> str:
    """The `/tmp/kustomization-<n>` directory kustomize-controller would extract to: stable per object."""
    return f"/tmp/kustomization-{zlib.crc32(object_name.encode()) % _TEMP_NAME_SPACE}"  # noqa: S108


def tree_path(path: str) -> str:
    """A kustomization path as a tree path, cleaned as `securejoin` does (`./a/b/` → `a/b`)."""
    cleaned = posixpath.normpath("/" + path.strip()).lstrip("/")
    return "" if cleaned in ("", ".") else cleaned


def build_kustomization(tree: RepoTree, path: str, *, work_dir: str) -> BuildResult:
    """Build the Flux kustomization at `path` of `tree`, or say why Flux could not."""
    builder = _Builder(tree, work_dir)
    root = tree_path(path)
    kind = tree.kind_of(root)
    if kind is None:
        # kustomization_controller.go:377-379 wraps os.Stat's error.
        return BuildResult(
            reason=ARTIFACT_FAILED,
            message=f"kustomization path not found: stat {builder.absolute(root)}: no such file or directory",
        )
    try:
        kustomization = builder.generate(root) if kind == "dir" else _Kustomization(resources=())
    except _GeneratorError as error:
        return BuildResult(reason=BUILD_FAILED, message=str(error))
    try:
        objects = builder.build_root(root, kustomization)
    except _KustomizeError as error:
        return BuildResult(reason=BUILD_FAILED, message=f"kustomize build failed: {error}")
    return BuildResult(objects=tuple(objects), unapplied_fields=tuple(sorted(builder.unapplied)))


# --- errors, in kustomize's chaining ------------------------------------------------------------------
class _KustomizeError(Exception):
    """A kustomize error; `prefixed` is go-errors' `WrapPrefix` ("prefix: cause")."""

    def prefixed(self, prefix: str) -> _KustomizeError:
        return _KustomizeError(f"{prefix}: {self}")

    @property
    def malformed_yaml(self) -> bool:
        """kusterr.IsMalformedYAMLError: a substring test on the text."""
        return "MalformedYAMLError" in str(self)


class _GeneratorError(Exception):
    """An error of Flux's generator: reported as `BuildFailed` without "kustomize build failed"."""


# --- the kustomization file -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Image:
    name: str
    new_name: str = ""
    new_tag: str = ""
    digest: str = ""


@dataclass(frozen=True)
class _Kustomization:
    resources: tuple[str, ...]
    kind: str = ""
    api_version: str = ""
    namespace: str = ""
    images: tuple[_Image, ...] = ()
    present: frozenset[str] = frozenset()  # canonical names of the fields the file set


class _DecodeError(ValueError):
    """Go's encoding/json error text for a kustomization that parsed as YAML but not as the type."""


def _json_type(value: object) -> str:
    """The JSON type name Go's UnmarshalTypeError prints (`Value`)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (str, date, datetime)):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _field_lookup(names: Iterable[str]) -> dict[str, str]:
    """encoding/json matches keys exactly, then case-insensitively: lower-case → canonical."""
    return {name.lower(): name for name in names}


_KUSTOMIZATION_FIELDS = _field_lookup(KNOWN_FIELDS)
_IMAGE_FIELDS = _field_lookup(IMAGE_FIELDS)


def _string(value: object, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (str, date, datetime)):
        return str(value)
    raise _DecodeError(
        f"json: cannot unmarshal {_json_type(value)} into Go struct field {where} of type string"
    )


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _DecodeError(
            f"json: cannot unmarshal {_json_type(value)} into Go struct field {where} of type []string"
        )
    return tuple(_string(item, where) for item in value)


def decode_kustomization(document: object, *, strict: bool) -> _Kustomization:
    """`types.Kustomization` from a YAML document, with encoding/json's errors (Go 1.26 wording)."""
    if document is None:
        return _Kustomization(resources=())
    if not isinstance(document, dict):
        raise _DecodeError(
            f"json: cannot unmarshal {_json_type(document)} into Go value of type types.Kustomization"
        )
    values: dict[str, Any] = {}
    for key, value in document.items():
        canonical = _KUSTOMIZATION_FIELDS.get(str(key).lower())
        if canonical is None:
            if strict:
                raise _DecodeError(f'json: unknown field "{key}"')
            continue
        values[canonical] = value
    images: list[_Image] = []
    for entry_key in ("images", "imageTags"):
        raw = values.get(entry_key)
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise _DecodeError(
                f"json: cannot unmarshal {_json_type(raw)} into Go struct field Kustomization.{entry_key} "
                "of type []types.Image"
            )
        for item in raw:
            images.append(_decode_image(item, entry_key, strict=strict))
    return _Kustomization(
        resources=(
            *_strings(values.get("resources"), "Kustomization.resources"),
            # FixKustomization: `bases` are resources (types/kustomization.go line 237).
            *_strings(values.get("bases"), "Kustomization.bases"),
        ),
        kind=_string(values.get("kind"), "Kustomization.kind"),
        api_version=_string(values.get("apiVersion"), "Kustomization.apiVersion"),
        namespace=_string(values.get("namespace"), "Kustomization.namespace"),
        images=tuple(images),
        present=frozenset(values),
    )


def _decode_image(item: object, entry_key: str, *, strict: bool) -> _Image:
    if not isinstance(item, dict):
        raise _DecodeError(
            f"json: cannot unmarshal {_json_type(item)} into Go struct field Kustomization.{entry_key} "
            "of type types.Image"
        )
    fields: dict[str, str] = {}
    for key, value in item.items():
        canonical = _IMAGE_FIELDS.get(str(key).lower())
        if canonical is None:
            if strict:
                raise _DecodeError(f'json: unknown field "{key}"')
            continue
        fields[canonical] = _string(value, f"Image.{entry_key}.{canonical}")
    return _Image(
        name=fields.get("name", ""),
        new_name=fields.get("newName", ""),
        new_tag=fields.get("newTag", ""),
        digest=fields.get("digest", ""),
    )


def _enforce_fields(kustomization: _Kustomization, directory: str) -> None:
    """types.Kustomization.EnforceFields, as KustTarget.Load reports it (kusttarget.go line 82-86)."""
    errors: list[str] = []
    kind = kustomization.kind
    if kind and kind not in (KUSTOMIZATION_KIND, COMPONENT_KIND):
        errors.append(f"kind should be {KUSTOMIZATION_KIND} or {COMPONENT_KIND}")
    required = COMPONENT_API_VERSION if kind == COMPONENT_KIND else KUSTOMIZATION_API_VERSION
    if kustomization.api_version and kustomization.api_version != required:
        errors.append(f"apiVersion for {kind} should be {required}")
    if errors:
        raise _KustomizeError(f"Failed to read kustomization file under {directory}:\n" + "\n".join(errors))


# --- the build --------------------------------------------------------------------------------------------
_REMOTE = re.compile(
    r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/|bitbucket\.org/)", re.IGNORECASE
)


class _Builder:
    def __init__(self, tree: RepoTree, work_dir: str) -> None:
        self.tree = tree
        self.work_dir = work_dir
        self.unapplied: set[str] = set()

    def absolute(self, path: str) -> str:
        return f"{self.work_dir}/{path}" if path else self.work_dir

    # Flux's generator (kustomize_generator.go GenerateManifest) --------------------------------------
    def generate(self, root: str) -> _Kustomization:
        for name in KUSTOMIZATION_FILE_NAMES:
            candidate = posixpath.join(root, name) if root else name
            if self.tree.kind_of(candidate) == "file":
                try:
                    document = load_first(self.tree.files[candidate], version="v2")
                except GoYamlError as error:
                    raise _GeneratorError(f"error converting YAML to JSON: {error}") from None
                try:
                    kustomization = decode_kustomization(document, strict=False)
                except _DecodeError as error:
                    raise _GeneratorError(f"error unmarshaling JSON: while decoding JSON: {error}") from None
                self.unapplied |= kustomization.present - APPLIED_FIELDS
                return kustomization
        # No kustomization file: one listing every manifest below (findOrGenerateKustomization).
        return _Kustomization(resources=tuple(self._scan_manifests(root, root)))

    def _scan_manifests(self, base: str, directory: str) -> list[str]:
        found: list[str] = []
        for child in self.tree.children(directory):
            relative = "./" + child[len(base) :].lstrip("/")
            if self.tree.kind_of(child) == "dir":
                if self._kustomization_files(child):
                    found.append(relative)  # a folder with its own kustomization is one resource
                else:
                    found.extend(self._scan_manifests(base, child))
            elif child.endswith((".yaml", ".yml")):
                found.append(relative)
        return found

    def _kustomization_files(self, directory: str) -> list[str]:
        return [
            name
            for name in KUSTOMIZATION_FILE_NAMES
            if self.tree.kind_of(posixpath.join(directory, name) if directory else name) == "file"
        ]

    # kustomize (krusty.Kustomizer.Run → KustTarget) -----------------------------------------------------
    def build_root(self, root: str, kustomization: _Kustomization) -> list[Manifest]:
        if len(self._kustomization_files(root)) > 1:
            raise _KustomizeError(f"Found multiple kustomization files under: {self.absolute(root)}\n")
        _enforce_fields(kustomization, self.absolute(root))
        return self._accumulate_target(root, kustomization)

    def _load(self, directory: str) -> _Kustomization:
        """KustTarget.Load for a nested kustomization (strict, unlike Flux's root generator)."""
        names = self._kustomization_files(directory)
        if not names:
            quoted = [f"'{name}'" for name in KUSTOMIZATION_FILE_NAMES]
            raise _KustomizeError(
                f"unable to find one of {', '.join(quoted[:-1])} or {quoted[-1]} in directory "
                f"'{self.absolute(directory)}'"
            )
        if len(names) > 1:
            raise _KustomizeError(f"Found multiple kustomization files under: {self.absolute(directory)}\n")
        data = self.tree.files[posixpath.join(directory, names[0]) if directory else names[0]]
        try:
            kustomization = decode_kustomization(load_first(data, version="v2"), strict=True)
        except (GoYamlError, _DecodeError) as error:
            raise _KustomizeError(f"invalid Kustomization: {error}") from None
        if not (kustomization.present - {"apiVersion", "kind"}):
            raise _KustomizeError("kustomization.yaml is empty")
        _enforce_fields(kustomization, self.absolute(directory))
        self.unapplied |= kustomization.present - APPLIED_FIELDS
        return kustomization

    def _accumulate_target(self, directory: str, kustomization: _Kustomization) -> list[Manifest]:
        objects: list[Manifest] = []
        try:
            for entry in kustomization.resources:
                objects.extend(self._accumulate_entry(directory, entry))
        except _KustomizeError as error:
            raise error.prefixed("accumulating resources") from None
        if kustomization.namespace:
            _set_namespace(objects, kustomization.namespace)
        for image in kustomization.images:
            _set_image(objects, image)
        return objects

    def _accumulate_entry(self, directory: str, entry: str) -> list[Manifest]:
        try:
            return self._accumulate_file(directory, entry)
        except _KustomizeError as file_error:
            try:
                sub_directory = self._new_loader(directory, entry)
            except _KustomizeError as loader_error:
                if file_error.malformed_yaml:
                    raise file_error from None
                raise loader_error.prefixed(f"accumulation err='{file_error}'") from None
            try:
                return self._accumulate_directory(sub_directory)
            except _KustomizeError as directory_error:
                raise directory_error.prefixed(f"accumulation err='{file_error}'") from None

    def _join(self, directory: str, entry: str) -> str:
        joined = posixpath.normpath(posixpath.join("/", directory, entry)).lstrip("/")
        return "" if joined == "." else joined

    def _accumulate_file(self, directory: str, entry: str) -> list[Manifest]:
        if _REMOTE.match(entry):
            raise _KustomizeError(
                f"accumulating resources from '{entry}': the lab's panels cannot fetch remote resources"
            )
        path = self._join(directory, entry)
        kind = self.tree.kind_of(path)
        where = f"accumulating resources from '{entry}'"
        if kind == "dir":
            raise _KustomizeError(f"{where}: read {self.absolute(path)}: is a directory")
        if kind is None:
            raise _KustomizeError(f"{where}: open {self.absolute(path)}: {self._missing_reason(path)}")
        try:
            documents = load_all(self.tree.files[path], version="v3")
        except GoYamlError as error:
            raise _KustomizeError(f"{where}: MalformedYAMLError: {error} in File: {entry}") from None
        return [copy.deepcopy(item) for item in _objects_of(documents)]

    def _missing_reason(self, path: str) -> str:
        """ENOENT, or ENOTDIR when a leading part of the path is a file."""
        parts = path.split("/")
        for end in range(1, len(parts)):
            if self.tree.kind_of("/".join(parts[:end])) == "file":
                return "not a directory"
        return "no such file or directory"

    def _first_missing(self, path: str) -> str:
        """The component `filepath.EvalSymlinks` fails to lstat."""
        parts = path.split("/")
        for end in range(1, len(parts) + 1):
            prefix = "/".join(parts[:end])
            if self.tree.kind_of(prefix) is None:
                return prefix
        return path

    def _new_loader(self, directory: str, entry: str) -> str:
        """fileloader.New: the entry as a folder, or why it is not one."""
        if entry.startswith("/"):
            raise _KustomizeError(f"new root '{entry}' cannot be absolute")
        path = self._join(directory, entry)
        kind = self.tree.kind_of(path)
        if kind == "dir":
            return path
        if kind == "file":
            raise _KustomizeError(f"must build at directory: '{self.absolute(path)}': file is not directory")
        missing = self._first_missing(path)
        reason = self._missing_reason(missing) if missing != path else "no such file or directory"
        raise _KustomizeError(
            f"must build at directory: not a valid directory: evalsymlink failure on '{self.absolute(path)}' "
            f": lstat {self.absolute(missing)}: {reason}"
        )

    def _accumulate_directory(self, directory: str) -> list[Manifest]:
        try:
            kustomization = self._load(directory)
        except _KustomizeError as error:
            raise error.prefixed(f"couldn't make target for path '{self.absolute(directory)}'") from None
        if kustomization.kind == COMPONENT_KIND:
            raise _KustomizeError(
                f"expected kind != '{COMPONENT_KIND}' for path '{self.absolute(directory)}'"
            )
        try:
            return self._accumulate_target(directory, kustomization)
        except _KustomizeError as error:
            raise error.prefixed(f"recursed accumulation of path '{self.absolute(directory)}'") from None


def _objects_of(documents: list[Any]) -> list[Manifest]:
    """Kubernetes objects of a resource file: empty documents skipped, `*List` kinds expanded."""
    objects: list[Manifest] = []
    for document in documents:
        if not isinstance(document, dict):
            continue
        kind = str(document.get("kind", ""))
        if kind.endswith("List") and isinstance(document.get("items"), list):
            objects.extend(item for item in document["items"] if isinstance(item, dict))
        else:
            objects.append(document)
    return objects


def _metadata(item: Manifest) -> dict[str, Any]:
    metadata = item.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        item["metadata"] = metadata
    return metadata


def _set_namespace(objects: list[Manifest], namespace: str) -> None:
    """kustomize's namespace transformer with its default field specs (builtinpluginconsts/namespace.go)."""
    for item in objects:
        kind = str(item.get("kind", ""))
        if kind == "Namespace":
            _metadata(item)["name"] = namespace
        elif kind not in CLUSTER_SCOPED_KINDS:
            _metadata(item)["namespace"] = namespace


def pod_spec(item: Manifest) -> dict[str, Any] | None:
    """The pod spec of a workload object, or None for kinds that have none."""
    node: Any = item
    for key in _POD_SPEC_PATHS.get(str(item.get("kind", "")), ()):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and node is not item else None


def containers_of(spec: Mapping[str, Any]) -> list[Any]:
    """Init containers, then containers, of a pod spec (either list may be missing)."""
    return [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]


def split_image(reference: str) -> tuple[str, str, str]:
    """(name, tag, digest) as kustomize's `image.Split` cuts them (a registry port is not a tag)."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def _set_image(objects: list[Manifest], image: _Image) -> None:
    """kustomize's image tag transformer (api/filters/imagetag/updater.go) on (init) containers."""
    if not image.name:
        return
    # image.IsImageMatched: the name is used as a regular expression, unescaped, as kustomize does.
    try:
        matcher = re.compile("^" + image.name + r"(@sha256)?(:[\w][\w.-]{0,127})?$")
    except re.error:
        return
    for item in objects:
        spec = pod_spec(item)
        if spec is None:
            continue
        for container in containers_of(spec):
            if not isinstance(container, dict) or not isinstance(container.get("image"), str):
                continue
            current = container["image"]
            if not matcher.match(current):
                continue
            name, tag, digest = split_image(current)
            if image.new_name:
                name = image.new_name
            if image.new_tag and image.digest:
                tag, digest = image.new_tag, image.digest
            elif image.new_tag:
                tag, digest = image.new_tag, ""
            elif image.digest:
                tag, digest = "", image.digest
            container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
