"""Azure DevOps' discovery documents: resource areas and API resource locations.

The `azure-devops` SDK never hard-codes a URL. `Connection` first asks the organization for its
resource areas (`GET {org}/_apis/ResourceAreas`) to learn which host serves the Git area, then the
client asks that host for its API resource locations (`OPTIONS {host}/_apis`): for each operation an
id, a route template such as `{project}/_apis/{area}/repositories/{repositoryId}/{resource}/{*path}`
and the supported versions, from which it builds the URL and negotiates the `api-version`. The lab
answers both with the entries the SDK's Git client and location client look up, with the route
templates and ids Azure DevOps publishes for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.devops.api_version import ResourceVersions

# The Git area's resources: released at 7.1, previews up to 7.2 (what dev.azure.com advertises).
GIT_VERSIONS = ResourceVersions(min_version=1.0, max_version=7.2, released_version=7.1, resource_version=1)
# Location/ResourceAreas is a preview resource on Azure DevOps Services.
LOCATION_VERSIONS = ResourceVersions(
    min_version=3.2, max_version=7.2, released_version=0.0, resource_version=1
)

GIT_AREA_ID = "4e080c62-fa21-4fbc-8fef-2a10a2b38049"
CORE_AREA_ID = "79134c72-4a58-4b42-976c-04e7115f32bf"
TOKENS_AREA_ID = "55967393-20ef-45c6-a96c-b5d5d5986a9a"


@dataclass(frozen=True)
class ApiResourceLocation:
    id: str
    area: str
    resource_name: str
    route_template: str
    versions: ResourceVersions

    def wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "area": self.area,
            "resourceName": self.resource_name,
            "routeTemplate": self.route_template,
            "resourceVersion": self.versions.resource_version,
            "minVersion": f"{self.versions.min_version:.1f}",
            "maxVersion": f"{self.versions.max_version:.1f}",
            "releasedVersion": f"{self.versions.released_version:.1f}",
        }


RESOURCE_AREAS = ApiResourceLocation(
    "e81700f7-3be2-46de-8624-2eb35882fcaa",
    "Location",
    "ResourceAreas",
    "_apis/{resource}/{areaId}",
    LOCATION_VERSIONS,
)
GIT_REPOSITORIES = ApiResourceLocation(
    "225f7195-f9c7-4d14-ab28-a83f7ff77e1f",
    "git",
    "repositories",
    "{project}/_apis/{area}/{resource}/{repositoryId}",
    GIT_VERSIONS,
)
GIT_ITEMS = ApiResourceLocation(
    "fb93c0db-47ed-4a31-8c20-47552878fb44",
    "git",
    "items",
    "{project}/_apis/{area}/repositories/{repositoryId}/{resource}/{*path}",
    GIT_VERSIONS,
)
GIT_COMMITS = ApiResourceLocation(
    "c2570c3b-5b3f-41b8-98bf-5407bfde8d58",
    "git",
    "commits",
    "{project}/_apis/{area}/repositories/{repositoryId}/{resource}/{commitId}",
    GIT_VERSIONS,
)
GIT_REFS = ApiResourceLocation(
    "2d874a60-a811-4f62-9c9f-963a6ea0a55b",
    "git",
    "refs",
    "{project}/_apis/{area}/repositories/{repositoryId}/{resource}/{*filter}",
    GIT_VERSIONS,
)

ORGANIZATION_LOCATIONS = (RESOURCE_AREAS, GIT_REPOSITORIES, GIT_ITEMS, GIT_COMMITS, GIT_REFS)


def resource_areas(*, org_url: str, vssps_org_url: str | None) -> list[dict[str, str]]:
    """`ResourceAreaInfo`s: which host serves each area (`locationUrl` ends with a slash, as in ADO)."""
    areas = [
        {"id": GIT_AREA_ID, "name": "git", "locationUrl": org_url.rstrip("/") + "/"},
        {"id": CORE_AREA_ID, "name": "core", "locationUrl": org_url.rstrip("/") + "/"},
    ]
    if vssps_org_url:
        areas.append({"id": TOKENS_AREA_ID, "name": "Tokens", "locationUrl": vssps_org_url.rstrip("/") + "/"})
    return areas
