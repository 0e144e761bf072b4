"""Canonical image repository names, to match an ImageRepository with a registry push event.

An ImageRepository's `spec.image` is written by people (`alpine`, `docker.io/library/alpine`,
`Myacr.azurecr.io/ipc/app`) while a push event names the registry host and repository separately.
Flux resolves `spec.image` with go-containerregistry's `name.ParseReference` into
`status.canonicalImageName` (e.g. `alpine` -> `index.docker.io/library/alpine`, reference §5);
comparing both sides in that canonical form avoids false "no ImageRepository watches this image"
verdicts.
"""

from __future__ import annotations

# go-containerregistry's default registry, and the alias people write for it.
DOCKER_HUB = "index.docker.io"
_DOCKER_HUB_ALIAS = "docker.io"
# Official Docker Hub images live under `library/`.
_DOCKER_HUB_LIBRARY = "library/"


def normalise_image(ref: str) -> str:
    """`host/path` with Docker Hub defaults, lower-case host, and any tag or digest removed.

    The first path element is a registry host only when it contains `.` or `:` (go-containerregistry's
    rule, so `localhost/app` is a Docker Hub repository, as in Flux).
    """
    repository = ref.strip().split("@", 1)[0]
    last_colon = repository.rfind(":")
    if last_colon > repository.rfind("/"):
        repository = repository[:last_colon]  # a tag, not a host:port
    host, slash, path = repository.partition("/")
    if slash and ("." in host or ":" in host):
        host = host.lower()
    else:
        host, path = DOCKER_HUB, repository
    if host == _DOCKER_HUB_ALIAS:
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = _DOCKER_HUB_LIBRARY + path
    return f"{host}/{path}"
