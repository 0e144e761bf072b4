"""The logic of each capability, over small ports; built per worker by `from_runtime`."""
