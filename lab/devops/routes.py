"""The URL table of the lab's dev.azure.com (after moto's `urls.py`).

Route templates are Azure DevOps' own (see `locations.py`): the project segment is optional when a
repository is named by id, and the Git endpoints live beside the REST API on the same host.
"""

from __future__ import annotations

from aiohttp import web

from lab.devops.responses import DevOpsResponses, ado_errors

_REPO = "/{org}/{project}/_apis/git/repositories/{repositoryId}"
_REPO_BY_ID = "/{org}/_apis/git/repositories/{repositoryId}"


def add_devops_routes(app: web.Application, responses: DevOpsResponses) -> None:
    router = app.router
    router.add_route("OPTIONS", "/{org}/_apis", ado_errors(responses.options_locations))
    router.add_route("OPTIONS", "/{org}/_apis/", ado_errors(responses.options_locations))
    router.add_get("/{org}/_apis/ResourceAreas", ado_errors(responses.get_resource_areas))
    router.add_get("/{org}/_apis/resourceAreas", ado_errors(responses.get_resource_areas))
    for base in (_REPO, _REPO_BY_ID):
        router.add_get(base, ado_errors(responses.get_repository))
        router.add_get(base + "/items", ado_errors(responses.get_items))
        router.add_get(base + "/items/{path:.+}", ado_errors(responses.get_items))
        router.add_get(base + "/commits", ado_errors(responses.get_commits))
        router.add_get(base + "/commits/{commitId}", ado_errors(responses.get_commit))
        router.add_get(base + "/refs", ado_errors(responses.get_refs))
        router.add_get(base + "/refs/{filter:.+}", ado_errors(responses.get_refs))
    for git_base in ("/{org}/{project}/_git/{repo}", "/{org}/_git/{repo}"):
        router.add_route("GET", git_base + "/{tail:.+}", responses.git)
        router.add_route("POST", git_base + "/{tail:.+}", responses.git)
