"""The names of the app's Storage queues, import-free.

The queue triggers' decorators need these names when the Functions host indexes `function_app`, before
any model or service loads (cold start: bench/cold_start.py), so they live apart from their users.
"""

# The fleet-change engine's fan-out: apply a change to a batch of panels, then verify it.
FLEET_APPLY_QUEUE = "ff-fleet-apply"
FLEET_VERIFY_QUEUE = "ff-fleet-verify"
# Image checks: the later look at whether a pushed tag was committed and applied.
IMAGE_FOLLOW_UP_QUEUE = "ff-image-followups"
