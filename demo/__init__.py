"""`make demo`: fluxfleet's main job against the lab's simulated fleet, as a user would drive it."""
