"""Flux image automation semantics, exactly: which tag an ImagePolicy selects and what setters change.

Pure Python (stdlib and PyYAML), no I/O and no Azure imports, so the app's verdict service and the
lab's image-automation simulator share one implementation. The rules and their upstream sources are
in `/work/shared/reference/flux-image-policy.md`; each module cites the sections it implements.

Modules: `semver` (Masterminds/semver v3.5 and Flux's tag parser), `goregex` (Go RE2 patterns and
`Expand`), `gofloat` (Go `ParseFloat`), `policy` (the ImagePolicy pipeline and explanations),
`exclusions` (ImageRepository exclusion lists and stored tag order), `manifests` (objects read from
YAML), `setters` (markers and rewrites), `images` (canonical repository names).
"""

from shared.image_policy.errors import InvalidPolicy
from shared.image_policy.exclusions import (
    DEFAULT_EXCLUSION_LIST,
    effective_exclusion_list,
    excluded_by,
    stored_tag_order,
)
from shared.image_policy.images import normalise_image
from shared.image_policy.manifests import (
    ImageObjects,
    ImagePolicy,
    ImageRepository,
    ImageUpdateAutomation,
    ManifestProblem,
    parse_duration,
    parse_image_objects,
)
from shared.image_policy.policy import (
    Selection,
    TagEvaluation,
    compile_policy,
    compute_selection,
    evaluate_tag,
    select_latest,
    select_latest_from_stored,
)
from shared.image_policy.semver import Version, parse_range, parse_version, semver_range_matches
from shared.image_policy.setters import (
    IgnoredMarker,
    LatestRef,
    Marker,
    MarkerScan,
    ObjectIdentity,
    Rewrite,
    apply_rewrites,
    compute_rewrites,
    files_in_update_path,
    find_markers,
    scan_markers,
)

__all__ = [
    "DEFAULT_EXCLUSION_LIST",
    "IgnoredMarker",
    "ImageObjects",
    "ImagePolicy",
    "ImageRepository",
    "ImageUpdateAutomation",
    "InvalidPolicy",
    "LatestRef",
    "ManifestProblem",
    "Marker",
    "MarkerScan",
    "ObjectIdentity",
    "Rewrite",
    "Selection",
    "TagEvaluation",
    "Version",
    "apply_rewrites",
    "compile_policy",
    "compute_rewrites",
    "compute_selection",
    "effective_exclusion_list",
    "evaluate_tag",
    "excluded_by",
    "files_in_update_path",
    "find_markers",
    "normalise_image",
    "parse_duration",
    "parse_image_objects",
    "parse_range",
    "parse_version",
    "scan_markers",
    "select_latest",
    "select_latest_from_stored",
    "semver_range_matches",
    "stored_tag_order",
]
