"""Azure DevOps for the lab: a real Git smart-HTTP server, the Git REST API and the PAT store."""

from lab.devops.service import DevOpsService as SERVICE

__all__ = ["SERVICE"]
