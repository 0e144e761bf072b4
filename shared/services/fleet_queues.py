"""The fleet-change engine's queue names, import-free.

The queue triggers' decorators need these names when the Functions host indexes `function_app`, before
any model or service loads (cold start: bench/cold_start.py), so they live apart from the engine.
"""

APPLY_QUEUE = "ff-fleet-apply"
VERIFY_QUEUE = "ff-fleet-verify"
