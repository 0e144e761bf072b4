"""Flux image automation, simulated: the image-reflector and image-automation controllers of the fleet.

On Arc these controllers run in a cluster (they are off by default in `microsoft.flux`); here one
simulator stands for them. On every ImageRepository `interval` (lab clock) it lists the registry's
tags (`lab.service("acr").list_tags`), updates each ImagePolicy's latest ref, and on every
ImageUpdateAutomation `interval` it rewrites the setter-marked fields under `update.path` and
commits and pushes to the branch through the lab's real Git server, with its own credential
(`devops.automation_pat`), author and message as the automation says — exactly what Flux does, so
the app's follow-ups see a real automation commit land. Suspended objects do nothing. The objects
are read from the repository at the checkout branch's HEAD (on a cluster they come from there too,
applied by the `image-automation` kustomization).

Control: `GET /_lab/imageautomation` (each repository's last scan, each policy's latest ref, each
automation's last run and push), `POST /_lab/imageautomation/run` (one full cycle now, every object
due; returns when done).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.core.service import LabService, json_response
from lab.imageautomation.models import ImageAutomationBackend, key_of, registry_path
from lab.imageautomation.template import TemplateError
from lab.imageautomation.workspace import GitFailed, Workspace
from shared.image_policy import ImageObjects, ImageUpdateAutomation, parse_image_objects

if TYPE_CHECKING:
    from lab.server import Lab

log = logging.getLogger("lab.imageautomation")

# How often (lab seconds) the simulator looks for objects that are due. Flux requeues each object
# at its own interval; 10 s of lab time is far below any interval people write (minutes).
TICK_S = 10.0
# The HTTPS user of the automation's Basic credential (Azure DevOps accepts any non-empty name).
GIT_USER = "git"


class ImageAutomationService(LabService):
    name = "imageautomation"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.backend = ImageAutomationBackend()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._workspace: Workspace | None = None

    # --- wiring ---------------------------------------------------------------------------------------
    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_get("/_lab/imageautomation", self._control_state)
        app.router.add_post("/_lab/imageautomation/run", self._control_run)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="imageautomation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reset(self) -> None:
        self.backend.reset()
        if self._workspace is not None:
            self._workspace.discard()  # the repository was reseeded: history starts again

    def ground_truth(self) -> dict[str, Any]:
        return {"imageautomation": self.backend.document()}

    # --- the controllers ------------------------------------------------------------------------------
    def workspace(self) -> Workspace:
        if self._workspace is None:
            devops = self.lab.service("devops")
            assert self.lab.tls is not None
            root = self.lab.state_dir / "imageautomation"
            self._workspace = Workspace(
                path=root / "checkout",
                url=devops.git_url,
                ca_bundle=self.lab.tls.ca_bundle,
                home=root / "home",
            )
        return self._workspace

    async def _loop(self) -> None:
        while True:
            await self.lab.clock.sleep(TICK_S)
            if not self._cycle_wanted():
                continue
            try:
                await self.run_cycle(force=False)
            except Exception:  # the simulator must outlive any one bad cycle, like a controller
                log.exception("image automation cycle failed")

    def _cycle_wanted(self) -> bool:
        """Something is due, or the branch moved (new objects are due at once, as Flux watches them).

        Checked in-process so an idle simulator costs no Git traffic, even at a high time-scale.
        """
        if "devops" not in self.lab.services or "acr" not in self.lab.services:
            return False
        devops = self.lab.service("devops")
        try:
            head = devops.head_commit(devops.branch)
        except LookupError:
            return False
        return head != self.backend.source_revision or self.backend.next_due() <= self.lab.clock.elapsed()

    async def run_cycle(self, *, force: bool) -> dict[str, Any]:
        """One pass of both controllers over every object that is due (every object when forced)."""
        async with self._lock:
            devops = self.lab.service("devops")
            workspace = self.workspace()
            password = devops.automation_pat
            try:
                revision = await workspace.checkout(
                    branch=devops.branch, username=GIT_USER, password=password
                )
            except GitFailed as error:
                self.backend.source_error = str(error)
                return {"committed": [], "error": str(error)}
            self.backend.source_error, self.backend.source_revision = None, revision
            files = await asyncio.to_thread(workspace.read_files)
            objects = await asyncio.to_thread(parse_image_objects, files)
            self._reflect(objects, force=force)
            committed: list[str] = []
            for automation in objects.automations:
                if automation.suspend or not (
                    force or self.backend.automation_due(automation, self.lab.clock.elapsed())
                ):
                    continue
                sha = await self._automate(
                    automation, objects, files, branch=devops.branch, password=password
                )
                if sha is not None:
                    committed.append(sha)
                    files = await asyncio.to_thread(
                        workspace.read_files
                    )  # the next automation sees this commit
            self.backend.last_cycle = self.lab.clock.now()
            return {"committed": committed, "error": None}

    def _reflect(self, objects: ImageObjects, *, force: bool) -> None:
        """image-reflector-controller: scan due repositories, then re-select their policies."""
        acr = self.lab.service("acr")
        now, elapsed = self.lab.clock.now(), self.lab.clock.elapsed()
        for repository in objects.repositories:
            if repository.suspend or not (force or self.backend.repository_due(repository, elapsed)):
                continue
            path = registry_path(repository.image, acr.login_server)
            if path is None:
                error = (
                    f"registry of {repository.image} is not reachable from the lab (only {acr.login_server})"
                )
                self.backend.scan_repository(repository, None, now=now, elapsed=elapsed, error=error)
            else:
                self.backend.scan_repository(
                    repository, acr.list_tags(path), now=now, elapsed=elapsed, error=None
                )
        by_key = {key_of(repository): repository for repository in objects.repositories}
        for policy in objects.policies:
            if policy.suspend:
                continue
            source = by_key.get(f"{policy.repository_ref[0]}/{policy.repository_ref[1]}")
            path = registry_path(source.image, acr.login_server) if source is not None else None

            def digest_of(tag: str, path: str | None = path) -> str | None:
                return acr.tag_digest(path, tag) if path is not None and hasattr(acr, "tag_digest") else None

            self.backend.reconcile_policy(policy, source, digest_of)

    async def _automate(
        self,
        automation: ImageUpdateAutomation,
        objects: ImageObjects,
        files: dict[str, str],
        *,
        branch: str,
        password: str,
    ) -> str | None:
        """image-automation-controller: rewrite, commit and push; the pushed sha, or None."""
        now, elapsed = self.lab.clock.now(), self.lab.clock.elapsed()
        checkout = automation.checkout_branch or branch
        push_branch = automation.push_branch or checkout
        if checkout != branch:
            unsupported = f"the lab's automation checks out {branch} only (spec asks for {checkout})"
            self.backend.record_run(automation, objects, now=now, elapsed=elapsed, error=unsupported)
            return None
        try:
            plan = await asyncio.to_thread(self.backend.plan_automation, automation, objects, files)
        except (TemplateError, ValueError) as error:
            self.backend.record_run(automation, objects, now=now, elapsed=elapsed, error=str(error))
            return None
        if not plan.files:
            self.backend.record_run(automation, objects, now=now, elapsed=elapsed)
            return None
        if not automation.commit_author_email:
            missing = "spec.git.commit.author.email is required to commit"
            self.backend.record_run(automation, objects, now=now, elapsed=elapsed, error=missing)
            return None
        workspace = self.workspace()
        try:
            workspace.write_files(plan.files)
            sha = await workspace.commit_and_push(
                message=plan.message,
                author_name=automation.commit_author_name or "",
                author_email=automation.commit_author_email,
                push_branch=push_branch,
                force=push_branch != checkout,
                username=GIT_USER,
                password=password,
                when=now,
            )
        except GitFailed as error:
            # The local commit is discarded by the next checkout; Flux retries on its next interval.
            self.backend.record_run(automation, objects, now=now, elapsed=elapsed, error=str(error))
            return None
        log.info("automation %s pushed %s (%d fields)", key_of(automation), sha[:12], len(plan.rewrites))
        self.backend.record_run(
            automation, objects, now=now, elapsed=elapsed, pushed=sha, warning=plan.warning
        )
        return sha

    # --- control API ------------------------------------------------------------------------------------
    async def _control_state(self, _: web.Request) -> web.Response:
        return json_response(self.backend.document())

    async def _control_run(self, _: web.Request) -> web.Response:
        outcome = await self.run_cycle(force=True)
        return json_response({**outcome, **self.backend.document()})
