"""Cold start: `import function_app` against `import azure.functions` alone, in fresh processes.

The Functions host imports function_app.py on every cold start, before the first request is served.
The target is a ratio ≤ 1.5: fluxfleet's own indexing may cost at most half again what the Functions
library itself costs; the Azure SDKs must load on first use, not at import.
Last line: {"function_app_s": ..., "azure_functions_s": ..., "ratio": ...}
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 9  # odd, for a clean median; each run is a fresh interpreter


def time_import(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-X", "frozen_modules=on", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    # Interleave the two so machine noise hits both alike; one warm-up each for the file cache.
    time_import("import azure.functions")
    time_import("import function_app")
    app, baseline = [], []
    started = time.monotonic()
    for _ in range(RUNS):
        baseline.append(time_import("import azure.functions"))
        app.append(time_import("import function_app"))
    result = {
        "function_app_s": round(statistics.median(app), 4),
        "azure_functions_s": round(statistics.median(baseline), 4),
        "ratio": round(statistics.median(app) / statistics.median(baseline), 3),
        "runs": RUNS,
    }
    print(
        f"cold start over {RUNS} fresh processes each ({time.monotonic() - started:.1f} s):", file=sys.stderr
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
