"""Adapters: the only modules that import Azure SDKs. Each implements a port from `shared.ports`."""
