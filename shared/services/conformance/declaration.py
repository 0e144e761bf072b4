"""The fleet's Flux setup as declared in Git (`kubernetes/fleet/flux.yaml`): strict parsing and validation.

Why strict: the declaration drives writes to every panel. A typo (`syncIntervall`), a duration Flux would
not read (`5 min`) or a path outside the repository must never become "the desired state" of 1,000
panels, so every unknown field, wrong type, bad duration and bad path is an `InvalidDeclaration` naming
the field (`configuration.kustomizations.workloads.syncInterval`); the service then keeps using the last
valid declaration and says so in health.

What is compared later (`drift`) is only what is declared: a field the file does not name is the
panel's own business (e.g. `suspend` belongs to the release pipelines, `configurationProtectedSettings`
to the credential rollout).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from shared.errors import InvalidInput
from shared.image_policy.extension_support import RELEASES
from shared.models import Panel

API_VERSION = "fluxfleet.io/v1"
KIND = "FleetFluxDeclaration"
FLUX_EXTENSION_TYPE = "microsoft.flux"
RELEASE_TRAINS = ("Stable", "Preview")
SCOPES = ("cluster", "namespace")
# Go's time.ParseDuration units Flux accepts in `--interval`, restricted to whole seconds (ARM stores
# `...InSeconds` integers): "5m", "1h30m", "90s".
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
# A kustomization path as the Arc CLI writes it: relative to the repository root, "./" first.
_PATH = re.compile(r"^\./[A-Za-z0-9._\-/]*$")
# Kubernetes object names (RFC 1123 labels): configuration, namespace, kustomization, extension names.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
ANY_VALUE = "*"
KNOWN_VERSIONS = frozenset(release.version for release in RELEASES)


class InvalidDeclaration(InvalidInput):
    """The declaration file is not valid; `field` names where (dotted, as in the file)."""

    code = "InvalidDeclaration"


@dataclass(frozen=True)
class TagMatch:
    """Every tag must be present with that value (`*`: any value). Tag names compare case-insensitively."""

    tags: Mapping[str, str]

    def matches(self, panel: Panel) -> bool:
        for name, wanted in self.tags.items():
            value = panel.tag(name)
            if value is None or wanted not in (ANY_VALUE, value):
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {"tags": dict(self.tags)}


@dataclass(frozen=True)
class Kustomization:
    path: str
    prune: bool | None = None
    sync_interval_s: int | None = None
    timeout_s: int | None = None
    retry_interval_s: int | None = None
    depends_on: tuple[str, ...] | None = None
    force: bool | None = None
    wait: bool | None = None


@dataclass(frozen=True)
class GitRepository:
    url: str | None  # None: the repository this file is read from
    branch: str
    https_user: str | None = None
    sync_interval_s: int | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class Configuration:
    name: str
    namespace: str
    scope: str
    git: GitRepository
    kustomizations: Mapping[str, Kustomization]
    # The Key Vault secret whose current proven version the configuration is created with; None: the
    # app's own (FLUXFLEET_PAT_SECRET_NAME).
    credential_secret: str | None = None


@dataclass(frozen=True)
class Extension:
    name: str
    type: str
    minimum_version: str
    auto_upgrade: bool
    release_train: str
    settings: Mapping[str, str]
    # The version to install or upgrade to when auto-upgrade is off; defaults to the minimum.
    version: str | None = None

    @property
    def target_version(self) -> str | None:
        """What a pinned install asks for (None with auto-upgrade: ARM refuses a version then)."""
        return None if self.auto_upgrade else (self.version or self.minimum_version)


@dataclass(frozen=True)
class Override:
    name: str
    match: TagMatch
    settings: Mapping[str, str] = field(default_factory=dict)
    kustomizations: Mapping[str, Kustomization] = field(default_factory=dict)
    credential_secret: str | None = None


@dataclass(frozen=True)
class Desired:
    """What one panel should run: the declaration with its matching overrides applied."""

    extension: Extension
    configuration: Configuration
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Declaration:
    include: tuple[TagMatch, ...]
    exclude: tuple[TagMatch, ...]
    extension: Extension
    configuration: Configuration
    overrides: tuple[Override, ...] = ()
    revision: str = ""  # the commit it was read at
    path: str = ""

    def targets(self, panel: Panel) -> bool:
        return any(m.matches(panel) for m in self.include) and not any(m.matches(panel) for m in self.exclude)

    def desired_for(self, panel: Panel, *, default_url: str) -> Desired:
        """The declaration for this panel: overrides in file order, later ones winning."""
        extension, configuration, applied = self.extension, self.configuration, []
        for override in self.overrides:
            if not override.match.matches(panel):
                continue
            applied.append(override.name)
            extension = replace(extension, settings={**extension.settings, **override.settings})
            configuration = replace(
                configuration,
                kustomizations={**configuration.kustomizations, **override.kustomizations},
                credential_secret=override.credential_secret or configuration.credential_secret,
            )
        if configuration.git.url is None:
            configuration = replace(configuration, git=replace(configuration.git, url=default_url))
        return Desired(extension=extension, configuration=configuration, overrides=tuple(applied))

    def kustomization_paths(self) -> set[str]:
        paths = {k.path for k in self.configuration.kustomizations.values()}
        for override in self.overrides:
            paths.update(k.path for k in override.kustomizations.values())
        return paths


# --- parsing ---------------------------------------------------------------------------------------
def parse_declaration(text: str, *, revision: str = "", path: str = "") -> Declaration:
    """Parse and validate the file's text; `InvalidDeclaration` naming the field on any fault."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InvalidDeclaration("(file)", f"not valid YAML{where}") from None
    body = _object(raw, "(file)")
    _known(
        body,
        "",
        required=("apiVersion", "kind", "target", "extension", "configuration"),
        optional=("overrides",),
    )
    if body["apiVersion"] != API_VERSION:
        raise InvalidDeclaration("apiVersion", f"must be {API_VERSION}")
    if body["kind"] != KIND:
        raise InvalidDeclaration("kind", f"must be {KIND}")
    target = _object(body["target"], "target")
    _known(target, "target", required=("include",), optional=("exclude",))
    include = _matches(target["include"], "target.include")
    if not include:
        raise InvalidDeclaration("target.include", "must select something (an empty list targets no panel)")
    exclude = _matches(target.get("exclude") or [], "target.exclude")
    overrides_raw = body.get("overrides") or []
    if not isinstance(overrides_raw, list):
        raise InvalidDeclaration("overrides", "must be a list")
    overrides = tuple(_override(item, f"overrides[{i}]") for i, item in enumerate(overrides_raw))
    names = [o.name for o in overrides]
    if len(set(names)) != len(names):
        raise InvalidDeclaration("overrides", "override names must be unique")
    return Declaration(
        include=include,
        exclude=exclude,
        extension=_extension(body["extension"], "extension"),
        configuration=_configuration(body["configuration"], "configuration"),
        overrides=overrides,
        revision=revision,
        path=path,
    )


def _extension(raw: Any, where: str) -> Extension:
    body = _object(raw, where)
    _known(
        body,
        where,
        required=("minimumVersion",),
        optional=(
            "name",
            "type",
            "version",
            "autoUpgradeMinorVersion",
            "releaseTrain",
            "configurationSettings",
        ),
    )
    ext_type = _string(body.get("type", FLUX_EXTENSION_TYPE), f"{where}.type")
    if ext_type != FLUX_EXTENSION_TYPE:
        raise InvalidDeclaration(f"{where}.type", f"must be {FLUX_EXTENSION_TYPE}")
    minimum = _version(body["minimumVersion"], f"{where}.minimumVersion")
    auto = _bool(body.get("autoUpgradeMinorVersion", True), f"{where}.autoUpgradeMinorVersion")
    version = None
    if "version" in body:
        if auto:
            raise InvalidDeclaration(
                f"{where}.version", "cannot be set when autoUpgradeMinorVersion is true (ARM refuses both)"
            )
        version = _version(body["version"], f"{where}.version")
        if _semver(version) < _semver(minimum):
            raise InvalidDeclaration(f"{where}.version", f"is below minimumVersion {minimum}")
    train = _string(body.get("releaseTrain", "Stable"), f"{where}.releaseTrain")
    if train not in RELEASE_TRAINS:
        raise InvalidDeclaration(f"{where}.releaseTrain", f"must be one of {', '.join(RELEASE_TRAINS)}")
    return Extension(
        name=_name(body.get("name", "flux"), f"{where}.name"),
        type=ext_type,
        minimum_version=minimum,
        auto_upgrade=auto,
        release_train=train,
        settings=_settings(body.get("configurationSettings") or {}, f"{where}.configurationSettings"),
        version=version,
    )


def _configuration(raw: Any, where: str) -> Configuration:
    body = _object(raw, where)
    _known(
        body,
        where,
        required=("name", "gitRepository", "kustomizations"),
        optional=("namespace", "scope", "credentialSecret"),
    )
    scope = _string(body.get("scope", "cluster"), f"{where}.scope")
    if scope not in SCOPES:
        raise InvalidDeclaration(f"{where}.scope", f"must be one of {', '.join(SCOPES)}")
    git = _object(body["gitRepository"], f"{where}.gitRepository")
    gwhere = f"{where}.gitRepository"
    _known(git, gwhere, required=("branch",), optional=("url", "httpsUser", "syncInterval", "timeout"))
    url = None
    if "url" in git:
        url = _string(git["url"], f"{gwhere}.url")
        if not url.startswith("https://"):
            raise InvalidDeclaration(f"{gwhere}.url", "must be an https:// URL")
    kustomizations = _kustomizations(body["kustomizations"], f"{where}.kustomizations")
    if not kustomizations:
        raise InvalidDeclaration(f"{where}.kustomizations", "must declare at least one kustomization")
    return Configuration(
        name=_name(body["name"], f"{where}.name"),
        namespace=_name(body.get("namespace", "flux-system"), f"{where}.namespace"),
        scope=scope,
        git=GitRepository(
            url=url,
            branch=_string(git["branch"], f"{gwhere}.branch"),
            https_user=_string(git["httpsUser"], f"{gwhere}.httpsUser") if "httpsUser" in git else None,
            sync_interval_s=_duration(git["syncInterval"], f"{gwhere}.syncInterval")
            if "syncInterval" in git
            else None,
            timeout_s=_duration(git["timeout"], f"{gwhere}.timeout") if "timeout" in git else None,
        ),
        kustomizations=kustomizations,
        credential_secret=_secret(body["credentialSecret"], f"{where}.credentialSecret")
        if "credentialSecret" in body
        else None,
    )


def _override(raw: Any, where: str) -> Override:
    body = _object(raw, where)
    _known(body, where, required=("name", "match"), optional=("extension", "configuration"))
    match = _match(body["match"], f"{where}.match")
    settings: Mapping[str, str] = {}
    if "extension" in body:
        ext = _object(body["extension"], f"{where}.extension")
        _known(ext, f"{where}.extension", required=(), optional=("configurationSettings",))
        settings = _settings(
            ext.get("configurationSettings") or {}, f"{where}.extension.configurationSettings"
        )
    kustomizations: Mapping[str, Kustomization] = {}
    secret = None
    if "configuration" in body:
        conf = _object(body["configuration"], f"{where}.configuration")
        _known(conf, f"{where}.configuration", required=(), optional=("kustomizations", "credentialSecret"))
        kustomizations = _kustomizations(
            conf.get("kustomizations") or {}, f"{where}.configuration.kustomizations"
        )
        if "credentialSecret" in conf:
            secret = _secret(conf["credentialSecret"], f"{where}.configuration.credentialSecret")
    return Override(
        name=_string(body["name"], f"{where}.name"),
        match=match,
        settings=settings,
        kustomizations=kustomizations,
        credential_secret=secret,
    )


def _kustomizations(raw: Any, where: str) -> dict[str, Kustomization]:
    body = _object(raw, where)
    found: dict[str, Kustomization] = {}
    for name, value in body.items():
        kwhere = f"{where}.{name}"
        _name(name, kwhere)
        item = _object(value, kwhere)
        _known(
            item,
            kwhere,
            required=("path",),
            optional=("prune", "syncInterval", "timeout", "retryInterval", "dependsOn", "force", "wait"),
        )
        depends = item.get("dependsOn")
        if depends is not None and not (
            isinstance(depends, list) and all(isinstance(d, str) for d in depends)
        ):
            raise InvalidDeclaration(f"{kwhere}.dependsOn", "must be a list of kustomization names")
        found[name] = Kustomization(
            path=_path(item["path"], f"{kwhere}.path"),
            prune=_bool(item["prune"], f"{kwhere}.prune") if "prune" in item else None,
            sync_interval_s=_duration(item["syncInterval"], f"{kwhere}.syncInterval")
            if "syncInterval" in item
            else None,
            timeout_s=_duration(item["timeout"], f"{kwhere}.timeout") if "timeout" in item else None,
            retry_interval_s=_duration(item["retryInterval"], f"{kwhere}.retryInterval")
            if "retryInterval" in item
            else None,
            depends_on=tuple(depends) if depends is not None else None,
            force=_bool(item["force"], f"{kwhere}.force") if "force" in item else None,
            wait=_bool(item["wait"], f"{kwhere}.wait") if "wait" in item else None,
        )
    return found


def _matches(raw: Any, where: str) -> tuple[TagMatch, ...]:
    if not isinstance(raw, list):
        raise InvalidDeclaration(where, "must be a list of {tags: {...}}")
    return tuple(_match(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _match(raw: Any, where: str) -> TagMatch:
    body = _object(raw, where)
    _known(body, where, required=("tags",), optional=())
    tags = _settings(body["tags"], f"{where}.tags")
    if not tags:
        raise InvalidDeclaration(f"{where}.tags", "must name at least one tag (an empty match is everything)")
    return TagMatch(tags=tags)


# --- scalar checks ---------------------------------------------------------------------------------
def parse_duration(value: str) -> int | None:
    """Seconds of a Flux interval ("5m", "1h30m", "90s"), or None when it is not one."""
    match = _DURATION.match(value.strip()) if value.strip() else None
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    return total or None


def _duration(value: Any, where: str) -> int:
    seconds = parse_duration(value) if isinstance(value, str) else None
    if seconds is None:
        raise InvalidDeclaration(where, f"must be a duration such as 5m, 1h30m or 90s (got {value!r})")
    return seconds


def _path(value: Any, where: str) -> str:
    text = _string(value, where)
    if not _PATH.match(text) or ".." in text.split("/") or "//" in text:
        raise InvalidDeclaration(
            where, f"must be a path inside the repository starting with ./ (got {text!r})"
        )
    return text.rstrip("/") if text != "./" else text


def _version(value: Any, where: str) -> str:
    text = _string(value, where)
    if text not in KNOWN_VERSIONS:
        raise InvalidDeclaration(where, f"{text!r} is not a released microsoft.flux version")
    return text


def _name(value: Any, where: str) -> str:
    text = _string(value, where)
    if not _NAME.match(text):
        raise InvalidDeclaration(where, "must be a lowercase RFC 1123 name")
    return text


def _secret(value: Any, where: str) -> str:
    text = _string(value, where)
    if not _SECRET_NAME.match(text):
        raise InvalidDeclaration(where, "must be a Key Vault secret name")
    return text


def _settings(raw: Any, where: str) -> dict[str, str]:
    body = _object(raw, where)
    for key, value in body.items():
        if not isinstance(value, str):
            raise InvalidDeclaration(f"{where}.{key}", 'must be a string (quote it: "true")')
    return {str(k): v for k, v in body.items()}


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidDeclaration(where, "must be a mapping")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidDeclaration(where, "must be a non-empty string")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidDeclaration(where, "must be true or false")
    return value


def _known(
    body: Mapping[str, Any], where: str, *, required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    prefix = f"{where}." if where else ""
    for key in body:
        if key not in required and key not in optional:
            raise InvalidDeclaration(f"{prefix}{key}", "unknown field")
    for key in required:
        if key not in body:
            raise InvalidDeclaration(f"{prefix}{key}", "is required")


def _semver(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def version_key(version: str) -> tuple[int, ...]:
    """A release version as a comparable tuple; () when it is not `N.N.N`."""
    try:
        return _semver(version)
    except ValueError:
        return ()
