"""Canonical image names for matching ImageRepositories with registry events (reference §5)."""

from __future__ import annotations

import pytest

from shared.image_policy import normalise_image


@pytest.mark.parametrize(
    ("ref", "canonical"),
    [
        ("alpine", "index.docker.io/library/alpine"),
        ("docker.io/alpine", "index.docker.io/library/alpine"),
        ("docker.io/library/alpine:3.19", "index.docker.io/library/alpine"),
        ("index.docker.io/fluxcd/flux", "index.docker.io/fluxcd/flux"),
        ("fluxcd/flux:v1", "index.docker.io/fluxcd/flux"),
        ("MyAcr.AzureCR.io/ipc/opcua-gateway:v1.2.3", "myacr.azurecr.io/ipc/opcua-gateway"),
        ("myacr.azurecr.io/ipc/app@sha256:abc", "myacr.azurecr.io/ipc/app"),
        ("myacr.azurecr.io/ipc/app:v1@sha256:abc", "myacr.azurecr.io/ipc/app"),
        ("localhost:5000/app:1.0", "localhost:5000/app"),
        ("localhost:5000/app", "localhost:5000/app"),
        ("localhost/app", "index.docker.io/localhost/app"),
    ],
)
def test_normalise_image(ref: str, canonical: str) -> None:
    assert normalise_image(ref) == canonical


def test_spec_image_and_push_event_image_compare_equal() -> None:
    assert normalise_image("myacr.azurecr.io/ipc/app") == normalise_image("myacr.azurecr.io/ipc/app:v2.0.0")
