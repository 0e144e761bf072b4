"""Checks of the seed's GitOps content (`kubernetes/`) made the way Flux consumes it.

Why these tests exist: a panel only ever sees what Flux renders from Git. A resource entry that
does not exist stalls the whole kustomization, a setter marker naming a policy that is not in
the automation's namespace is silently ignored (so an image never rolls out), and a Deployment
field the API server rejects fails the apply on every panel at once. None of that shows up until
a fleet is stuck, so each rule is a check here.

Each check is a function of the repository root that returns the problems it found (empty when
the content is sound). The tests run every check on the real tree, and then on broken copies of
it, to prove each check reports the breakage it exists for rather than passing on anything.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.unit.gitops_render import (
    KUSTOMIZATION_FILE_NAMES,
    KustomizeRenderError,
    RenderedObject,
    UnsupportedKustomizeFeatureError,
    find_kustomization_file,
    render_kustomization,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_DIR = "kubernetes"
WORKLOADS_PATH = Path("kubernetes/workloads")
IMAGE_AUTOMATION_PATH = Path("kubernetes/flux-system/image-automation")
README_PATH = Path("kubernetes/README.md")

WORKLOAD_NAMESPACE = "ipc-workloads"
FLUX_NAMESPACE = "flux-system"
ARC_FLUX_CONFIGURATION_NAME = "ipc-platform-config"
"""The Arc Flux configuration, and so the name of the GitRepository it creates in flux-system."""

REGISTRY_PLACEHOLDER = "ipcplatformacr.azurecr.io"
"""The one registry string the lab and real deployments substitute; see kubernetes/README.md."""

EXPECTED_WORKLOADS = {
    "opcua-gateway": "production",
    "health-monitor": "production",
    "log-forwarder": "production",
    "anomaly-detection": "production",
    "test-data-collector": "production",
    "opcua-simulator": "simulator",
    "ev-battery-simulator": "simulator",
    "vision-simulator": "simulator",
    "motion-simulator": "simulator",
    "motion-gateway": "simulator",
}
"""DESIGN.md's seed layout: each workload and its `workload-type` label."""

EXPECTED_CONFIGMAPS = frozenset({"opcua-gateway-config"})
EXPECTED_NAMESPACE_LABELS = {"managed-by": "flux", "purpose": "edge-workloads", "environment": "poc"}
IMAGE_PULL_SECRET = "acr-pull-secret"

SEED_REQUIRED_SECRETS = {
    (WORKLOAD_NAMESPACE, "iot-hub-connection"): frozenset({"connectionString"}),
    (WORKLOAD_NAMESPACE, "log-analytics-connection"): frozenset({"workspaceId", "key"}),
    (WORKLOAD_NAMESPACE, "blob-storage-connection"): frozenset({"connectionString"}),
    (WORKLOAD_NAMESPACE, IMAGE_PULL_SECRET): frozenset({".dockerconfigjson"}),
    (FLUX_NAMESPACE, "acr-credentials"): frozenset({".dockerconfigjson"}),
}
"""The seed's required-secrets table: what every panel is bootstrapped with, (namespace, name) → keys.

This is the contract with whoever bootstraps a panel, restated from the seed, not read from the
manifests: a manifest reading a key the table does not name (issue 12 item 17: `sharedKey` where the
table says `key`) is a workload that never starts on a panel bootstrapped as the seed says."""
SECRET_KEYS = {
    name: keys for (namespace, name), keys in SEED_REQUIRED_SECRETS.items() if namespace == WORKLOAD_NAMESPACE
}
"""The seed's secrets in the workloads' namespace, by name."""

KUBERNETES_SCHEMA_VERSION = "1.30"
"""Validate against an older minor than kubernetes-validate's newest (1.37, shipped offline in the
package): panels lag upstream Kubernetes, and a field only newer API servers know fails here."""

CORE_KINDS = frozenset({"Namespace", "Deployment", "ConfigMap"})

SETTER_MARKER = re.compile(r'#\s*\{\s*"\$imagepolicy"\s*:\s*"(?P<setter>[^"]*)"\s*\}\s*$')
"""A trailing `# {"$imagepolicy": "<namespace>:<policy>[:tag|:name|:digest]"}` comment."""
MARKER_TOKEN = '"$imagepolicy"'
"""The literal the image-automation-controller screens files for before parsing them."""
IMAGE_LINE = re.compile(r'^\s*(?:-\s+)?image:\s*["\']?(?P<image>[^\s"\'#]+)')
FIELD_SETTER_SUFFIXES = frozenset({"tag", "name", "digest"})
RELEASE_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
"""The seed's tag form, vMAJOR.MINOR.PATCH, which the policies' semver range `>=1.0.0` reads."""

Check = Callable[[Path], list[str]]


# --- helpers -------------------------------------------------------------------------------------


def _relative(path: Path, repo_root: Path) -> str:
    return str(path.resolve().relative_to(repo_root.resolve()))


def _kustomization_dirs(repo_root: Path) -> Iterator[Path]:
    for candidate in sorted((repo_root / SEED_DIR).rglob("*")):
        if candidate.name in KUSTOMIZATION_FILE_NAMES and candidate.is_file():
            yield candidate.parent


def _containers(deployment: RenderedObject) -> list[dict[str, Any]]:
    pod_spec = deployment.manifest.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def _secret_refs(deployment: RenderedObject) -> set[tuple[str, str | None]]:
    """(secret, key) pairs the pod reads; key None for a whole-secret `envFrom`."""
    refs: set[tuple[str, str | None]] = set()
    for container in _containers(deployment):
        for env in container.get("env", []):
            secret_key_ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if secret_key_ref:
                refs.add((str(secret_key_ref["name"]), str(secret_key_ref["key"])))
        for env_from in container.get("envFrom", []):
            if env_from.get("secretRef"):
                refs.add((str(env_from["secretRef"]["name"]), None))
    return refs


def split_image_reference(reference: str) -> tuple[str, str | None]:
    """(repository, tag) of an image reference; a `@digest` is dropped, a registry port kept."""
    without_digest = reference.split("@", 1)[0]
    repository, slash, last_segment = without_digest.rpartition("/")
    name, colon, tag = last_segment.partition(":")
    return f"{repository}{slash}{name}", (tag if colon else None)


def _render_or_problem(directory: Path, repo_root: Path) -> tuple[list[RenderedObject], list[str]]:
    try:
        return render_kustomization(directory, repo_root=repo_root), []
    except KustomizeRenderError as error:
        return [], [f"{_relative(directory, repo_root)} does not render: {error}"]


# --- checks --------------------------------------------------------------------------------------


def check_kustomization_resources(repo_root: Path) -> list[str]:
    """Every `resources:` entry exists, and nothing in a kustomization folder is left unlisted.

    A missing entry stalls the Flux kustomization on every panel; an unlisted manifest or
    workload folder is silently never applied.
    """
    problems: list[str] = []
    for directory in _kustomization_dirs(repo_root):
        kustomization_file = find_kustomization_file(directory)
        assert kustomization_file is not None
        where = _relative(kustomization_file, repo_root)
        entries = (yaml.safe_load(kustomization_file.read_text(encoding="utf-8")) or {}).get("resources", [])
        listed: set[Path] = set()
        for entry in entries:
            path = (directory / entry).resolve()
            listed.add(path)
            if path.is_dir():
                if find_kustomization_file(path) is None:
                    problems.append(f"{where}: resource {entry!r} is a folder without a kustomization file")
            elif not path.is_file():
                problems.append(f"{where}: resource {entry!r} does not exist")
        for child in sorted(directory.iterdir()):
            is_manifest = (
                child.is_file() and child.suffix in {".yaml", ".yml"} and child != kustomization_file
            )
            is_kustomization_folder = child.is_dir() and find_kustomization_file(child) is not None
            if (is_manifest or is_kustomization_folder) and child.resolve() not in listed:
                problems.append(
                    f"{where}: {child.name!r} is not listed in resources, so Flux never applies it"
                )
    return problems


def check_workloads_render(repo_root: Path) -> list[str]:
    """The workloads kustomization renders to the Namespace, the ten Deployments and the ConfigMap."""
    rendered, problems = _render_or_problem(repo_root / WORKLOADS_PATH, repo_root)
    if problems:
        return problems
    kinds = Counter(item.kind for item in rendered)
    if set(kinds) != CORE_KINDS:
        problems.append(f"workloads render kinds {dict(kinds)}, expected only {sorted(CORE_KINDS)}")
    namespaces = [item for item in rendered if item.kind == "Namespace"]
    if [item.name for item in namespaces] != [WORKLOAD_NAMESPACE]:
        problems.append(f"workloads render Namespaces {[item.name for item in namespaces]}")
    for namespace in namespaces:
        if dict(namespace.labels) != EXPECTED_NAMESPACE_LABELS:
            problems.append(f"Namespace {namespace.name} labels {dict(namespace.labels)}")
    deployments = [item for item in rendered if item.kind == "Deployment"]
    if sorted(item.name for item in deployments) != sorted(EXPECTED_WORKLOADS):
        problems.append(f"workloads render Deployments {sorted(item.name for item in deployments)}")
    config_maps = {item.name for item in rendered if item.kind == "ConfigMap"}
    if config_maps != EXPECTED_CONFIGMAPS:
        problems.append(f"workloads render ConfigMaps {sorted(config_maps)}")
    for item in rendered:
        if item.kind != "Namespace" and item.namespace != WORKLOAD_NAMESPACE:
            problems.append(f"{item.kind} {item.name} renders into namespace {item.namespace!r}")
    for deployment in deployments:
        problems.extend(_deployment_problems(deployment, repo_root))
    return problems


def _deployment_problems(deployment: RenderedObject, repo_root: Path) -> list[str]:
    where = f"{_relative(deployment.source_file, repo_root)}: Deployment {deployment.name}"
    expected_labels = {"app": deployment.name, "workload-type": EXPECTED_WORKLOADS.get(deployment.name)}
    template = deployment.manifest["spec"]["template"]
    template_labels = template.get("metadata", {}).get("labels") or {}
    problems = [
        f"{where}: {scope} label {key}={labels.get(key)!r}, expected {value!r}"
        for scope, labels in (("metadata", deployment.labels), ("pod template", template_labels))
        for key, value in expected_labels.items()
        if labels.get(key) != value
    ]
    selector = deployment.manifest["spec"].get("selector", {}).get("matchLabels", {})
    if not selector or any(template_labels.get(key) != value for key, value in selector.items()):
        problems.append(f"{where}: selector {selector} does not select its pod template")
    if template["spec"].get("imagePullSecrets") != [{"name": IMAGE_PULL_SECRET}]:
        problems.append(f"{where}: imagePullSecrets must be [{{name: {IMAGE_PULL_SECRET}}}]")
    for container in _containers(deployment):
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(bound, {}))
            if missing:
                problems.append(
                    f"{where}: container {container['name']} has no {bound} for {sorted(missing)}"
                )
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in container:
                problems.append(f"{where}: container {container['name']} has no {probe}")
    for secret, key in sorted(_secret_refs(deployment), key=str):
        if secret not in SECRET_KEYS or (key is not None and key not in SECRET_KEYS[secret]):
            problems.append(f"{where}: reads secret {secret!r} key {key!r}, which panels are not given")
    return problems


def check_image_automation(repo_root: Path) -> list[str]:
    """Setter markers, ImagePolicies, ImageRepositories and the automation agree, as Flux reads them.

    Flux resolves a marker only against ImagePolicies in the automation's own namespace, and
    silently leaves any other marker alone; so a typo here means an image that never rolls out.
    """
    rendered, problems = _render_or_problem(repo_root / IMAGE_AUTOMATION_PATH, repo_root)
    if problems:
        return problems
    by_kind: dict[str, dict[tuple[str | None, str], RenderedObject]] = {}
    for item in rendered:
        by_kind.setdefault(item.kind, {})[(item.namespace, item.name)] = item
        if item.kind.startswith("Image") and item.api_version != "image.toolkit.fluxcd.io/v1":
            problems.append(
                f"{item.kind} {item.name} uses {item.api_version}, not image.toolkit.fluxcd.io/v1"
            )
    repositories = by_kind.get("ImageRepository", {})
    policies = by_kind.get("ImagePolicy", {})
    for (namespace, name), policy in policies.items():
        reference = policy.manifest["spec"]["imageRepositoryRef"]
        if (reference.get("namespace", namespace), reference["name"]) not in repositories:
            problems.append(
                f"ImagePolicy {namespace}/{name} names missing ImageRepository {reference['name']!r}"
            )
    for (namespace, name), repository in repositories.items():
        if not str(repository.manifest["spec"]["image"]).startswith(f"{REGISTRY_PLACEHOLDER}/"):
            problems.append(f"ImageRepository {namespace}/{name} does not scan {REGISTRY_PLACEHOLDER}")
    automations = list(by_kind.get("ImageUpdateAutomation", {}).values())
    if len(automations) != 1:
        return [*problems, f"expected one ImageUpdateAutomation, found {len(automations)}"]
    problems.extend(_automation_problems(automations[0], repo_root))
    update_root = repo_root / str(automations[0].manifest["spec"]["update"]["path"])
    problems.extend(
        _marker_problems(update_root, automations[0].namespace, policies, repositories, repo_root)
    )
    return problems


def _automation_problems(automation: RenderedObject, repo_root: Path) -> list[str]:
    spec = automation.manifest["spec"]
    where = f"ImageUpdateAutomation {automation.namespace}/{automation.name}"
    source = spec["sourceRef"]
    problems = []
    if (source.get("kind"), source["name"], source.get("namespace", automation.namespace)) != (
        "GitRepository",
        ARC_FLUX_CONFIGURATION_NAME,
        FLUX_NAMESPACE,
    ):
        problems.append(f"{where}: sourceRef {source} is not the Arc configuration's GitRepository")
    git = spec["git"]
    if git["checkout"]["ref"].get("branch") != "main" or git["push"].get("branch") != "main":
        problems.append(f"{where}: must check out and push branch main")
    if not git["commit"]["author"].get("email"):
        problems.append(f"{where}: git.commit.author.email is required")
    update = spec["update"]
    if update.get("strategy") != "Setters" or not (repo_root / str(update["path"])).is_dir():
        problems.append(f"{where}: update {update} is not Setters over an existing folder")
    return problems


def _marker_problems(
    update_root: Path,
    automation_namespace: str | None,
    policies: dict[tuple[str | None, str], RenderedObject],
    repositories: dict[tuple[str | None, str], RenderedObject],
    repo_root: Path,
) -> list[str]:
    problems: list[str] = []
    for manifest_file in sorted(update_root.rglob("*")):
        if not (manifest_file.suffix in {".yaml", ".yml"} or manifest_file.name == "Kustomization"):
            continue
        for number, line in enumerate(manifest_file.read_text(encoding="utf-8").splitlines(), start=1):
            where = f"{_relative(manifest_file, repo_root)}:{number}"
            image_line = IMAGE_LINE.match(line)
            marker = SETTER_MARKER.search(line)
            if image_line and not image_line["image"].startswith(f"{REGISTRY_PLACEHOLDER}/"):
                problems.append(f"{where}: image {image_line['image']} is not from {REGISTRY_PLACEHOLDER}")
            if MARKER_TOKEN in line and marker is None:
                problems.append(f"{where}: setter marker is not a single JSON object Flux can read")
            elif image_line and marker is None:
                problems.append(f"{where}: image has no setter marker, so Flux never updates it")
            if marker is None:
                continue
            namespace, _, rest = marker["setter"].partition(":")
            policy_name, _, field = rest.partition(":")
            policy = policies.get((namespace, policy_name))
            if (
                namespace != automation_namespace
                or policy is None
                or field not in {"", *FIELD_SETTER_SUFFIXES}
            ):
                problems.append(
                    f"{where}: marker {marker['setter']!r} names no ImagePolicy in {automation_namespace}"
                )
            elif field == "" and image_line is not None:
                problems.extend(_marker_image_problems(where, image_line["image"], policy, repositories))
    return problems


def _marker_image_problems(
    where: str,
    image: str,
    policy: RenderedObject,
    repositories: dict[tuple[str | None, str], RenderedObject],
) -> list[str]:
    reference = policy.manifest["spec"]["imageRepositoryRef"]
    repository = repositories.get((reference.get("namespace", policy.namespace), reference["name"]))
    if repository is None:
        return []  # reported against the policy already
    image_repository, tag = split_image_reference(image)
    problems = []
    if image_repository != repository.manifest["spec"]["image"]:
        problems.append(
            f"{where}: image repository {image_repository} differs from policy {policy.name}'s "
            f"ImageRepository image {repository.manifest['spec']['image']}"
        )
    if tag is None or not RELEASE_TAG.match(tag):
        problems.append(f"{where}: image tag {tag!r} is not vMAJOR.MINOR.PATCH")
    return problems


def check_core_kind_schemas(repo_root: Path) -> list[str]:
    """Namespace, Deployment and ConfigMap validate against the Kubernetes OpenAPI schemas (strict)."""
    rendered, problems = _render_or_problem(repo_root / WORKLOADS_PATH, repo_root)
    for item in rendered:
        if item.kind not in CORE_KINDS:
            continue
        try:
            kubernetes_validate.validate(item.manifest, KUBERNETES_SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            field = ".".join(str(part) for part in error.path)
            problems.append(
                f"{_relative(item.source_file, repo_root)}: {item.kind} {item.name}: {field}: {error.message}"
            )
    return problems


def check_readme_matches_content(repo_root: Path) -> list[str]:
    """kubernetes/README.md's secret table and `az ... flux create` command agree with the files."""
    readme = (repo_root / README_PATH).read_text(encoding="utf-8")
    rendered, problems = _render_or_problem(repo_root / WORKLOADS_PATH, repo_root)
    secrets_used = {
        item.name: {secret for secret, _ in _secret_refs(item)}
        for item in rendered
        if item.kind == "Deployment"
    }
    table_rows = {
        cells[0]: cells[1:]
        for line in readme.splitlines()
        if line.startswith("|")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
        if cells[0] in EXPECTED_WORKLOADS
    }
    for name, workload_type in EXPECTED_WORKLOADS.items():
        if name not in table_rows:
            problems.append(f"{README_PATH}: secret table has no row for {name}")
            continue
        row_type, secrets_cell = table_rows[name][0], " ".join(table_rows[name][1:])
        documented = set(re.findall(r"`([a-z0-9-]+)`", secrets_cell))
        for secret, keys_text in re.findall(r"`([a-z0-9-]+)`\s*\(([^)]*)\)", secrets_cell):
            keys = frozenset(key.strip() for key in keys_text.split(","))
            if keys != SECRET_KEYS.get(secret):
                problems.append(
                    f"{README_PATH}: row {name} gives {secret} keys {sorted(keys)}, the seed's table "
                    f"{sorted(SECRET_KEYS.get(secret, ()))}"
                )
        if row_type != workload_type or documented != secrets_used.get(name, set()):
            problems.append(
                f"{README_PATH}: row {name} says {row_type} {sorted(documented)}, "
                f"the Deployment is {workload_type} {sorted(secrets_used.get(name, set()))}"
            )
    create_command = readme.partition("az k8s-configuration flux create")[2].partition("```")[0]
    if f"--name {ARC_FLUX_CONFIGURATION_NAME} --namespace {FLUX_NAMESPACE}" not in create_command:
        problems.append(
            f"{README_PATH}: flux create must name {ARC_FLUX_CONFIGURATION_NAME} in {FLUX_NAMESPACE}"
        )
    documented_paths = {Path(path) for path in re.findall(r"\bpath=\./(\S+)", create_command)}
    if documented_paths != {WORKLOADS_PATH, IMAGE_AUTOMATION_PATH}:
        problems.append(
            f"{README_PATH}: flux create kustomization paths {sorted(map(str, documented_paths))}"
        )
    problems.extend(
        f"{README_PATH}: flux create path ./{path} has no kustomization"
        for path in sorted(documented_paths)
        if not (repo_root / path).is_dir() or find_kustomization_file(repo_root / path) is None
    )
    return problems


ALL_CHECKS: tuple[Check, ...] = (
    check_kustomization_resources,
    check_workloads_render,
    check_image_automation,
    check_core_kind_schemas,
    check_readme_matches_content,
)


# --- the seed passes ------------------------------------------------------------------------------


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
def test_seed_content_passes_check(check: Check) -> None:
    assert check(REPO_ROOT) == []


def test_workloads_render_to_namespace_ten_deployments_and_configmap() -> None:
    rendered = render_kustomization(REPO_ROOT / WORKLOADS_PATH, repo_root=REPO_ROOT)

    assert Counter(item.kind for item in rendered) == {"Namespace": 1, "Deployment": 10, "ConfigMap": 1}
    deployments = [item for item in rendered if item.kind == "Deployment"]
    assert Counter(item.labels["workload-type"] for item in deployments) == {"production": 5, "simulator": 5}
    assert {item.namespace for item in rendered if item.kind != "Namespace"} == {WORKLOAD_NAMESPACE}
    assert [item.name for item in rendered if item.kind == "Namespace"] == [WORKLOAD_NAMESPACE]


def test_image_automation_has_a_repository_and_policy_per_workload_and_one_automation() -> None:
    rendered = render_kustomization(REPO_ROOT / IMAGE_AUTOMATION_PATH, repo_root=REPO_ROOT)

    names_by_kind: dict[str, set[str]] = {}
    for item in rendered:
        assert item.namespace == FLUX_NAMESPACE
        names_by_kind.setdefault(item.kind, set()).add(item.name)
    assert names_by_kind == {
        "ImageRepository": set(EXPECTED_WORKLOADS),
        "ImagePolicy": set(EXPECTED_WORKLOADS),
        "ImageUpdateAutomation": {"ipc-workloads"},
    }


def test_workloads_read_only_secret_keys_in_the_seeds_required_secrets_table() -> None:
    # Issue 12 item 17: a panel bootstrapped exactly as the seed's table says must start every workload.
    rendered = render_kustomization(REPO_ROOT / WORKLOADS_PATH, repo_root=REPO_ROOT)
    read = {
        (item.namespace or "default", secret, key)
        for item in rendered
        if item.kind == "Deployment"
        for secret, key in _secret_refs(item)
    }
    pull_secrets = {
        (item.namespace or "default", reference["name"])
        for item in rendered
        if item.kind == "Deployment"
        for reference in item.manifest["spec"]["template"]["spec"].get("imagePullSecrets", [])
    }

    assert ("ipc-workloads", "log-analytics-connection", "key") in read
    not_provisioned = {
        (namespace, secret, key)
        for namespace, secret, key in read
        if (namespace, secret) not in SEED_REQUIRED_SECRETS
        or (key is not None and key not in SEED_REQUIRED_SECRETS[(namespace, secret)])
    }
    assert not_provisioned == set()
    assert pull_secrets <= set(SEED_REQUIRED_SECRETS)


# --- each check reports the breakage it exists for ------------------------------------------------


@dataclass(frozen=True)
class Breakage:
    """One edit to a copy of the seed and the problem a check must then report."""

    file: str
    old: str
    new: str
    check: Check
    reported: tuple[str, ...]
    """Fragments that must all appear in one reported problem."""


BREAKAGES = {
    "marker naming a missing policy": Breakage(
        "workloads/health-monitor/deployment.yaml",
        '"flux-system:health-monitor"',
        '"flux-system:health-monitr"',
        check_image_automation,
        ("health-monitr", "names no ImagePolicy"),
    ),
    "marker naming a policy outside the automation's namespace": Breakage(
        "workloads/anomaly-detection/deployment.yaml",
        '"flux-system:anomaly-detection"',
        '"ipc-workloads:anomaly-detection"',
        check_image_automation,
        ("ipc-workloads:anomaly-detection", "names no ImagePolicy"),
    ),
    "marker whose policy scans another repository": Breakage(
        "workloads/motion-gateway/deployment.yaml",
        '"flux-system:motion-gateway"',
        '"flux-system:motion-simulator"',
        check_image_automation,
        ("ipc/motion-gateway differs", "motion-simulator"),
    ),
    "image line without a marker": Breakage(
        "workloads/ev-battery-simulator/deployment.yaml",
        ' # {"$imagepolicy": "flux-system:ev-battery-simulator"}',
        "",
        check_image_automation,
        ("ev-battery-simulator/deployment.yaml", "no setter marker"),
    ),
    "image from a registry other than the placeholder": Breakage(
        "workloads/vision-simulator/deployment.yaml",
        "image: ipcplatformacr.azurecr.io/ipc/vision-simulator:",
        "image: otheracr.azurecr.io/ipc/vision-simulator:",
        check_image_automation,
        ("otheracr.azurecr.io/ipc/vision-simulator", f"not from {REGISTRY_PLACEHOLDER}"),
    ),
    "policy naming a missing image repository": Breakage(
        "flux-system/image-automation/image-policies.yaml",
        "  imageRepositoryRef:\n    name: anomaly-detection\n",
        "  imageRepositoryRef:\n    name: anomaly-detector\n",
        check_image_automation,
        ("anomaly-detector", "missing ImageRepository"),
    ),
    "resource entry that does not exist": Breakage(
        "workloads/kustomization.yaml",
        "  - motion-gateway\n",
        "  - motion-gateway\n  - conveyor-simulator\n",
        check_kustomization_resources,
        ("'conveyor-simulator'", "does not exist"),
    ),
    "resource entry that does not exist, seen by the render": Breakage(
        "workloads/kustomization.yaml",
        "  - motion-gateway\n",
        "  - motion-gateway\n  - conveyor-simulator\n",
        check_workloads_render,
        ("'conveyor-simulator'", "does not exist"),
    ),
    "manifest left out of its kustomization": Breakage(
        "workloads/opcua-gateway/kustomization.yaml",
        "  - configmap.yaml\n",
        "",
        check_kustomization_resources,
        ("'configmap.yaml'", "not listed"),
    ),
    "deployment missing its workload-type label": Breakage(
        "workloads/log-forwarder/deployment.yaml",
        "    app: log-forwarder\n    workload-type: production\n",
        "    app: log-forwarder\n",
        check_workloads_render,
        ("Deployment log-forwarder", "metadata label workload-type=None"),
    ),
    "pod template missing its workload-type label": Breakage(
        "workloads/motion-simulator/deployment.yaml",
        "        app: motion-simulator\n        workload-type: simulator\n",
        "        app: motion-simulator\n",
        check_workloads_render,
        ("Deployment motion-simulator", "pod template label workload-type=None"),
    ),
    "secret key panels are not given": Breakage(
        "workloads/health-monitor/deployment.yaml",
        "key: key\n",
        "key: primaryKey\n",
        check_workloads_render,
        ("log-analytics-connection", "'primaryKey'"),
    ),
    "kustomize feature the renderer does not implement": Breakage(
        "workloads/kustomization.yaml",
        "namespace: ipc-workloads\n",
        "namespace: ipc-workloads\ncommonLabels:\n  site: plant-1\n",
        check_workloads_render,
        ("not implemented", "commonLabels"),
    ),
    "deployment field of the wrong type": Breakage(
        "workloads/opcua-simulator/deployment.yaml",
        "  replicas: 1\n",
        '  replicas: "1"\n',
        check_core_kind_schemas,
        ("opcua-simulator", "spec.replicas"),
    ),
    "container field the API server does not know": Breakage(
        "workloads/health-monitor/deployment.yaml",
        "          imagePullPolicy: IfNotPresent\n",
        "          imagePullPolicy: IfNotPresent\n          restartPolicyy: Always\n",
        check_core_kind_schemas,
        ("health-monitor", "restartPolicyy"),
    ),
    "README secret table out of date": Breakage(
        "README.md",
        "| motion-gateway | simulator | `iot-hub-connection` (connectionString) |",
        "| motion-gateway | simulator | none |",
        check_readme_matches_content,
        ("row motion-gateway", "iot-hub-connection"),
    ),
    "README secret keys that differ from the seed's table": Breakage(
        "README.md",
        "| health-monitor | production | `log-analytics-connection` (workspaceId, key) |",
        "| health-monitor | production | `log-analytics-connection` (workspaceId, sharedKey) |",
        check_readme_matches_content,
        ("row health-monitor", "log-analytics-connection", "sharedKey"),
    ),
    "README flux create path that does not exist": Breakage(
        "README.md",
        "path=./kubernetes/workloads ",
        "path=./kubernetes/workload ",
        check_readme_matches_content,
        ("kubernetes/workload", "flux create"),
    ),
}


def break_seed_copy(breakage: Breakage, tmp_path: Path) -> Path:
    """A repository root holding a copy of the seed with `breakage` applied exactly once."""
    shutil.copytree(REPO_ROOT / SEED_DIR, tmp_path / SEED_DIR)
    target = tmp_path / SEED_DIR / breakage.file
    text = target.read_text(encoding="utf-8")
    assert text.count(breakage.old) == 1, f"breakage must edit exactly one place in {breakage.file}"
    target.write_text(text.replace(breakage.old, breakage.new), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_check_reports_broken_content(breakage: Breakage, tmp_path: Path) -> None:
    broken_root = break_seed_copy(breakage, tmp_path)

    problems = breakage.check(broken_root)

    assert any(all(fragment in problem for fragment in breakage.reported) for problem in problems), problems


def test_unbroken_copy_passes_every_check(tmp_path: Path) -> None:
    # The breakage tests run on copies; a copy that already failed would make them prove nothing.
    shutil.copytree(REPO_ROOT / SEED_DIR, tmp_path / SEED_DIR)

    assert [problem for check in ALL_CHECKS for problem in check(tmp_path)] == []


# --- the renderer behaves like kustomize where the seed relies on it ------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative_path, text in files.items():
        (root / relative_path).parent.mkdir(parents=True, exist_ok=True)
        (root / relative_path).write_text(text, encoding="utf-8")
    return root


def test_namespace_applies_to_namespaced_objects_and_renames_namespace_objects(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "app/kustomization.yaml": "namespace: target\nresources: [objects.yaml, base]\n",
            "app/objects.yaml": (
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\n"
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n"
            ),
            "app/base/kustomization.yaml": "resources: [config.yaml]\n",
            "app/base/config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: old}\n",
        },
    )

    rendered = render_kustomization(tmp_path / "app", repo_root=tmp_path)

    assert [(item.kind, item.namespace, item.name) for item in rendered] == [
        ("Namespace", None, "target"),
        ("ClusterRole", None, "reader"),
        ("ConfigMap", "target", "c"),
    ]


@pytest.mark.parametrize(
    ("files", "refusal"),
    [
        pytest.param(
            {
                "app/kustomization.yaml": "resources: [a.yaml]\nimages: [{name: x, newTag: v2}]\n",
                "app/a.yaml": "",
            },
            UnsupportedKustomizeFeatureError,
            id="images transformer",
        ),
        pytest.param(
            {"app/kustomization.yaml": "resources: [https://example.com/base]\n"},
            UnsupportedKustomizeFeatureError,
            id="remote base",
        ),
        pytest.param(
            {
                "app/kustomization.yaml": "namespace: n\nresources: [binding.yaml]\n",
                "app/binding.yaml": (
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b}\n"
                ),
            },
            UnsupportedKustomizeFeatureError,
            id="namespace over binding subjects",
        ),
        pytest.param(
            {
                "app/kustomization.yaml": "resources: [a.yaml, b.yaml]\n",
                "app/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n",
                "app/b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n",
            },
            KustomizeRenderError,
            id="duplicate object",
        ),
        pytest.param(
            {
                "app/kustomization.yaml": "resources: [loop]\n",
                "app/loop/kustomization.yaml": "resources: [..]\n",
            },
            KustomizeRenderError,
            id="cycle of folders",
        ),
        pytest.param(
            {"app/kustomization.yaml": "resources: [../../outside.yaml]\n"},
            KustomizeRenderError,
            id="path outside the repository",
        ),
        pytest.param(
            {"app/kustomization.yaml": "resources: []\n", "app/Kustomization": "resources: []\n"},
            KustomizeRenderError,
            id="two kustomization files",
        ),
    ],
)
def test_renderer_refuses_what_kustomize_would_not_render_as_it_does(
    files: dict[str, str], refusal: type[KustomizeRenderError], tmp_path: Path
) -> None:
    write_tree(tmp_path, files)

    with pytest.raises(refusal):
        render_kustomization(tmp_path / "app", repo_root=tmp_path)


def test_split_image_reference_keeps_registry_port_and_drops_digest() -> None:
    assert split_image_reference("registry.local:5000/ipc/app:v1.2.3@sha256:abc") == (
        "registry.local:5000/ipc/app",
        "v1.2.3",
    )
    assert split_image_reference("ipcplatformacr.azurecr.io/ipc/app") == (
        "ipcplatformacr.azurecr.io/ipc/app",
        None,
    )
