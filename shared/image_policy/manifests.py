"""ImageRepository / ImagePolicy / ImageUpdateAutomation objects read from a Git repository's YAML.

The verdict service and the lab's automation simulator both start from manifests as committed,
not from a cluster, so this module reads them the way the Kubernetes API would default them:
namespace from `metadata.namespace` or `default`, a policy's repository reference defaulting to the
policy's own namespace, the exclusion list defaulting to Flux's, the automation's push branch
defaulting to its checkout branch (reference §1, §5, §9.1). It accepts `image.toolkit.fluxcd.io/v1`
and `v1beta2` and records which one, because v1beta2 is gone from the CRDs since IRC/IAC v1.2.0
and callers warn about it. Anything that cannot be read becomes a `ManifestProblem`, never an
exception: one bad file must not hide the rest of the repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from shared.image_policy.exclusions import effective_exclusion_list
from shared.image_policy.images import normalise_image

GROUP = "image.toolkit.fluxcd.io"
API_V1 = f"{GROUP}/v1"
API_V1BETA2 = f"{GROUP}/v1beta2"
SUPPORTED_API_VERSIONS = (API_V1, API_V1BETA2)
DEFAULT_NAMESPACE = "default"
DEFAULT_UPDATE_STRATEGY = "Setters"
DEFAULT_DIGEST_REFLECTION = "Never"

# The CRDs' duration pattern `^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`, one unit at a time.
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds in a Flux duration (`1m`, `5m30s`, `1.5h`, `500ms`); None when it does not validate."""
    position = 0
    seconds = 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != position:
            return None
        seconds += float(match.group(1)) * _SECONDS_PER_UNIT[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        return None
    return seconds


@dataclass(frozen=True)
class ManifestProblem:
    """Something in a manifest that Flux would reject or that could not be read."""

    path: str
    message: str


@dataclass(frozen=True)
class ImageRepository:
    """An ImageRepository: which image is scanned, how often, and which tags are dropped.

    `exclusion_list` is the list Flux applies (the default `^.*\\.sig$` when none is written;
    `exclusion_list_is_default` says which). `image` is `spec.image` verbatim, which is also what
    `latestRef.name` and the `:name` setter carry.
    """

    namespace: str
    name: str
    image: str
    interval_seconds: float | None
    exclusion_list: tuple[str, ...]
    exclusion_list_is_default: bool
    api_version: str
    suspend: bool
    provider: str
    path: str

    @property
    def canonical_image(self) -> str:
        return normalise_image(self.image)

    @property
    def is_deprecated_api(self) -> bool:
        return self.api_version == API_V1BETA2


@dataclass(frozen=True)
class ImagePolicy:
    """An ImagePolicy. `spec` is the spec mapping as written (pass it to `select_latest`)."""

    namespace: str
    name: str
    repository_ref: tuple[str, str]
    spec: Mapping[str, Any] = field(hash=False)
    labels: Mapping[str, str] = field(hash=False)
    digest_reflection_policy: str
    api_version: str
    suspend: bool
    path: str

    @property
    def is_deprecated_api(self) -> bool:
        return self.api_version == API_V1BETA2


@dataclass(frozen=True)
class ImageUpdateAutomation:
    """An ImageUpdateAutomation, with the defaults Flux applies.

    `checkout_branch` is None when the automation does not name one (Flux then uses the
    GitRepository's ref); `push_branch` defaults to `checkout_branch`. `update_path` is relative to
    the repository root, "" meaning the root. `policy_selector` is the LabelSelector as written
    (None selects every policy in the namespace).
    """

    namespace: str
    name: str
    interval_seconds: float | None
    suspend: bool
    source_ref: tuple[str, str, str]
    checkout_branch: str | None
    push_branch: str | None
    update_path: str
    strategy: str
    commit_message_template: str | None
    commit_author_name: str | None
    commit_author_email: str | None
    policy_selector: Mapping[str, Any] | None = field(hash=False)
    api_version: str
    path: str

    @property
    def is_deprecated_api(self) -> bool:
        return self.api_version == API_V1BETA2

    def selects(self, policy: ImagePolicy) -> bool:
        """Whether `policy` is in scope: same namespace (always) and matching `policySelector`."""
        if policy.namespace != self.namespace:
            return False
        return _selector_matches(self.policy_selector, policy.labels)


@dataclass(frozen=True)
class ImageObjects:
    """Every image automation object found in a set of files, plus what could not be read."""

    repositories: tuple[ImageRepository, ...]
    policies: tuple[ImagePolicy, ...]
    automations: tuple[ImageUpdateAutomation, ...]
    problems: tuple[ManifestProblem, ...]

    def repository_for(self, policy: ImagePolicy) -> ImageRepository | None:
        namespace, name = policy.repository_ref
        for repository in self.repositories:
            if repository.namespace == namespace and repository.name == name:
                return repository
        return None


def _selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels AND matchExpressions)."""
    if not selector:
        return True
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(str(key)) != str(value) for key, value in match_labels.items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key = str(expression.get("key", ""))
        operator = expression.get("operator")
        values = [str(value) for value in expression.get("values") or []]
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _interval(spec: Mapping[str, Any], path: str, what: str, problems: list[ManifestProblem]) -> float | None:
    raw = spec.get("interval")
    if raw is None:
        problems.append(ManifestProblem(path, f"{what}: spec.interval is required"))
        return None
    seconds = parse_duration(str(raw))
    if seconds is None:
        problems.append(ManifestProblem(path, f"{what}: spec.interval '{raw}' is not a valid duration"))
    return seconds


# (apiVersion, namespace, name, file path) of the object being read.
_Base = tuple[str, str, str, str]


def _repository(
    document: Mapping[str, Any], base: _Base, problems: list[ManifestProblem]
) -> ImageRepository | None:
    api_version, namespace, name, path = base
    spec = _mapping(document.get("spec"))
    what = f"ImageRepository {namespace}/{name}"
    image = _text(spec.get("image"))
    if not image:
        problems.append(ManifestProblem(path, f"{what}: spec.image is required"))
        return None
    written = spec.get("exclusionList")
    exclusions = [str(item) for item in written] if isinstance(written, list) else None
    return ImageRepository(
        namespace=namespace,
        name=name,
        image=image,
        interval_seconds=_interval(spec, path, what, problems),
        exclusion_list=effective_exclusion_list(exclusions),
        exclusion_list_is_default=not exclusions,
        api_version=api_version,
        suspend=spec.get("suspend") is True,
        provider=_text(spec.get("provider")) or "generic",
        path=path,
    )


def _policy(document: Mapping[str, Any], base: _Base, problems: list[ManifestProblem]) -> ImagePolicy | None:
    api_version, namespace, name, path = base
    spec = _mapping(document.get("spec"))
    reference = _mapping(spec.get("imageRepositoryRef"))
    repository_name = _text(reference.get("name"))
    if not repository_name:
        message = f"ImagePolicy {namespace}/{name}: spec.imageRepositoryRef.name is required"
        problems.append(ManifestProblem(path, message))
        return None
    metadata = _mapping(document.get("metadata"))
    labels = {str(key): str(value) for key, value in _mapping(metadata.get("labels")).items()}
    return ImagePolicy(
        namespace=namespace,
        name=name,
        repository_ref=(_text(reference.get("namespace")) or namespace, repository_name),
        spec=dict(spec),
        labels=labels,
        digest_reflection_policy=_text(spec.get("digestReflectionPolicy")) or DEFAULT_DIGEST_REFLECTION,
        api_version=api_version,
        suspend=spec.get("suspend") is True,
        path=path,
    )


def _automation(
    document: Mapping[str, Any], base: _Base, problems: list[ManifestProblem]
) -> ImageUpdateAutomation:
    api_version, namespace, name, path = base
    spec = _mapping(document.get("spec"))
    what = f"ImageUpdateAutomation {namespace}/{name}"
    git = _mapping(spec.get("git"))
    if not git:
        problems.append(ManifestProblem(path, f"{what}: spec.git is required"))
    checkout_branch = _text(_mapping(_mapping(git.get("checkout")).get("ref")).get("branch"))
    push_branch = _text(_mapping(git.get("push")).get("branch")) or checkout_branch
    commit = _mapping(git.get("commit"))
    author = _mapping(commit.get("author"))
    update = _mapping(spec.get("update"))
    source = _mapping(spec.get("sourceRef"))
    selector = spec.get("policySelector")
    return ImageUpdateAutomation(
        namespace=namespace,
        name=name,
        interval_seconds=_interval(spec, path, what, problems),
        suspend=spec.get("suspend") is True,
        source_ref=(
            _text(source.get("kind")) or "GitRepository",
            _text(source.get("namespace")) or namespace,
            _text(source.get("name")) or "",
        ),
        checkout_branch=checkout_branch,
        push_branch=push_branch,
        update_path=_text(update.get("path")) or "",
        strategy=_text(update.get("strategy")) or DEFAULT_UPDATE_STRATEGY,
        commit_message_template=_text(commit.get("messageTemplate")),
        commit_author_name=_text(author.get("name")),
        commit_author_email=_text(author.get("email")),
        policy_selector=dict(selector) if isinstance(selector, Mapping) else None,
        api_version=api_version,
        path=path,
    )


def parse_image_objects(files: Mapping[str, str]) -> ImageObjects:
    """Read every image automation object in `files` (repo path -> YAML text, multi-document)."""
    documents: list[tuple[str, object]] = []
    problems: list[ManifestProblem] = []
    for path in sorted(files):
        try:
            documents += [(path, document) for document in yaml.safe_load_all(files[path])]
        except yaml.YAMLError as error:
            problems.append(ManifestProblem(path, f"not valid YAML: {error}"))
    return parse_image_documents(documents, problems=problems)


def parse_image_documents(
    documents: Iterable[tuple[str, object]], *, problems: Iterable[ManifestProblem] = ()
) -> ImageObjects:
    """Read the image automation objects among already-decoded documents, each with its source path.

    For objects that do not come straight from files, e.g. the output of a kustomize build (what a
    kustomization applies to a cluster); `problems` are carried into the result.
    """
    repositories: list[ImageRepository] = []
    policies: list[ImagePolicy] = []
    automations: list[ImageUpdateAutomation] = []
    found: list[ManifestProblem] = list(problems)
    for path, document in documents:
        if not isinstance(document, Mapping):
            continue
        api_version = _text(document.get("apiVersion")) or ""
        kind = document.get("kind")
        if kind not in ("ImageRepository", "ImagePolicy", "ImageUpdateAutomation"):
            continue
        if not api_version.startswith(f"{GROUP}/"):
            continue
        metadata = _mapping(document.get("metadata"))
        name = _text(metadata.get("name")) or ""
        namespace = _text(metadata.get("namespace")) or DEFAULT_NAMESPACE
        if api_version not in SUPPORTED_API_VERSIONS:
            found.append(
                ManifestProblem(path, f"{kind} {namespace}/{name}: unsupported apiVersion {api_version}")
            )
            continue
        base = (api_version, namespace, name, path)
        if kind == "ImageRepository":
            repository = _repository(document, base, found)
            if repository is not None:
                repositories.append(repository)
        elif kind == "ImagePolicy":
            policy = _policy(document, base, found)
            if policy is not None:
                policies.append(policy)
        else:
            automations.append(_automation(document, base, found))
    return ImageObjects(tuple(repositories), tuple(policies), tuple(automations), tuple(found))
