"""Fixtures shared by every test layer: small and composable (after kopf's test suite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.labkit import LabHandle, LabProcess


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A running lab with the default 50-panel healthy fleet, shared by the session.

    Tests that change the lab's state call `lab_clean` (which resets it) or restore what they change.
    """
    state_dir: Path = tmp_path_factory.mktemp("lab")
    with LabProcess(state_dir, clusters=50, subscriptions=2) as handle:
        yield handle


@pytest.fixture
def lab_clean(lab: LabHandle) -> Iterator[LabHandle]:
    """The session lab, reset to its seeded state before and after the test."""
    lab.control("POST", "/_lab/reset")
    yield lab
    lab.control("POST", "/_lab/reset")
