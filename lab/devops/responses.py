# One module (>500 lines): every Azure DevOps route's parse/serialise step, as moto's responses.py.
"""Azure DevOps on the wire: parse each request, call the backend, serialise as dev.azure.com does.

Two protocols share the listener, as on dev.azure.com: Git smart HTTP under
`/{org}/{project}/_git/{repo}` and the REST API under `/{org}/[{project}/]_apis/...`, in the shapes the
`azure-devops` 7.1 SDK's `GitClient` reads (camelCase `GitItem`, `GitCommitRef`, `GitRef`,
`GitRepository`, collections as `{"count", "value"}`), with the error envelope of `errors.py`.
Content negotiation follows the service: an item is JSON metadata unless the client's `Accept` asks
for `application/octet-stream` or `text/plain` (what `get_item_content` / `get_item_text` send).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from lab.core.clock import iso
from lab.devops.api_version import negotiate_api_version
from lab.devops.errors import (
    AdoError,
    Forbidden,
    GitContributeRefused,
    GitItemNotFound,
    GitRepositoryNotFound,
    GitUnresolvableToCommit,
    InvalidArgumentValue,
    OrganizationNotFound,
    ProjectDoesNotExist,
    Unauthorized,
    ado_headers,
)
from lab.devops.locations import (
    GIT_VERSIONS,
    LOCATION_VERSIONS,
    ORGANIZATION_LOCATIONS,
    resource_areas,
)
from lab.devops.models import (
    RECURSION_LEVELS,
    GitCommitInfo,
    GitItem,
    UnresolvableVersion,
    normalise_path,
)

if TYPE_CHECKING:
    from lab.devops.auth import Caller
    from lab.devops.service import DevOpsService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# ADO's default page of commits (`$top` unset) and its cap.
_DEFAULT_COMMITS_TOP = 100
_MAX_COMMITS_TOP = 10_000
# UTF-8, as .NET numbers encodings in `contentMetadata.encoding`.
_UTF8_CODE_PAGE = 65001
# Search criteria the lab implements; any other `searchCriteria.*` is refused rather than ignored.
_SUPPORTED_CRITERIA = frozenset(
    {
        "itempath",
        "itemversion.version",
        "itemversion.versiontype",
        "itemversion.versionoptions",
        "$top",
        "$skip",
        "author",
        "fromdate",
        "todate",
        "showoldestcommitsfirst",
        "historymode",
        "includelinks",
        "includeuserimageurl",
    }
)


def ado_errors(handler: Handler) -> Handler:
    """Render the typed errors a handler raises as Azure DevOps renders them."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (AdoError, Unauthorized, Forbidden) as exc:
            return exc.response()

    return wrapped


def _ado_json(body: Any, *, api_version: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), headers=ado_headers(api_version))


def _collection(values: list[dict[str, Any]], *, api_version: str) -> web.Response:
    return _ado_json({"count": len(values), "value": values}, api_version=api_version)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").strip().lower() == "true"


def _query(request: web.Request, *names: str) -> str | None:
    """The first of `names` present in the query, case-insensitively (ASP.NET binds them so)."""
    lowered = {key.lower(): value for key, value in request.query.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


class DevOpsResponses:
    def __init__(self, service: DevOpsService) -> None:
        self.service = service

    # --- shared lookups -----------------------------------------------------------------------------
    def _check_org(self, request: web.Request) -> None:
        org = request.match_info["org"]
        if org.lower() != self.service.org.lower():
            raise OrganizationNotFound(
                f"The organization '{org}' does not exist or you do not have permissions to access it."
            )

    def _check_repository(self, request: web.Request) -> None:
        """Project and repository from the route, by name or id, case-insensitive (404s as ADO words them)."""
        service = self.service
        project = request.match_info.get("project")
        repository = request.match_info["repositoryId"]
        if project is not None and not self._is_project(project):
            raise ProjectDoesNotExist(
                f"TF200016: The following project does not exist: {project}. Verify that the name of the "
                "project is correct and that the project exists on the specified Azure DevOps Server."
            )
        if project is None and repository.lower() == service.repository.lower():
            raise InvalidArgumentValue(
                "A project name is required in order to reference a Git repository by name."
            )
        if not self._is_repository(repository):
            raise GitRepositoryNotFound(
                f"TF401019: The Git repository with name or identifier {repository} does not exist or you "
                "do not have permissions for the operation you are attempting."
            )

    def _is_project(self, name_or_id: str) -> bool:
        return name_or_id.lower() in (self.service.project.lower(), self.service.project_id)

    def _is_repository(self, name_or_id: str) -> bool:
        return name_or_id.lower() in (self.service.repository.lower(), self.service.repository_id)

    def _authenticate_rest(self, request: web.Request) -> Caller:
        self._check_org(request)
        return self.service.auth.authenticate(request, needed_scope="vso.code")

    def _resolve_version(
        self, version: str | None, version_type: str | None, options: str | None, item_path: str = ""
    ) -> str:
        backend = self.service.backend
        kind = (version_type or "branch").lower()
        try:
            commit_id = backend.resolve_commit(version, kind)
        except UnresolvableVersion as exc:
            label = {"branch": "Branch", "tag": "Tag", "commit": "Commit"}.get(kind, version_type or "Branch")
            raise GitUnresolvableToCommit(
                f"TF401175:The version descriptor <{label}: {version} > could not be resolved to a version "
                f"in the repository {self.service.repository}"
            ) from exc
        option = (options or "none").lower()
        if option == "none":
            return commit_id
        if option == "firstparent":
            info = backend.get_commit(commit_id)
            if info is None or not info.parents:
                raise GitUnresolvableToCommit(
                    f"TF401175:The version descriptor <{version}> has no first parent in "
                    f"the repository {self.service.repository}"
                )
            return info.parents[0]
        if option == "previouschange":
            last_change = next(iter(backend.get_commits(commit_id, item_path=item_path)), None)
            if last_change is None or not last_change.parents:
                raise GitUnresolvableToCommit(
                    f"TF401175:The version descriptor <{version}> has no previous change "
                    f"in the repository {self.service.repository}"
                )
            return last_change.parents[0]
        raise InvalidArgumentValue(f"The value '{options}' is not valid for versionOptions.")

    # --- serialisation ------------------------------------------------------------------------------
    def _api_base(self) -> str:
        s = self.service
        return f"{s.endpoint}/{s.org}/{s.project_id}/_apis/git/repositories/{s.repository_id}"

    def _git_user_date(self, name: str, email: str, when: datetime) -> dict[str, str]:
        return {"name": name, "email": email, "date": iso(when)}

    def _commit_ref(self, commit: GitCommitInfo) -> dict[str, Any]:
        counts = {"Add": 0, "Edit": 0, "Delete": 0}
        for change in commit.changes:
            counts[change.change_type.capitalize()] += 1
        return {
            "commitId": commit.commit_id,
            "author": self._git_user_date(commit.author_name, commit.author_email, commit.author_time),
            "committer": self._git_user_date(
                commit.committer_name, commit.committer_email, commit.commit_time
            ),
            "comment": commit.message,
            "changeCounts": counts,
            "url": f"{self._api_base()}/commits/{commit.commit_id}",
            "remoteUrl": f"{self.service.git_url}/commit/{commit.commit_id}",
        }

    def _item(
        self,
        item: GitItem,
        commit_id: str,
        *,
        version: str | None,
        version_type: str | None,
        content: bytes | None = None,
        metadata: bool = False,
        latest_change: GitCommitInfo | None = None,
    ) -> dict[str, Any]:
        url = (
            f"{self._api_base()}/items?path={quote(item.path, safe='/')}"
            f"&versionType={(version_type or 'branch').capitalize()}"
            f"&version={quote(version or self.service.branch)}&versionOptions=None"
        )
        body: dict[str, Any] = {
            "objectId": item.object_id,
            "gitObjectType": "tree" if item.is_folder else "blob",
            "commitId": commit_id,
            "path": item.path,
        }
        if item.is_folder:
            body["isFolder"] = True
        if content is not None:
            body["content"] = content.decode("utf-8", errors="replace")
        if metadata:
            name = item.path.rsplit("/", 1)[-1]
            body["contentMetadata"] = (
                {"fileName": name, "encoding": _UTF8_CODE_PAGE} if not item.is_folder else {"fileName": name}
            )
            if not item.is_folder and "." in name:
                body["contentMetadata"]["extension"] = name.rsplit(".", 1)[-1]
        if latest_change is not None:
            body["latestProcessedChange"] = self._commit_ref(latest_change)
        body["url"] = url
        return body

    # --- discovery ----------------------------------------------------------------------------------
    async def options_locations(self, request: web.Request) -> web.Response:
        """`OPTIONS {org}/_apis`: the resource locations the SDK builds URLs from (anonymous, as in ADO)."""
        self._check_org(request)
        locations = [location.wire() for location in ORGANIZATION_LOCATIONS]
        return web.Response(
            text=json.dumps({"count": len(locations), "value": locations}), headers=ado_headers()
        )

    async def get_resource_areas(self, request: web.Request) -> web.Response:
        """`GET {org}/_apis/ResourceAreas`: which host serves which area (Git here, Tokens on vssps)."""
        api_version = negotiate_api_version(request, LOCATION_VERSIONS)
        self._check_org(request)
        s = self.service
        vssps = s.lab.services.get("vssps")
        areas = resource_areas(
            org_url=s.org_url, vssps_org_url=f"{vssps.endpoint}/{s.org}" if vssps else None
        )
        return _collection(list(areas), api_version=api_version)

    # --- Git REST -----------------------------------------------------------------------------------
    async def get_repository(self, request: web.Request) -> web.Response:
        api_version = negotiate_api_version(request, GIT_VERSIONS)
        self._authenticate_rest(request)
        self._check_repository(request)
        s = self.service
        project_url = f"{s.endpoint}/{s.org}/_apis/projects/{s.project_id}"
        return _ado_json(
            {
                "id": s.repository_id,
                "name": s.repository,
                "url": f"{s.endpoint}/{s.org}/{s.project_id}/_apis/git/repositories/{s.repository_id}",
                "project": {
                    "id": s.project_id,
                    "name": s.project,
                    "url": project_url,
                    "state": "wellFormed",
                    "revision": 1,
                    "visibility": "private",
                    "lastUpdateTime": iso(s.created_at),
                },
                "defaultBranch": s.backend.default_branch(),
                "size": s.repository_size(),
                "remoteUrl": s.git_url,
                "sshUrl": f"git@ssh.dev.azure.com:v3/{s.org}/{s.project}/{s.repository}",
                "webUrl": s.git_url,
                "isDisabled": False,
                "isInMaintenance": False,
            },
            api_version=api_version,
        )

    async def get_refs(self, request: web.Request) -> web.Response:
        api_version = negotiate_api_version(request, GIT_VERSIONS)
        self._authenticate_rest(request)
        self._check_repository(request)
        if _flag(request, "includeMyBranches"):
            raise InvalidArgumentValue("The lab does not support includeMyBranches.")
        prefix = "refs/" + (_query(request, "filter") or request.match_info.get("filter") or "")
        contains = (_query(request, "filterContains") or "").lower()
        top = _int_param(request, "$top", default=None)
        refs = [
            (name, sha)
            for name, sha in self.service.backend.get_refs().items()
            if name.startswith(prefix) and contains in name.lower()
        ]
        if top is not None:
            refs = refs[:top]
        s = self.service
        creator = {"displayName": s.operator.name, "id": s.operator.object_id, "uniqueName": s.operator.name}
        values = [
            {
                "name": name,
                "objectId": sha,
                "creator": creator,
                "url": f"{self._api_base()}/refs?filter={quote(name.removeprefix('refs/'), safe='')}",
            }
            for name, sha in refs
        ]
        return _collection(values, api_version=api_version)

    async def get_items(self, request: web.Request) -> web.StreamResponse:
        """GetItem / GetItems / GetItemContent / GetItemText: one route, chosen by `path` and `Accept`."""
        api_version = negotiate_api_version(request, GIT_VERSIONS)
        self._authenticate_rest(request)
        self._check_repository(request)
        path = _query(request, "path") or request.match_info.get("path")
        scope_path = _query(request, "scopePath")
        version = _query(request, "versionDescriptor.version", "version")
        version_type = _query(request, "versionDescriptor.versionType", "versionType")
        version_options = _query(request, "versionDescriptor.versionOptions", "versionOptions")
        level_text = _query(request, "recursionLevel") or "none"
        recursion = RECURSION_LEVELS.get(level_text.lower())
        if recursion is None:
            raise InvalidArgumentValue(f"The value '{level_text}' is not valid for recursionLevel.")
        target = normalise_path(path if path is not None else scope_path)
        commit_id = self._resolve_version(version, version_type, version_options, target)
        backend = self.service.backend
        items = backend.get_items(target, commit_id, recursion)
        if not items:
            label = (version_type or "Branch").capitalize()
            raise GitItemNotFound(
                f"TF401174: The item '/{target}' could not be found in the repository "
                f"'{self.service.repository}' at the version specified by "
                f"'<{label}: {version or self.service.branch} >' (resolved to commit '{commit_id}')."
            )
        accept = request.headers.get("Accept", "application/json").split(";")[0].strip().lower()
        wanted_format = (_query(request, "$format") or "").lower()
        raw = accept in ("application/octet-stream", "text/plain") or wanted_format in ("octetstream", "text")
        if raw:
            return self._raw_item(
                request, items[0], commit_id, text=accept == "text/plain" or wanted_format == "text"
            )
        include_content = _flag(request, "includeContent")
        metadata = _flag(request, "includeContentMetadata")
        latest = _flag(request, "latestProcessedChange")

        def render(item: GitItem) -> dict[str, Any]:
            content = (
                backend.read_blob(item.path, commit_id) if include_content and not item.is_folder else None
            )
            change = next(iter(backend.get_commits(commit_id, item_path=item.path)), None) if latest else None
            return self._item(
                item,
                commit_id,
                version=version,
                version_type=version_type,
                content=content,
                metadata=metadata,
                latest_change=change,
            )

        if path is not None:  # GetItem: one item
            return _ado_json(render(items[0]), api_version=api_version)
        return _collection([render(item) for item in items], api_version=api_version)

    def _raw_item(self, request: web.Request, item: GitItem, commit_id: str, *, text: bool) -> web.Response:
        if item.is_folder:
            raise InvalidArgumentValue(
                f"The item '{item.path}' is a folder; the lab returns folder contents as JSON "
                "only (Azure DevOps would send a zip archive)."
            )
        data = self.service.backend.read_blob(item.path, commit_id) or b""
        response = web.Response(
            body=data,
            content_type="text/plain" if text else "application/octet-stream",
            charset="utf-8" if text else None,
        )
        if _flag(request, "download"):
            response.headers["Content-Disposition"] = f'attachment; filename="{item.path.rsplit("/", 1)[-1]}"'
        return response

    async def get_commits(self, request: web.Request) -> web.Response:
        api_version = negotiate_api_version(request, GIT_VERSIONS)
        self._authenticate_rest(request)
        self._check_repository(request)
        criteria = {
            key.lower().removeprefix("searchcriteria."): value
            for key, value in request.query.items()
            if key.lower().startswith("searchcriteria.")
        }
        unsupported = sorted(set(criteria) - _SUPPORTED_CRITERIA)
        if unsupported:
            raise InvalidArgumentValue(f"The lab does not support searchCriteria.{unsupported[0]}.")
        item_path = criteria.get("itempath")
        commit_id = self._resolve_version(
            criteria.get("itemversion.version"),
            criteria.get("itemversion.versiontype"),
            criteria.get("itemversion.versionoptions"),
            normalise_path(item_path),
        )
        # `searchCriteria.$top/$skip` and the top-level `$top/$skip` mean the same; the former wins.
        skip = _int_value(criteria.get("$skip"), "searchCriteria.$skip")
        if skip is None:
            skip = _int_param(request, "$skip", default=0) or 0
        top = _int_value(criteria.get("$top"), "searchCriteria.$top")
        if top is None:
            top = _int_param(request, "$top", default=_DEFAULT_COMMITS_TOP) or _DEFAULT_COMMITS_TOP
        top = min(top, _MAX_COMMITS_TOP)
        author = (criteria.get("author") or "").lower()
        since = _date_value(criteria.get("fromdate"), "searchCriteria.fromDate")
        until = _date_value(criteria.get("todate"), "searchCriteria.toDate")
        history = self.service.backend.get_commits(commit_id, item_path=item_path)
        matching = (
            c
            for c in history
            if (not author or author in c.author_name.lower() or author in c.author_email.lower())
            and (since is None or c.author_time >= since)
            and (until is None or c.author_time <= until)
        )
        if (criteria.get("showoldestcommitsfirst") or "").lower() == "true":
            selected = list(matching)[::-1][skip : skip + top]
        else:
            selected = list(islice(matching, skip, skip + top))
        return _collection([self._commit_ref(c) for c in selected], api_version=api_version)

    async def get_commit(self, request: web.Request) -> web.Response:
        api_version = negotiate_api_version(request, GIT_VERSIONS)
        self._authenticate_rest(request)
        self._check_repository(request)
        commit = self.service.backend.get_commit(request.match_info["commitId"])
        if commit is None:
            raise GitUnresolvableToCommit(
                f"TF401175:The version descriptor <Commit: {request.match_info['commitId']} > "
                f"could not be resolved to a version in the repository "
                f"{self.service.repository}"
            )
        body = self._commit_ref(commit)
        body["parents"] = list(commit.parents)
        body["treeId"] = commit.tree_id
        return _ado_json(body, api_version=api_version)

    # --- Git smart HTTP -----------------------------------------------------------------------------
    async def git(self, request: web.Request) -> web.StreamResponse:
        """`/{org}/{project}/_git/{repo}/(info/refs|git-upload-pack|git-receive-pack)`."""
        service = self.service
        tail = request.match_info["tail"]
        pushing = tail == "git-receive-pack" or request.query.get("service") == "git-receive-pack"
        try:
            self._check_org(request)
            caller = service.auth.authenticate(
                request, needed_scope="vso.code_write" if pushing else "vso.code", require_username=True
            )
        except GitContributeRefused as refused:
            # The advertisement is what a push (and a "can this credential push?" probe) asks first.
            return refused.advertisement_response() if request.method == "GET" else refused.response()
        except (Unauthorized, Forbidden, AdoError) as exc:
            return _plain(exc)
        repo = request.match_info["repo"]
        # `/{org}/_git/{repo}` is Azure DevOps' short form for a repository named like its project.
        project = request.match_info.get("project", repo)
        if not (self._is_project(project) and self._is_repository(repo)):
            return web.Response(
                status=404,
                content_type="text/plain",
                text=f"TF401019: The Git repository with name or identifier {repo} does not exist or you do "
                "not have permissions for the operation you are attempting.",
            )
        return await self._git_backend(request, caller, tail=tail, pushing=pushing)

    async def _git_backend(
        self, request: web.Request, caller: Caller, *, tail: str, pushing: bool
    ) -> web.StreamResponse:
        service = self.service
        path_info = f"/{service.repository_dir_name}/{tail}"
        if request.method == "GET" and tail == "info/refs" and "service" in request.query:
            return await service.git_http.advertise_refs(
                request, path_info=path_info, remote_user=caller.display_name
            )
        try:
            return await service.git_http.serve(request, path_info=path_info, remote_user=caller.display_name)
        finally:
            if pushing and request.method == "POST":
                service.git_http.invalidate()


def _plain(exc: Exception) -> web.Response:
    """Git shows a body verbatim; the wrapped-exception JSON is for the REST API only."""
    if isinstance(exc, AdoError):
        return web.Response(status=exc.status, text=exc.message, content_type="text/plain")
    assert isinstance(exc, (Unauthorized, Forbidden))
    return exc.response()


def _int_param(request: web.Request, name: str, *, default: int | None) -> int | None:
    return _int_value(_query(request, name), name, default=default)


def _int_value(text: str | None, name: str, *, default: int | None = None) -> int | None:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidArgumentValue(f"The value '{text}' is not valid for {name}.") from exc
    if value < 0:
        raise InvalidArgumentValue(f"The value '{text}' is not valid for {name}.")
    return value


def _date_value(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%m/%d/%Y %I:%M:%S %p")):
        try:
            moment = parse(text)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise InvalidArgumentValue(f"The value '{text}' is not valid for {name}.")
