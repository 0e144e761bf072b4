"""The local host's process helper for e2e tests (it lives in `lab.kit`, shared with the demo)."""

from pathlib import Path

from lab.kit import HOST_START_TIMEOUT_S, HOST_STOP_TIMEOUT_S, HostProcess, KeyKind

# A small function app that exercises every trigger the host supports (tests/e2e/test_host.py).
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"

__all__ = ["HOST_START_TIMEOUT_S", "HOST_STOP_TIMEOUT_S", "SAMPLE_APP", "HostProcess", "KeyKind"]
