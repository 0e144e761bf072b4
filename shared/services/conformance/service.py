"""Conformance for the HTTP and Event Grid handlers: the report, conform, reset, and onboarding.

The declaration is read at HEAD of the watched branch on every request (one ref read; the file is read
again only when HEAD moved). An invalid file never replaces the last valid one: the service keeps using
that, and `health()` says which revision is in use and why the newer one was refused.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.errors import Conflict, FluxfleetError, InvalidInput, PermanentError, Unprocessable, safe_text
from shared.models import Panel, Selector
from shared.models.images import CommitId
from shared.ports import PanelDirectory
from shared.services.conformance.declaration import Declaration, InvalidDeclaration, parse_declaration
from shared.services.conformance.drift import STATES, UNREACHABLE, assess
from shared.services.conformance.ports import ConformanceReader
from shared.services.conformance.strategy import CONFORM_KIND, RESET_KIND
from shared.services.credentials.ports import CredentialLedger, SecretStore
from shared.services.fleet.engine import FleetChangeEngine
from shared.services.fleet.requests import ChangeRequest
from shared.services.fleet.selection import select
from shared.services.fleet.service import ChangeAnswer, FleetService
from shared.services.images.ports import RepoReader

log = logging.getLogger("fluxfleet.conformance")

DECLARATION_PATH = "kubernetes/fleet/flux.yaml"
READ_CONCURRENCY = 8


@dataclass(frozen=True)
class DeclarationStatus:
    revision: str | None
    error: str | None
    error_revision: str | None


class DeclarationStore:
    """The declaration at HEAD, with the last valid one kept per worker (a `DeclarationSource`)."""

    def __init__(
        self, *, reader: RepoReader | Callable[[], RepoReader], branch: str, path: str = DECLARATION_PATH
    ) -> None:
        # A factory is accepted so that building the engine's strategies needs no DevOps setting.
        self._reader_of: Callable[[], RepoReader] = reader if callable(reader) else (lambda: reader)
        self._branch = branch
        self._path = path
        self._lock = threading.Lock()
        self._by_revision: dict[str, Declaration] = {}
        self._last_valid: Declaration | None = None
        self._error: tuple[str, str] | None = None  # (revision, message)

    def current(self) -> Declaration:
        head = str(self._reader_of().head_commit(branch=self._branch))
        try:
            declaration = self.at(head)
        except InvalidDeclaration as exc:
            with self._lock:
                self._error = (head, exc.message)
                last = self._last_valid
            if last is None:
                raise
            log.warning(
                "declaration at %s is invalid (%s); using %s", head[:10], exc.message, last.revision[:10]
            )
            return last
        with self._lock:
            self._error = None  # HEAD is valid: whatever was refused before is superseded
            self._last_valid = declaration
        return declaration

    def at(self, revision: str) -> Declaration:
        with self._lock:
            found = self._by_revision.get(revision)
        if found is not None:
            return found
        text = self._reader_of().read_file(path=self._path, commit=CommitId(revision))
        declaration = parse_declaration(text, revision=revision, path=self._path)
        with self._lock:
            self._by_revision[revision] = declaration
        return declaration

    def status(self) -> DeclarationStatus:
        with self._lock:
            last = self._last_valid
            error = self._error
        return DeclarationStatus(
            revision=last.revision if last else None,
            error=error[1] if error else None,
            error_revision=error[0] if error else None,
        )


class KeyVaultHttpsKeys:
    """`HttpsKeySource`: the newest enabled version whose preflight passed, read from Key Vault now."""

    def __init__(
        self,
        *,
        secrets: SecretStore,
        ledger: CredentialLedger,
        stores: Mapping[str, SecretStore] | None = None,
    ) -> None:
        self._secrets = secrets
        self._ledger = ledger
        self._stores = dict(stores or {})

    def https_key(self, *, secret: str | None) -> str:
        store = self._secrets if secret is None else self._stores.get(secret)
        if store is None:
            raise PermanentError(
                f"no Key Vault secret {secret!r} is configured for the declaration's credential"
            )
        for version in store.list_versions().versions:
            if not version.enabled:
                continue
            report = self._ledger.preflight(store.secret_name, version.version)
            if report is not None and report.passed:
                value = store.read_value(version.version)
                return base64.b64encode(value.encode("utf-8")).decode("ascii")
        raise PermanentError(
            f"no version of {store.secret_name} passed preflight: run POST /api/credentials/check first"
        )


class ConformanceService:
    def __init__(
        self,
        *,
        reader: ConformanceReader,
        directory: PanelDirectory,
        declarations: DeclarationStore,
        engine: FleetChangeEngine,
        fleet: FleetService,
        configuration: str,
        git_url: str,
    ) -> None:
        self._reader = reader
        self._directory = directory
        self._declarations = declarations
        self._engine = engine
        self._fleet = fleet
        self._configuration = configuration
        self._git_url = git_url

    # --- GET /api/fleet/conformance -----------------------------------------------------------
    def report(self, *, selector: Selector | None = None) -> dict[str, Any]:
        declaration = self._declarations.current()
        panels = self._directory.panels()
        if selector is not None and not selector.empty:
            panels = select(panels, selector)
        targeted = [p for p in panels if declaration.targets(p)]
        with ThreadPoolExecutor(max_workers=READ_CONCURRENCY, thread_name_prefix="conformance") as pool:
            rows = list(pool.map(lambda p: self._panel(declaration, p), targeted))
        counts = dict.fromkeys(STATES, 0)
        for row in rows:
            counts[row["state"]] += 1
        status = self._declarations.status()
        return {
            "declaration": {
                "path": declaration.path,
                "revision": declaration.revision,
                "error": status.error,
            },
            "total": len(rows),
            "notTargeted": len(panels) - len(targeted),
            "counts": counts,
            "panels": rows,
        }

    def _panel(self, declaration: Declaration, panel: Panel) -> dict[str, Any]:
        desired = declaration.desired_for(panel, default_url=self._git_url)
        row: dict[str, Any] = {"name": panel.name, "id": panel.id}
        try:
            extension = self._reader.get_extension(panel=panel, name=desired.extension.name)
            resource = self._reader.get_flux_resource(panel=panel, configuration=desired.configuration.name)
        except FluxfleetError as exc:
            row.update(state=UNREACHABLE, differences=[], detail=safe_text(exc.message, limit=300))
            return row
        verdict = assess(desired, extension=extension, configuration=resource, offline=panel.offline)
        row["state"] = verdict.state
        row["differences"] = [d.to_json() for d in verdict.differences]
        if verdict.upgrade_path:
            row["upgradePath"] = list(verdict.upgrade_path)
        if verdict.needs_reset:
            row["needsReset"] = list(verdict.needs_reset)
        if desired.overrides:
            row["overrides"] = list(desired.overrides)
        if panel.offline:
            row["detail"] = f"panel {panel.connectivity}"
        return row

    # --- POST /api/fleet/conform and /api/fleet/reset --------------------------------------------
    def conform(
        self, *, request: ChangeRequest, requested_by: str, idempotency_key: str | None
    ) -> ChangeAnswer:
        declaration = self._declarations.current()
        panels = self._targeted(declaration, request.target)
        if request.dry_run:
            rows = [self._panel(declaration, p) for p in panels]
            for row in rows:
                row["wouldChange"] = row["state"] not in ("conformant", UNREACHABLE) or bool(
                    row["differences"]
                )
            return ChangeAnswer(
                status=200,
                document={
                    "dryRun": True,
                    "kind": CONFORM_KIND,
                    "revision": declaration.revision,
                    "clusters": rows,
                },
                operation_id=None,
            )
        return self._start(CONFORM_KIND, declaration, panels, request, requested_by, idempotency_key)

    def reset(
        self, *, request: ChangeRequest, confirm: bool, requested_by: str, idempotency_key: str | None
    ) -> ChangeAnswer:
        if not confirm and not request.dry_run:
            raise InvalidInput(
                "confirm", "must be true: a reset deletes and recreates the Flux configuration"
            )
        if request.target.all and not confirm:
            raise InvalidInput("confirm", "resetting the whole fleet needs confirm: true")
        declaration = self._declarations.current()
        panels = self._targeted(declaration, request.target)
        if request.dry_run:
            return ChangeAnswer(
                status=200,
                document={
                    "dryRun": True,
                    "kind": RESET_KIND,
                    "revision": declaration.revision,
                    "clusters": [{"name": p.name, "id": p.id, "wouldChange": True} for p in panels],
                },
                operation_id=None,
            )
        return self._start(RESET_KIND, declaration, panels, request, requested_by, idempotency_key)

    def onboard(self, *, cluster_id: str, event_id: str) -> str | None:
        """A new connected cluster (Event Grid): conform it when the declaration targets it."""
        declaration = self._declarations.current()
        panel = next((p for p in self._directory.panels() if p.id.lower() == cluster_id.lower()), None)
        if panel is None or not declaration.targets(panel):
            log.info("cluster %s is not targeted by the declaration; not onboarded", cluster_id)
            return None
        result = self._engine.start(
            kind=CONFORM_KIND,
            params=self._params(declaration),
            reason=f"onboarding: {panel.name} connected to Arc (event {event_id})",
            requested_by="event:Microsoft.Resources.ResourceWriteSuccess",
            panels=[panel],
            configuration=declaration.configuration.name,
            idempotency_key=f"onboard:{event_id}",
        )
        return result.operation_id

    def sweep(self) -> str | None:
        """The timer's catch-up for missed events: conform every governed, online, not-onboarded panel.

        Idempotent per declaration revision and set of panels, so an hourly sweep that finds the same
        panels (say, one that keeps failing) does not start a new operation for them every hour."""
        declaration = self._declarations.current()
        panels = [p for p in self._directory.panels() if declaration.targets(p) and not p.offline]
        with ThreadPoolExecutor(max_workers=READ_CONCURRENCY, thread_name_prefix="conformance") as pool:
            rows = list(pool.map(lambda p: (p, self._panel(declaration, p)), panels))
        missing = [p for p, row in rows if row["state"] == "not-onboarded"]
        if not missing:
            return None
        digest = hashlib.sha256("\n".join(sorted(p.key for p in missing)).encode()).hexdigest()[:16]
        try:
            result = self._engine.start(
                kind=CONFORM_KIND,
                params=self._params(declaration),
                reason=f"sweep: {len(missing)} governed panels not onboarded",
                requested_by="timer:conformance-sweep",
                panels=missing,
                configuration=declaration.configuration.name,
                idempotency_key=f"sweep:{declaration.revision[:12]}:{digest}",
            )
        except Conflict as exc:
            log.info("conformance sweep deferred: %s", exc.message)
            return None
        return result.operation_id

    def _targeted(self, declaration: Declaration, target: Selector) -> list[Panel]:
        panels = [p for p in select(self._directory.panels(), target) if declaration.targets(p)]
        if not panels:
            raise Unprocessable("target", "selects no panel the declaration targets")
        return panels

    def _params(self, declaration: Declaration) -> dict[str, str]:
        return {"revision": declaration.revision, "gitUrl": self._git_url}

    def _start(  # noqa: PLR0917 - a private helper of conform and reset
        self,
        kind: str,
        declaration: Declaration,
        panels: Sequence[Panel],
        request: ChangeRequest,
        requested_by: str,
        idempotency_key: str | None,
    ) -> ChangeAnswer:
        result = self._engine.start(
            kind=kind,
            params=self._params(declaration),
            reason=request.reason,
            requested_by=requested_by,
            panels=panels,
            configuration=declaration.configuration.name,
            idempotency_key=idempotency_key,
        )
        return self._fleet.answer(result, wait_seconds=request.wait_seconds)

    def probe_declaration(self) -> str:
        """Deep health: raises when HEAD's declaration is invalid (naming the field and the revision in
        use instead), so health reports `degraded` with the reason; else the revision in use."""
        declaration = self._declarations.current()
        status = self._declarations.status()
        if status.error is not None:
            raise PermanentError(
                f"the declaration at {str(status.error_revision)[:10]} is invalid ({status.error}); "
                f"using the last valid one, at {declaration.revision[:10]}"
            )
        return declaration.revision

    def health(self) -> dict[str, Any]:
        status = self._declarations.status()
        return {
            "declarationRevision": status.revision,
            "declarationError": status.error,
            "declarationErrorRevision": status.error_revision,
            "usingLastValid": status.error is not None and status.revision is not None,
        }
