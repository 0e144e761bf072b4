"""Flux image automation, simulated: the image controllers of the automation runner cluster(s).

On Arc the image controllers are off by default in `microsoft.flux`; in this fleet exactly one
cluster — the one tagged `fluxfleet-role: image-automation`, `ipc-automation-hub` — runs them
(`runners`). For every such cluster, while its controllers run there (online, extension enabling
them, an applied `image-automation` kustomization whose objects the extension's CRDs serve), the
simulator does what image-reflector-controller and image-automation-controller do on it: on each
ImageRepository `interval` (lab clock) it lists the registry's tags (`lab.service("acr")`), updates
each ImagePolicy's latest ref (digest reflection and `suspend` as IRC v1.0.4 has them), and when an
ImageUpdateAutomation is due it rewrites the setter-marked fields under `update.path`, commits and
pushes to the branch through the lab's real Git server with the credential that cluster's agent
holds — so a revoked or read-only PAT fails the push for real, in Flux's words. Several runners run
separately and race on the branch, as real clusters would; with none, nothing runs.

Control: `GET /_lab/imageautomation` (runners, each cluster's objects' status, every push with the
cluster that made it), `POST /_lab/imageautomation/run` (one cycle now on every running runner,
every object due; returns when done), `POST /_lab/imageautomation/pause` and `/resume` (stop and
restart the background loop, so a test that pushes an image and then forces a cycle is never raced
by a background one; `reset` resumes it).

Cycles never overlap: a forced run waits for a background cycle in flight, and `pause` answers only
once no background cycle is in flight, so after it nothing but the caller's forced runs touch the
runners' objects or checkouts. The loop counts its wake-ups (`loop.wakes` in the state), so a test
can wait for "the loop has looked at least once since X" on an observable instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.core.clock import iso
from lab.core.service import LabService, json_response
from lab.imageautomation.models import (
    GIT_OPERATION_FAILED,
    ImageAutomationBackend,
    key_of,
    registry_path,
)
from lab.imageautomation.runners import RunnerObserver, RunnerView, is_runner
from lab.imageautomation.template import TemplateError
from lab.imageautomation.workspace import GitFailed, Workspace
from shared.image_policy import (
    ImageUpdateAutomation,
    LatestRef,
    effective_reflection_policy,
    supports_policy_suspend,
)

if TYPE_CHECKING:
    from lab.server import Lab

log = logging.getLogger("lab.imageautomation")

# How often (lab seconds) the simulator looks for objects that are due. Flux requeues each object
# at its own interval; 10 s of lab time is far below any interval people write (minutes).
TICK_S = 10.0
# Pushes kept in the ground truth: far more than a test or the demo makes, bounded for long runs.
PUSH_HISTORY = 1000
# Not Flux's wording: the lab's own limits, reported as the Ready reason so nobody mistakes them.
LAB_UNSUPPORTED = "LabUnsupported"


@dataclass
class RunnerControllers:
    """The image controllers of one runner cluster: their objects' status and their Git checkout."""

    backend: ImageAutomationBackend
    workspace: Workspace
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class RunnerOutcome:
    cluster: str
    committed: tuple[str, ...] = ()
    error: str | None = None


class ImageAutomationService(LabService):
    name = "imageautomation"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.controllers: dict[str, RunnerControllers] = {}
        self.pushes: list[dict[str, Any]] = []
        self.paused = False
        self.last_cycle: str | None = None
        # One cycle at a time (background or forced): two would share the runners' checkouts.
        self._cycle_lock = asyncio.Lock()
        # Loop wake-ups and the background cycles they ran, for tests to synchronise on (never reset:
        # a test compares before/after values, and a reset between them must not move them back).
        self.loop_wakes = 0
        self.loop_cycles = 0
        # Bumped by every reset: a cycle that was in flight across a reset records nothing afterwards.
        self._epoch = 0
        # Checkouts of the runners before the last reset, removed by the next cycle: a cycle in flight
        # across the reset may still run git in them, and cycles never overlap.
        self._stale: list[Workspace] = []
        self._observer: RunnerObserver | None = None
        self._task: asyncio.Task[None] | None = None

    # --- wiring ---------------------------------------------------------------------------------------
    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_get("/_lab/imageautomation", self._control_state)
        app.router.add_post("/_lab/imageautomation/run", self._control_run)
        app.router.add_post("/_lab/imageautomation/pause", self._control_pause)
        app.router.add_post("/_lab/imageautomation/resume", self._control_resume)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="imageautomation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reset(self) -> None:
        # The repository was reseeded: history starts again, from a fresh clone.
        self._stale.extend(controllers.workspace for controllers in self.controllers.values())
        self.controllers.clear()
        self.pushes.clear()
        self._epoch += 1
        self.paused = False
        self.last_cycle = None
        if self._observer is not None:
            self._observer.reset()

    def ground_truth(self) -> dict[str, Any]:
        return {"imageautomation": self.document()}

    # --- the runners ----------------------------------------------------------------------------------
    def observer(self) -> RunnerObserver:
        if self._observer is None:
            devops: Any = self.lab.services.get("devops")
            self._observer = RunnerObserver(devops.backend if devops is not None else None)
        return self._observer

    def runners(self) -> list[RunnerView]:
        """Every cluster tagged as a runner, as its controllers see it now (several race; none: idle)."""
        arm: Any = self.lab.services.get("arm")
        if arm is None:
            return []
        arm.backend.settle()  # operations whose time has come are done, as for any ARM read
        now = self.lab.clock.now()
        return [self.observer().observe(panel, now) for panel in arm.fleet.panels if is_runner(panel)]

    def _controllers_for(self, view: RunnerView) -> RunnerControllers:
        url = view.git_url or ""
        controllers = self.controllers.get(view.name)
        if controllers is not None and controllers.workspace.url == url:
            return controllers
        if controllers is not None:
            controllers.workspace.discard()  # the configuration points elsewhere now: a new clone
        assert self.lab.tls is not None
        root = self.lab.state_dir / "imageautomation"
        workspace = Workspace(
            path=root / view.name / "checkout", url=url, ca_bundle=self.lab.tls.ca_bundle, home=root / "home"
        )
        backend = controllers.backend if controllers is not None else ImageAutomationBackend(view.name)
        self.controllers[view.name] = RunnerControllers(backend=backend, workspace=workspace)
        return self.controllers[view.name]

    # --- the background loop ---------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await self.lab.clock.sleep(TICK_S)
            try:
                await self._wake()
            except Exception:  # the simulator must outlive any one bad cycle, like a controller
                log.exception("image automation cycle failed")

    async def _wake(self) -> None:
        """One wake-up of the loop: a cycle when not paused and something is wanted, then count it."""
        try:
            async with self._cycle_lock:
                # Checked under the lock: a pause that arrived while this wake-up waited wins.
                if not self.paused and self._cycle_wanted():
                    await self._run_cycle_locked(force=False)
                    self.loop_cycles += 1
        finally:
            self.loop_wakes += 1

    def _cycle_wanted(self) -> bool:
        """A runner's objects changed (Flux watches them) or something of theirs is due.

        Checked in-process so an idle simulator costs no Git traffic, even at a high time-scale.
        """
        if "acr" not in self.lab.services:
            return False
        elapsed = self.lab.clock.elapsed()
        for view in self.runners():
            if not view.running:
                continue
            controllers = self.controllers.get(view.name)
            if controllers is None:
                return True
            backend = controllers.backend
            if backend.objects_fingerprint != view.objects_fingerprint or backend.next_due() <= elapsed:
                return True
        return False

    # --- one cycle ------------------------------------------------------------------------------------
    async def run_cycle(self, *, force: bool) -> dict[str, Any]:
        """One pass of the controllers of every running runner (every object due when forced).

        Waits for a cycle in flight to finish first, so a forced run never overlaps a background one.
        """
        async with self._cycle_lock:
            return await self._run_cycle_locked(force=force)

    async def _run_cycle_locked(self, *, force: bool) -> dict[str, Any]:
        while self._stale:
            self._stale.pop().discard()
        views = [view for view in self.runners() if view.running]
        outcomes = await asyncio.gather(*(self._run_runner(view, force=force) for view in views))
        self.last_cycle = iso(self.lab.clock.now())
        errors = {outcome.cluster: outcome.error for outcome in outcomes if outcome.error}
        return {
            "committed": [sha for outcome in outcomes for sha in outcome.committed],
            "error": next(iter(errors.values()), None),
            "errors": errors,
        }

    async def _run_runner(self, view: RunnerView, *, force: bool) -> RunnerOutcome:
        controllers = self._controllers_for(view)
        async with controllers.lock:
            backend = controllers.backend
            backend.forget_missing(view.objects)
            backend.objects_fingerprint = view.objects_fingerprint
            changed_namespaces = self._reflect(backend, view, force=force) if view.reflector else set()
            outcome = RunnerOutcome(view.name)
            if view.automation:
                elapsed = self.lab.clock.elapsed()
                # `spec.interval` is required by the CRD: an automation without one was never applied.
                due = [
                    automation
                    for automation in view.objects.automations
                    if not automation.suspend
                    and automation.interval_seconds
                    and (
                        force
                        or backend.automation_due(automation, elapsed, policy_changed_in=changed_namespaces)
                    )
                ]
                if due:
                    outcome = await self._automate(controllers, view, due)
            backend.last_cycle = self.lab.clock.now()
            return outcome

    def _reflect(self, backend: ImageAutomationBackend, view: RunnerView, *, force: bool) -> set[str]:
        """image-reflector-controller: scan due repositories, reconcile due policies.

        Returns the namespaces in which a policy's `latestRef` changed (their automations run now).
        """
        acr = self.lab.service("acr")
        now, elapsed = self.lab.clock.now(), self.lab.clock.elapsed()
        version = view.extension_version or ""
        honours_suspend = supports_policy_suspend(version)
        objects = view.objects
        for repository in objects.repositories:
            if repository.suspend or not (force or backend.repository_due(repository, elapsed)):
                continue
            path = registry_path(repository.image, acr.login_server)
            if path is None:
                error = (
                    f"registry of {repository.image} is not reachable from the lab (only {acr.login_server})"
                )
                backend.scan_repository(repository, None, now=now, elapsed=elapsed, error=error)
            else:
                backend.scan_repository(repository, acr.list_tags(path), now=now, elapsed=elapsed, error=None)
        by_key = {key_of(repository): repository for repository in objects.repositories}
        changed: set[str] = set()
        for policy in objects.policies:
            source = by_key.get(f"{policy.repository_ref[0]}/{policy.repository_ref[1]}")
            suspended = honours_suspend and policy.suspend
            backend.mark_suspended(policy, suspended=suspended)
            if suspended or not (force or backend.policy_due(policy, source, elapsed)):
                continue
            image_path = registry_path(source.image, acr.login_server) if source is not None else None

            def lookup(ref: LatestRef, image_path: str | None = image_path) -> str:
                digest = acr.tag_digest(image_path, ref.tag) if image_path is not None else None
                if digest is None:
                    # go-containerregistry's `remote.Head` error for a tag the registry does not have.
                    raise LookupError(
                        f'failed fetching descriptor for "{ref.name}:{ref.tag}": unexpected status code '
                        "404 Not Found (HEAD responses have no body, use GET for details)"
                    )
                return str(digest)

            reflection = effective_reflection_policy(policy, version)
            if backend.reconcile_policy(
                policy, source, lookup, now=now, elapsed=elapsed, reflection_policy=reflection
            ):
                changed.add(policy.namespace)
        return changed

    async def _automate(
        self, controllers: RunnerControllers, view: RunnerView, due: list[ImageUpdateAutomation]
    ) -> RunnerOutcome:
        """image-automation-controller: check out, rewrite, commit and push, with the runner's credential."""
        backend, workspace = controllers.backend, controllers.workspace
        now, elapsed = self.lab.clock.now(), self.lab.clock.elapsed()
        username, password = view.username or "", view.password or ""
        branch = view.branch or "main"
        url = view.git_url or ""
        for automation in due:
            backend.start_run(automation, now=now)
        try:
            revision = await workspace.checkout(branch=branch, username=username, password=password)
        except GitFailed as failed:
            backend.source_error = str(failed)
            for automation in due:
                status = backend.automations[key_of(automation)]
                unchanged = status.observed_policies == {
                    name: {"name": ref.name, "tag": ref.tag, "digest": ref.digest}
                    for (_, name), ref in sorted(backend.latest_refs(automation, view.objects).items())
                }
                # fluxcd/pkg git/gogit clone.go: with a last observed commit and nothing else to do,
                # IAC first lists the remote ("unable to list remote for"), else it clones.
                listed = status.observed_source_revision is not None and unchanged
                verb = "unable to list remote for" if listed else "unable to clone"
                message = f"failed to checkout source: {verb} '{url}': {failed}"
                backend.record_run(automation, view.objects, now=now, elapsed=elapsed, error=message)
            return RunnerOutcome(view.name, (), f"failed to checkout source: {failed}")
        backend.source_error, backend.source_revision = None, revision
        files = await asyncio.to_thread(workspace.read_files)
        committed: list[str] = []
        first_error: str | None = None
        for automation in due:
            sha, error = await self._automate_one(
                controllers, view, automation, files, revision=revision, branch=branch
            )
            if sha is not None:
                committed.append(sha)
                revision = sha
                files = await asyncio.to_thread(workspace.read_files)  # the next automation sees it
            first_error = first_error or error
        return RunnerOutcome(view.name, tuple(committed), first_error)

    async def _automate_one(
        self,
        controllers: RunnerControllers,
        view: RunnerView,
        automation: ImageUpdateAutomation,
        files: dict[str, str],
        *,
        revision: str,
        branch: str,
    ) -> tuple[str | None, str | None]:
        """One ImageUpdateAutomation run on a fresh checkout: (pushed sha, error)."""
        backend, workspace = controllers.backend, controllers.workspace
        now, elapsed = self.lab.clock.now(), self.lab.clock.elapsed()
        epoch = self._epoch
        objects = view.objects
        checkout = automation.checkout_branch or branch
        push_branch = automation.push_branch or checkout
        if checkout != branch:
            unsupported = f"the lab's automation checks out {branch} only (spec asks for {checkout})"
            backend.record_run(
                automation, objects, now=now, elapsed=elapsed, error=unsupported, reason=LAB_UNSUPPORTED
            )
            return None, unsupported
        try:
            plan = await asyncio.to_thread(backend.plan_automation, automation, objects, files)
        except (TemplateError, ValueError) as error:
            removed = "RemovedTemplateField" in str(error)
            reason = "RemovedTemplateField" if removed else GIT_OPERATION_FAILED
            message = str(error) if removed else f"failed to update source: {error}"
            backend.record_run(
                automation, objects, now=now, elapsed=elapsed, error=message, reason=reason, stalled=removed
            )
            return None, message
        if not plan.files:
            backend.record_run(automation, objects, now=now, elapsed=elapsed, source_revision=revision)
            return None, None
        if not automation.commit_author_email:
            missing = "spec.git.commit.author.email is required to commit"
            backend.record_run(
                automation, objects, now=now, elapsed=elapsed, error=missing, reason=LAB_UNSUPPORTED
            )
            return None, missing
        if epoch != self._epoch:
            return None, None  # the lab was reset while this run planned: its history is gone
        username, password = view.username or "", view.password or ""
        workspace.write_files(plan.files)
        try:
            sha = await workspace.commit(
                message=plan.message,
                author_name=automation.commit_author_name or "",
                author_email=automation.commit_author_email,
                username=username,
                password=password,
                when=now,
            )
        except GitFailed as error:
            await workspace.reset_to(revision)
            message = f"failed to update source: {error}"
            backend.record_run(automation, objects, now=now, elapsed=elapsed, error=message)
            return None, message
        if epoch != self._epoch:
            return None, None  # reset while committing: never push into the reseeded repository
        try:
            await workspace.push(
                push_branch=push_branch, force=push_branch != checkout, username=username, password=password
            )
        except GitFailed as error:
            # IAC (imageupdateautomation_controller.go L494-507) over fluxcd/pkg gogit `Push` ("failed
            # to push to remote: %w"); the local commit is dropped, Flux retries with backoff.
            await workspace.reset_to(revision)
            message = f"failed to update source: failed to push to remote: {error}"
            backend.record_run(automation, objects, now=now, elapsed=elapsed, error=message)
            log.info("automation %s on %s: push refused", key_of(automation), view.name)
            return None, message
        log.info(
            "automation %s on %s pushed %s (%d fields)",
            key_of(automation),
            view.name,
            sha[:12],
            len(plan.rewrites),
        )
        backend.record_run(automation, objects, now=now, elapsed=elapsed, pushed=sha, warning=plan.warning)
        if epoch != self._epoch:
            return sha, None  # the lab was reset meanwhile: this push belongs to a history that is gone
        self.pushes.append(
            {
                "commit": sha,
                "committedBy": view.name,
                "clusterId": view.cluster_id,
                "automation": key_of(automation),
                "branch": push_branch,
                "time": iso(now),
                "httpsUser": view.username,
                "credentialFingerprint": view.credential_fingerprint,
            }
        )
        del self.pushes[:-PUSH_HISTORY]
        return sha, None

    # --- state and control API -------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        return {
            "lastRun": self.last_cycle,
            "paused": self.paused,
            "loop": {"wakes": self.loop_wakes, "cycles": self.loop_cycles},
            "runners": [view.document() for view in self.runners()],
            "clusters": {name: c.backend.document() for name, c in sorted(self.controllers.items())},
            "pushes": list(self.pushes),
        }

    async def _control_state(self, _: web.Request) -> web.Response:
        return json_response(self.document())

    async def _control_run(self, _: web.Request) -> web.Response:
        outcome = await self.run_cycle(force=True)
        return json_response({**outcome, **self.document()})

    async def _control_pause(self, _: web.Request) -> web.Response:
        """Stop the loop, and answer only once a background cycle in flight (if any) has finished."""
        self.paused = True
        async with self._cycle_lock:
            pass
        return json_response({"paused": True})

    async def _control_resume(self, _: web.Request) -> web.Response:
        self.paused = False
        return json_response({"paused": False})
