"""Azure Container Registry data plane for the lab: the registry the fleet's workload images come from."""

from lab.acr.service import AcrService as SERVICE

__all__ = ["SERVICE"]
