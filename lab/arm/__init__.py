"""Azure Resource Manager for the lab: connectedClusters, fluxConfigurations (+LRO), extensions."""

from lab.arm.service import ArmService as SERVICE

__all__ = ["SERVICE"]
