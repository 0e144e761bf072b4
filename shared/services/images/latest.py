"""`GET /api/images`: every ImagePolicy at HEAD — what Flux selects from the registry now, what Git holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from shared.image_policy import InvalidPolicy, LatestRef, compute_rewrites, compute_selection, excluded_by
from shared.services.images.snapshot import RepoSnapshot


@dataclass(frozen=True)
class PolicyStatus:
    """One ImagePolicy now: the tag Flux would select and what the markers in Git hold."""

    policy: str
    image: str
    selected: str | None
    failure: str | None
    in_git: tuple[str, ...]
    up_to_date: bool
    automations: tuple[str, ...]

    def to_document(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "image": self.image,
            "latest": self.selected,
            "failure": self.failure,
            "inGit": list(self.in_git),
            "upToDate": self.up_to_date,
            "automations": list(self.automations),
        }


def policy_statuses(
    snapshot: RepoSnapshot, *, list_tags: Callable[[str], Future[Sequence[str]]]
) -> list[PolicyStatus]:
    """One status per ImagePolicy of `snapshot`; `list_tags(image)` lists a repository's tags (async, so
    every registry listing runs at once)."""
    objects = snapshot.objects
    repositories = {
        (repository.namespace, repository.name): repository for repository in objects.repositories
    }
    tag_futures = {key: list_tags(repository.image) for key, repository in repositories.items()}
    statuses: list[PolicyStatus] = []
    for policy in objects.policies:
        repository = repositories.get(policy.repository_ref)
        name = f"{policy.namespace}/{policy.name}"
        if repository is None:
            statuses.append(
                PolicyStatus(name, "", None, "its ImageRepository is not in the repository", (), False, ())
            )
            continue
        automations = snapshot.automations_for(policy)
        markers = [
            marker for automation in automations for marker in snapshot.markers_for(policy, automation)
        ]
        in_git = tuple(dict.fromkeys(marker.current_value for marker in markers))
        selected: str | None = None
        failure: str | None = None
        try:
            tags = tag_futures[policy.repository_ref].result()
            kept = [tag for tag in tags if excluded_by(repository.exclusion_list, tag) is None]
            selection = compute_selection(policy.spec, kept)
            selected, failure = selection.tag, selection.failure
        except InvalidPolicy as error:
            failure = str(error)
        up_to_date = selected is not None and not compute_rewrites(
            markers, {(policy.namespace, policy.name): LatestRef(repository.image, selected)}
        )
        statuses.append(
            PolicyStatus(
                name,
                repository.image,
                selected,
                failure,
                in_git,
                up_to_date,
                tuple(f"{a.namespace}/{a.name}" for a in automations),
            )
        )
    return statuses
