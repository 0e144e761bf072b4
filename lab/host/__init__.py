"""A local Azure Functions host for the Python v2 programming model, run against the lab.

Azure Functions Core Tools cannot be installed everywhere the tests and the demo run, so
`python -m lab host` runs `function_app.py` the way the Functions host and Python worker do, at the
same addresses: HTTP triggers under `/api/` with keys, the Event Grid webhook, timers, queue triggers
on Azurite, and the admin API. See lab/docs/host.md for usage and every known difference from Azure.
"""

from lab.host.server import run_host
from lab.host.settings import render_local_settings

__all__ = ["render_local_settings", "run_host"]
