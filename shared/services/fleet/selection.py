"""Which panels a request means: parse a `target`, check it, and match it against the fleet.

The rules a release pipeline relies on, in one place: a panel is selected when it matches *every*
criterion given; the whole fleet only with `"all": true` and nothing else (an empty filter must never
mean "everything"); names that match no panel are an error (422) listing them, because a typo in a
freeze request should stop the pipeline, not silently freeze less than intended.

Matching follows ARM: resource ids, names, resource groups, subscriptions and tag *names* are
case-insensitive; tag *values* are compared exactly. A name matches every panel of that name (names
are unique per resource group, not per fleet) — use ARM ids to be precise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.errors import InvalidInput, Unprocessable
from shared.models import Panel, Selector, parse_cluster_id

# A target naming more clusters than this is almost certainly a mistake; it also keeps the request
# well under the 64 KiB body limit with room for ARM ids (~150 bytes each).
MAX_TARGET_CLUSTERS = 5000
# How many unknown names a 422 lists in full (the count is always exact).
MAX_UNKNOWN_LISTED = 50

TARGET_FIELDS = frozenset({"clusters", "tags", "resourceGroups", "subscriptions", "all"})


def parse_selector(raw: Any, *, field: str = "target") -> Selector:
    """A `target` object from a request body → Selector; `InvalidInput` naming the bad field."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(field, "must be an object")
    unknown = sorted(set(raw) - TARGET_FIELDS)
    if unknown:
        raise InvalidInput(
            f"{field}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(TARGET_FIELDS))})"
        )
    clusters = _string_list(raw.get("clusters"), f"{field}.clusters", limit=MAX_TARGET_CLUSTERS)
    groups = _string_list(raw.get("resourceGroups"), f"{field}.resourceGroups", limit=MAX_TARGET_CLUSTERS)
    subscriptions = _string_list(
        raw.get("subscriptions"), f"{field}.subscriptions", limit=MAX_TARGET_CLUSTERS
    )
    tags_raw = raw.get("tags", {})
    if tags_raw is None:
        tags_raw = {}
    if not isinstance(tags_raw, Mapping) or not all(
        isinstance(k, str) and k.strip() and isinstance(v, str) for k, v in tags_raw.items()
    ):
        raise InvalidInput(f"{field}.tags", "must be an object of tag name → string value")
    select_all = raw.get("all", False)
    if not isinstance(select_all, bool):
        raise InvalidInput(f"{field}.all", "must be true or false")
    for cluster in clusters:
        if cluster.startswith("/"):
            try:
                parse_cluster_id(cluster)
            except ValueError as exc:
                raise InvalidInput(f"{field}.clusters", str(exc)) from None
    selector = Selector(
        clusters=tuple(clusters),
        tags=dict(tags_raw),
        resource_groups=tuple(groups),
        subscriptions=tuple(subscriptions),
        all=select_all,
    )
    check_selector(selector, field=field)
    return selector


def check_selector(selector: Selector, *, field: str = "target") -> None:
    if selector.all and not selector.empty:
        raise InvalidInput(
            f"{field}.all", "selects the whole fleet and must not be combined with other criteria"
        )
    if not selector.all and selector.empty:
        raise InvalidInput(
            field, 'selects nothing: give clusters, tags, resourceGroups or subscriptions, or "all": true'
        )


def check_subscriptions(selector: Selector, *, configured: Sequence[str], field: str = "target") -> None:
    """422 for subscriptions the app does not manage (names are resolved across every configured one)."""
    known = {s.lower() for s in configured}
    bad = sorted(s for s in selector.subscriptions if s.lower() not in known)
    if bad:
        raise Unprocessable(
            f"{field}.subscriptions", f"not managed by this app: {', '.join(bad)}", unknown=bad
        )


def matches(panel: Panel, selector: Selector) -> bool:
    if selector.all:
        return True
    if selector.clusters and not any(_names(panel, ref) for ref in selector.clusters):
        return False
    if selector.subscriptions and panel.subscription.lower() not in {
        s.lower() for s in selector.subscriptions
    }:
        return False
    if selector.resource_groups and panel.resource_group.lower() not in {
        g.lower() for g in selector.resource_groups
    }:
        return False
    return all(panel.tag(name) == value for name, value in selector.tags.items())


def select(panels: Iterable[Panel], selector: Selector, *, field: str = "target") -> list[Panel]:
    """The panels the selector means. 422 listing names/ids that match no panel, or when nothing matches."""
    fleet = list(panels)
    unknown = [ref for ref in selector.clusters if not any(_names(panel, ref) for panel in fleet)]
    if unknown:
        listed = unknown[:MAX_UNKNOWN_LISTED]
        more = f" (and {len(unknown) - len(listed)} more)" if len(unknown) > len(listed) else ""
        raise Unprocessable(
            f"{field}.clusters", f"unknown clusters: {', '.join(listed)}{more}", unknown=listed
        )
    chosen = [panel for panel in fleet if matches(panel, selector)]
    if not chosen:
        raise Unprocessable(field, "matches no panel")
    return sorted(chosen, key=lambda p: (p.name.lower(), p.key))


def filter_panels(panels: Iterable[Panel], selector: Selector) -> list[Panel]:
    """Like `select` without the errors: for read-only listings (an empty result is an answer)."""
    if selector.empty and not selector.all:
        return sorted(panels, key=lambda p: (p.name.lower(), p.key))
    return sorted((p for p in panels if matches(p, selector)), key=lambda p: (p.name.lower(), p.key))


def _names(panel: Panel, ref: str) -> bool:
    if ref.startswith("/"):
        return panel.id.lower() == ref.lower().rstrip("/")
    return panel.name.lower() == ref.lower()


def _string_list(raw: Any, field: str, *, limit: int) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) and item.strip() for item in raw):
        raise InvalidInput(field, "must be a list of non-empty strings")
    if len(raw) > limit:
        raise InvalidInput(field, f"at most {limit} entries")
    return [item.strip() for item in raw]
