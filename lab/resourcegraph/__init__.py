"""Azure Resource Graph for the lab: `Resources` queries in a KQL subset over ARM's fleet, lagging ARM."""

from lab.resourcegraph.service import ResourceGraphService as SERVICE

__all__ = ["SERVICE"]
