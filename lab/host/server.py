"""`python -m lab host`: serve the app's functions at the addresses the Functions host uses.

One process, one asyncio loop (async functions run on it, sync ones in the worker-style thread pool),
one plain-HTTP listener on 127.0.0.1 like `func start`. Startup: read lab.json, set app settings, import
and index the app, start the listener, queue pollers and timers, create the declared Event Grid
subscriptions, then write `DIR/host-state.json` (and `DIR/host-state.<instance>.json`, which
`tests/e2e/hostkit.py` waits for, so several hosts can share one lab). SIGTERM/SIGINT: stop polling and
scheduling, finish in-flight invocations (bounded), delete the subscriptions, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from lab.host import triggers
from lab.host.errors import HostStartupError
from lab.host.eventgrid import WEBHOOK_PATH, SubscriptionManager, handle_webhook, load_declarations
from lab.host.hostconfig import HostConfig, load_host_config
from lab.host.indexing import IndexedFunction, load_functions
from lab.host.invocation import Invoker
from lab.host.keys import HostKeys, load_or_create_keys
from lab.host.queues import (
    QueueClients,
    QueueListener,
    QueueOutputSink,
    QueueTarget,
    queue_name_of,
    resolve_connection,
)
from lab.host.routing import RouteTemplate, RouteTemplateError, compile_route, precedence_key
from lab.host.settings import AppSettings, compose_app_settings, read_local_settings
from lab.host.timers import ScheduleMonitorStore, TimerListener, build_timer_listener

log = logging.getLogger("lab.host")

STATE_FILE = "host-state.json"
# How long a graceful shutdown waits for in-flight invocations before giving up on them.
SHUTDOWN_GRACE_S = 30.0
# After the grace period: time for queue messages to be completed or released.
COMPLETION_GRACE_S = 10.0
# Azure's HTTP trigger request limit (100 MB).
MAX_REQUEST_BYTES = 100 * 1024 * 1024
HOST_VERSION = "4.x (fluxfleet lab host)"
FUNCTION_KEY_HEADER = "x-functions-key"
DEFAULT_SUBSCRIPTIONS = Path("infra") / "event-subscriptions.json"
MAX_HOST_ID_PREFIX = 23  # Azure host ids are at most 32 characters: prefix, dash, 8 hex digits
SECONDS_TO_MS = 1000


@dataclass(frozen=True)
class HostOptions:
    lab_dir: Path
    port: int
    instance: str
    app_dir: Path
    app_module: str
    subscriptions: Path


@dataclass(frozen=True)
class HttpRoute:
    function: IndexedFunction
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str


def host_id_for(app_dir: Path, module: str) -> str:
    readable = re.sub(r"[^a-z0-9-]", "-", f"{app_dir.name}-{module}".lower())[:MAX_HOST_ID_PREFIX].strip("-")
    digest = hashlib.sha1(f"{app_dir}:{module}".encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{readable}-{digest}"


def thread_pool_size(settings: AppSettings) -> int | None:
    """PYTHON_THREADPOOL_THREAD_COUNT, or None (the executor's default) when unset or invalid."""
    raw = settings.get("PYTHON_THREADPOOL_THREAD_COUNT")
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        log.warning("PYTHON_THREADPOOL_THREAD_COUNT must be an integer; using the default")
        return None
    if value < 1:
        log.warning("PYTHON_THREADPOOL_THREAD_COUNT must be at least 1; using the default")
        return None
    return value


def presented_key(request: web.Request) -> str | None:
    return request.headers.get(FUNCTION_KEY_HEADER) or request.query.get("code")


def _write_json_atomically(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(doc, handle, indent=2)
    tmp.replace(path)


class FunctionsHost:
    """The running host: HTTP listener, trigger listeners, invoker, and the admin API over one app."""

    def __init__(
        self,
        *,
        options: HostOptions,
        lab_doc: Mapping[str, Any],
        settings: AppSettings,
        config: HostConfig,
        functions: list[IndexedFunction],
        keys: HostKeys,
    ) -> None:
        self.options = options
        self.lab_doc = lab_doc
        self.settings = settings
        self.config = config
        self.keys = keys
        self.functions = {function.name.lower(): function for function in functions}
        self.host_id = host_id_for(options.app_dir, options.app_module)
        self.url = ""
        self.errors: dict[str, str] = {}
        self.disabled = {
            function.name
            for function in functions
            if (settings.get(f"AzureWebJobs.{function.name}.Disabled") or "").lower() in ("true", "1")
        }
        self._started_at = time.monotonic()
        self._draining = False
        self._executor = ThreadPoolExecutor(
            max_workers=thread_pool_size(settings), thread_name_prefix="func-sync"
        )
        self._clients = QueueClients()
        self._sink = QueueOutputSink(clients=self._clients, settings=settings.values, options=config.queues)
        self.invoker = Invoker(
            executor=self._executor, sink=self._sink, function_directory=str(options.app_dir)
        )
        self._routes: list[HttpRoute] = []
        self._queue_listeners: list[QueueListener] = []
        self._timer_listeners: list[TimerListener] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._subscriptions: SubscriptionManager | None = None

    # --- startup ------------------------------------------------------------------------------------
    def _active(self, function: IndexedFunction) -> bool:
        return (
            function.unsupported is None
            and function.name not in self.errors
            and function.name not in self.disabled
        )

    def _prepare(self) -> None:
        """Resolve every binding now; a function that cannot be bound is in error, the others still run."""
        monitor = ScheduleMonitorStore(self.options.lab_dir)
        for function in self.functions.values():
            if function.unsupported:
                log.warning("function %s will not be triggered: %s", function.name, function.unsupported)
                continue
            try:
                self._sink.prepare(function)
                if function.trigger_type == "httpTrigger":
                    self._routes.append(self._http_route(function))
                elif function.trigger_type == "timerTrigger":
                    self._timer_listeners.append(
                        build_timer_listener(
                            function,
                            settings=self.settings.values,
                            lab_dir=self.options.lab_dir,
                            host_id=self.host_id,
                            monitor=monitor,
                            invoker=self.invoker,
                        )
                    )
                elif function.trigger_type == "queueTrigger":
                    self._queue_listeners.append(self._queue_listener(function))
            except (HostStartupError, RouteTemplateError) as exc:
                self.errors[function.name] = str(exc)
                log.error("function %s is in error and will not run: %s", function.name, exc)
        self._routes.sort(key=lambda route: precedence_key(route.template))

    def _http_route(self, function: IndexedFunction) -> HttpRoute:
        trigger = function.trigger
        methods = trigger.get("methods")
        auth = str(trigger.get("authLevel") or "function").lower()
        if auth not in ("anonymous", "function", "admin"):
            raise HostStartupError(f"{function.name}: unknown authLevel {auth!r}")
        return HttpRoute(
            function=function,
            template=compile_route(
                str(trigger.get("route") or function.name), prefix=self.config.route_prefix
            ),
            methods=frozenset(str(method).upper() for method in methods) if methods else None,
            auth_level=auth,
        )

    def _queue_listener(self, function: IndexedFunction) -> QueueListener:
        trigger = function.trigger
        target = QueueTarget(
            connection_string=resolve_connection(trigger.get("connection"), self.settings.values),
            queue=queue_name_of(trigger, self.settings.values, function=function.name),
        )
        return QueueListener(
            function=function,
            target=target,
            clients=self._clients,
            options=self.config.queues,
            invoker=self.invoker,
        )

    async def start(self) -> None:
        self._prepare()
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.options.port)
        try:
            await site.start()
        except OSError as exc:
            raise HostStartupError(f"cannot listen on 127.0.0.1:{self.options.port}: {exc.strerror}") from exc
        server = site._server
        assert server is not None
        sockets: list[socket.socket] = list(server.sockets)  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        for listener in self._queue_listeners:
            if self._active(listener.function):
                self._sink.watch(listener.target.queue, listener.wake)
                listener.start()
        for timer in self._timer_listeners:
            if self._active(timer.function):
                timer.start()
        self._subscriptions = SubscriptionManager(
            lab_doc=self.lab_doc, host_url=self.url, eventgrid_key=self.keys.eventgrid_extension
        )
        active = {name: function for name, function in self.functions.items() if self._active(function)}
        await self._subscriptions.create(load_declarations(self.options.subscriptions), active)
        self._write_state()
        self._log_functions()

    def _state(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "function_key": self.keys.function_default,
            "master_key": self.keys.master,
            "eventgrid_key": self.keys.eventgrid_extension,
            "instance": self.options.instance,
            "pid": os.getpid(),
            "host_id": self.host_id,
        }

    def _state_paths(self) -> tuple[Path, Path]:
        return (
            self.options.lab_dir / STATE_FILE,
            self.options.lab_dir / f"host-state.{self.options.instance}.json",
        )

    def _write_state(self) -> None:
        for path in reversed(self._state_paths()):  # the per-instance file first: hostkit waits for it
            _write_json_atomically(path, self._state())

    def _remove_state(self) -> None:
        shared, own = self._state_paths()
        with contextlib.suppress(FileNotFoundError):
            own.unlink()
        with contextlib.suppress(FileNotFoundError, ValueError):
            if json.loads(shared.read_text()).get("pid") == os.getpid():
                shared.unlink()

    def _log_functions(self) -> None:
        lines = []
        for function in sorted(self.functions.values(), key=lambda item: item.name):
            detail = function.trigger_type
            route = next((route for route in self._routes if route.function is function), None)
            if route is not None:
                methods = ",".join(sorted(route.methods)) if route.methods else "ALL"
                detail = f"[{methods}] {self.route_url(route)}"
            state = (
                "error"
                if function.name in self.errors
                else "disabled"
                if function.name in self.disabled
                else "not emulated"
                if function.unsupported
                else ""
            )
            lines.append(f"  {function.name}: {detail}{f' ({state})' if state else ''}")
        log.info(
            "host %s (%s) listening on %s with %d functions:\n%s",
            self.options.instance,
            self.host_id,
            self.url,
            len(self.functions),
            "\n".join(lines),
        )

    # --- shutdown -----------------------------------------------------------------------------------
    async def stop(self) -> bool:
        """Graceful shutdown; True when every invocation finished (no worker thread left running)."""
        self._draining = True
        for timer in self._timer_listeners:
            timer.request_stop()
        await asyncio.gather(*(listener.stop_polling() for listener in self._queue_listeners))
        still_running = await self.invoker.wait_idle(timeout=SHUTDOWN_GRACE_S)
        if still_running:
            log.warning(
                "%d invocations still running after %ss; abandoning them", still_running, SHUTDOWN_GRACE_S
            )
            self.invoker.cancel_all()
        await asyncio.gather(
            *(listener.finish(timeout=COMPLETION_GRACE_S) for listener in self._queue_listeners),
            *(timer.finish(timeout=COMPLETION_GRACE_S) for timer in self._timer_listeners),
        )
        if self._subscriptions is not None:
            await self._subscriptions.delete_all()
        if self._runner is not None:
            await self._runner.cleanup()
        await self._clients.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._remove_state()
        return still_running == 0

    # --- requests -----------------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        lowered = path.lower().rstrip("/")
        if lowered == "":
            return web.Response(text="Your Functions 4.0 app is up and running", content_type="text/html")
        if lowered == "/admin" or lowered.startswith("/admin/"):
            return await self._admin(request, lowered)
        if lowered == WEBHOOK_PATH:
            return await self._eventgrid(request)
        return await self._http_function(request, path)

    async def _http_function(self, request: web.Request, path: str) -> web.StreamResponse:
        for route in self._routes:
            route_params = route.template.match(path)
            if route_params is None or (
                route.methods is not None and request.method.upper() not in route.methods
            ):
                continue
            if not self._active(route.function):
                break
            if not self._authorised(request, route.auth_level):
                return web.Response(status=401)
            if self._draining:
                return web.Response(status=503)
            return await self._invoke_http(request, route, route_params)
        return web.Response(status=404)

    def _authorised(self, request: web.Request, level: str) -> bool:
        if level == "anonymous":
            return True
        key = presented_key(request)
        return self.keys.is_master(key) if level == "admin" else self.keys.is_function_key(key)

    async def _invoke_http(
        self, request: web.Request, route: HttpRoute, route_params: dict[str, str]
    ) -> web.StreamResponse:
        body = await request.read()
        function = route.function
        url = str(request.url)

        def make_trigger(_: object) -> Any:
            return triggers.http_request(
                method=request.method,
                url=url,
                headers=request.headers.items(),
                query=request.query.items(),
                route_params=route_params,
                body=body,
                pytype=function.trigger_pytype,
            )

        outcome = await self.invoker.invoke(function, trigger_label="http", make_trigger=make_trigger)
        if not outcome.succeeded:
            return web.Response(status=500)
        if function.return_binding is not None and function.return_binding.type == "http":
            value = outcome.return_value
        else:
            value = next(
                (
                    outcome.outputs.get(output.param)
                    for output in function.outputs
                    if output.binding.type == "http"
                ),
                None,
            )
        try:
            result = triggers.http_result(value)
        except (NotImplementedError, TypeError, ValueError) as exc:
            log.warning(
                "function %s returned a value the HTTP output cannot send (%s)",
                function.name,
                type(exc).__name__,
            )
            return web.Response(status=500)
        response = web.Response(status=result.status, body=result.body)
        for name, value_text in result.headers:
            response.headers.add(name, value_text)
        return response

    async def _eventgrid(self, request: web.Request) -> web.StreamResponse:
        if not self.keys.is_eventgrid_key(presented_key(request)):
            return web.Response(status=401)
        name = request.query.get("functionName", "")
        function = self.functions.get(name.lower())
        if function is None or function.trigger_type != "eventGridTrigger" or not self._active(function):
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        if self._draining:
            return web.Response(status=503)
        result = await handle_webhook(
            method=request.method.upper(),
            event_type_header=request.headers.get("aeg-event-type"),
            origin_header=request.headers.get("WebHook-Request-Origin"),
            body=await request.read(),
            function=function,
            invoker=self.invoker,
        )
        response = web.Response(status=result.status, body=result.body)
        for header, value in result.headers:
            response.headers.add(header, value)
        return response

    # --- admin API ----------------------------------------------------------------------------------
    async def _admin(self, request: web.Request, lowered: str) -> web.StreamResponse:
        if not self.keys.is_master(presented_key(request)):
            return web.Response(status=401)
        parts = lowered.split("/")[2:]  # after "", "admin"
        if parts == ["host", "status"] and request.method == "GET":
            return web.json_response(self._status())
        if parts == ["functions"] and request.method == "GET":
            return web.json_response([self._describe(function) for function in self.functions.values()])
        if len(parts) == 2 and parts[0] == "functions":
            function = self.functions.get(parts[1])
            if function is None:
                return web.Response(status=404)
            if request.method == "GET":
                return web.json_response(self._describe(function))
            if request.method == "POST":
                return await self._admin_invoke(request, function)
        return web.Response(status=404)

    def _status(self) -> dict[str, Any]:
        return {
            "id": self.host_id,
            "state": "Stopping" if self._draining else "Running",
            "version": HOST_VERSION,
            "instanceId": self.options.instance,
            "computerName": socket.gethostname(),
            "processUptime": round((time.monotonic() - self._started_at) * SECONDS_TO_MS),
            "errors": [f"{name}: {error}" for name, error in sorted(self.errors.items())],
        }

    def route_url(self, route: HttpRoute) -> str:
        return f"{self.url}/{'/'.join(filter(None, [self.config.route_prefix, route.template.template]))}"

    def _describe(self, function: IndexedFunction) -> dict[str, Any]:
        route = next((route for route in self._routes if route.function is function), None)
        invoke_url = self.route_url(route) if route is not None else None
        return {
            "name": function.name,
            "language": "python",
            "href": f"{self.url}/admin/functions/{function.name}",
            "invoke_url_template": invoke_url,
            "config": {"bindings": list(function.function_json["bindings"])},
            "trigger": function.trigger_type,
            "isDisabled": function.name in self.disabled,
            "error": self.errors.get(function.name) or function.unsupported,
        }

    async def _admin_invoke(self, request: web.Request, function: IndexedFunction) -> web.StreamResponse:
        if self._draining:
            return web.Response(status=503)
        if function.trigger_type == "httpTrigger":
            return web.json_response({"error": "HTTP functions are invoked through their route"}, status=400)
        if function.unsupported or function.name in self.errors:
            return web.json_response(
                {"error": function.unsupported or self.errors[function.name]}, status=400
            )
        raw = await request.read()
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            return web.json_response({"error": 'the body must be JSON: {"input": "..."}'}, status=400)
        text = doc.get("input", "") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            return web.json_response({"error": "input must be a string"}, status=400)
        task = asyncio.create_task(self._run_admin(function, text))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return web.Response(status=202)

    async def _run_admin(self, function: IndexedFunction, text: str) -> None:
        pytype = function.trigger_pytype

        def make_trigger(_: object) -> Any:
            if function.trigger_type == "timerTrigger":
                return triggers.timer_request(past_due=False, schedule_status=None, pytype=pytype)
            if function.trigger_type == "queueTrigger":
                # As the queue extension converts a direct-invoke string: no id, receipt or times; count 0.
                return triggers.queue_message(
                    body=text.encode("utf-8"),
                    message_id=None,
                    dequeue_count=0,
                    insertion_time=None,
                    expiration_time=None,
                    next_visible_time=None,
                    pop_receipt=None,
                    pytype=pytype,
                )
            return triggers.event_grid_event(json.loads(text), pytype=pytype)

        await self.invoker.invoke(function, trigger_label="admin", make_trigger=make_trigger)


# --- entry point ----------------------------------------------------------------------------------------


def read_lab_doc(lab_dir: Path) -> dict[str, Any]:
    path = lab_dir / "lab.json"
    if not path.exists():
        raise HostStartupError(
            f"{path} not found: start the lab first (python -m lab serve --state-dir {lab_dir})"
        )
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise HostStartupError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise HostStartupError(f"{path} must hold a JSON object")
    return doc


def prepare_host(options: HostOptions) -> FunctionsHost:
    """Everything before serving: settings into os.environ, then import and index the app."""
    lab_doc = read_lab_doc(options.lab_dir)
    lab_env = {str(key): str(value) for key, value in dict(lab_doc.get("env") or {}).items()}
    settings = compose_app_settings(
        lab_env=lab_env, process_env=dict(os.environ), local_settings=read_local_settings(options.app_dir)
    )
    os.environ.update(settings.values)
    if settings.from_local_settings:
        log.info("app settings from local.settings.json: %s", ", ".join(sorted(settings.from_local_settings)))
    config = load_host_config(options.app_dir)
    os.chdir(options.app_dir)  # the worker runs with the app's folder as working directory
    functions = load_functions(app_dir=options.app_dir, module_name=options.app_module)
    return FunctionsHost(
        options=options,
        lab_doc=lab_doc,
        settings=settings,
        config=config,
        functions=functions,
        keys=load_or_create_keys(options.lab_dir),
    )


async def serve(host: FunctionsHost) -> bool:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await host.start()
        print(f"host ready: {host.url}", flush=True)
        await stopping.wait()
        log.info("host %s stopping", host.options.instance)
    finally:
        clean = await host.stop()
    return clean


def run_host(
    *,
    lab_dir: Path,
    port: int,
    instance: str,
    app_dir: Path | None = None,
    app_module: str = "function_app",
    subscriptions: Path | None = None,
) -> int:
    """Run the host until SIGTERM/SIGINT; 0 after a clean stop, 1 when the app cannot be hosted."""
    logging.getLogger("azure").setLevel(logging.WARNING)
    root = (app_dir or Path.cwd()).resolve()
    options = HostOptions(
        lab_dir=lab_dir.resolve(),
        port=port,
        instance=instance,
        app_dir=root,
        app_module=app_module,
        subscriptions=(subscriptions or root / DEFAULT_SUBSCRIPTIONS).resolve(),
    )
    try:
        host = prepare_host(options)
        clean = asyncio.run(serve(host))
    except HostStartupError as exc:
        log.error("%s", exc)
        return 1
    if not clean:
        # Worker threads still run abandoned invocations; the interpreter would wait for them at exit.
        logging.shutdown()
        os._exit(0)
    return 0
