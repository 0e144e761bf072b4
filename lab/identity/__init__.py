"""Managed identity for the lab: the App Service identity endpoint `azure-identity` already speaks."""

from lab.identity.service import IdentityService as SERVICE

__all__ = ["SERVICE"]
