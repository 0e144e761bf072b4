"""The lab's process helpers for tests (they live in `lab.kit`, shared with benchmarks and the demo)."""

from lab.kit import LAB_START_TIMEOUT_S, REPO_ROOT, LabHandle, LabProcess

__all__ = ["LAB_START_TIMEOUT_S", "REPO_ROOT", "LabHandle", "LabProcess"]
