"""Event Grid push delivery for the lab: webhook subscriptions to the vault's and the registry's events."""

from lab.eventgrid.service import EventGridService as SERVICE

__all__ = ["SERVICE"]
