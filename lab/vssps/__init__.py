"""vssps.dev.azure.com for the lab: the PAT Lifecycle API and the operator's sign-in."""

from lab.vssps.service import VsspsService as SERVICE

__all__ = ["SERVICE"]
