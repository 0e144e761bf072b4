"""The logic of each capability, over small ports; built once per worker by `shared.container`."""
