"""Run one function invocation as the Python worker does, and log it in one line.

The worker runs `async def` functions on its event loop and plain functions in a thread pool
(`PYTHON_THREADPOOL_THREAD_COUNT`; unset means the executor's own default on Python 3.9+), passes
`func.Out` holders for output bindings and a `func.Context` to a `context` parameter. Output values
reach their bindings only after the function returned, and a failure of that step fails the
invocation — as in Azure, where output bindings are flushed by the host after the worker replies.

A failing invocation is reported, never raised into the host: nothing a function does stops the host.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import azure.functions as func

from lab.host.indexing import IndexedFunction

log = logging.getLogger("lab.host")
errors_log = logging.getLogger("lab.host.errors")

# MILLISECONDS_PER_SECOND: durations are logged in whole milliseconds, as the Functions host does.
MILLISECONDS_PER_SECOND = 1000


class OutValue(func.Out[Any]):
    """The concrete `func.Out` the worker hands to an output-binding parameter."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _TraceContext(func._abc.TraceContext):
    """No distributed tracing locally: empty W3C trace context, as the worker gives without a traceparent."""

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _NoRetryException(func._abc.RpcException):
    @property
    def source(self) -> str:
        return ""

    @property
    def stack_trace(self) -> str:
        return ""

    @property
    def message(self) -> str:
        return ""


class _RetryContext(func._abc.RetryContext):
    """Retry policies are not emulated: every invocation is a first attempt."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> func._abc.RpcException:
        return _NoRetryException()


class InvocationContext(func.Context):
    """The `context` argument: invocation id, function name and directory, per-thread storage."""

    _thread_local = threading.local()

    def __init__(self, *, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> func._abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> func._abc.RetryContext:
        return _RetryContext()


@dataclass(frozen=True)
class InvocationOutcome:
    invocation_id: str
    function_name: str
    started: bool
    """False when the invocation was cancelled before the function began (shutdown)."""
    error: BaseException | None
    return_value: Any = None
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.started and self.error is None


class OutputSink(Protocol):
    """Where output binding values go after a successful invocation (queue messages)."""

    async def flush(
        self, function: IndexedFunction, *, outputs: Mapping[str, Any], return_value: Any
    ) -> None: ...


TriggerFactory = Callable[[datetime], Any]
"""Builds the trigger argument when the function actually starts (a timer's past_due depends on it)."""


class Invoker:
    def __init__(self, *, executor: ThreadPoolExecutor, sink: OutputSink, function_directory: str) -> None:
        self._executor = executor
        self._sink = sink
        self._function_directory = function_directory
        self._in_flight: set[asyncio.Task[InvocationOutcome]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def invoke(
        self,
        function: IndexedFunction,
        *,
        trigger_label: str,
        make_trigger: TriggerFactory,
        invocation_id: str | None = None,
    ) -> InvocationOutcome:
        """Run the function once; the outcome says whether it succeeded. Never raises for app errors."""
        task = asyncio.ensure_future(
            self._invoke(
                function,
                trigger_label=trigger_label,
                make_trigger=make_trigger,
                invocation_id=invocation_id or str(uuid.uuid4()),
            )
        )
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)

    async def wait_idle(self, *, timeout: float) -> int:
        """Wait for in-flight invocations, at most `timeout` seconds; returns how many are still running."""
        pending = set(self._in_flight)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            return len(still)
        return 0

    def cancel_all(self) -> None:
        for task in list(self._in_flight):
            task.cancel()

    async def _invoke(
        self,
        function: IndexedFunction,
        *,
        trigger_label: str,
        make_trigger: TriggerFactory,
        invocation_id: str,
    ) -> InvocationOutcome:
        started_at = time.monotonic()
        context = InvocationContext(
            invocation_id=invocation_id,
            function_name=function.name,
            function_directory=self._function_directory,
        )
        outs = {output.param: OutValue() for output in function.outputs}
        started = threading.Event()

        def arguments() -> dict[str, Any]:
            started.set()
            kwargs: dict[str, Any] = {function.trigger_param: make_trigger(datetime.now(UTC))}
            kwargs.update(outs)
            if function.requires_context:
                kwargs["context"] = context
            return kwargs

        def run_sync() -> Any:
            context.thread_local_storage.invocation_id = invocation_id
            try:
                return function.user_function(**arguments())
            finally:
                context.thread_local_storage.invocation_id = None

        error: BaseException | None = None
        return_value: Any = None
        outputs: dict[str, Any] = {}
        queued: Future[Any] | None = None
        try:
            if function.is_async:
                return_value = await function.user_function(**arguments())
            else:
                queued = self._executor.submit(run_sync)
                return_value = await asyncio.wrap_future(queued)
            outputs = {name: holder.get() for name, holder in outs.items()}
            await self._sink.flush(function, outputs=outputs, return_value=return_value)
        except asyncio.CancelledError:
            # Cancelled at shutdown: "not started" only if the thread pool never picked the call up.
            never_ran = queued.cancelled() if queued is not None else not started.is_set()
            if not never_ran:
                raise
            self._log(function, trigger_label, started_at, invocation_id, outcome="cancelled")
            return InvocationOutcome(
                invocation_id=invocation_id, function_name=function.name, started=False, error=None
            )
        except Exception as exc:  # an app failure is an outcome, not a host failure
            error = exc
        self._log(
            function,
            trigger_label,
            started_at,
            invocation_id,
            error=error,
            outcome="succeeded" if error is None else "failed",
        )
        return InvocationOutcome(
            invocation_id=invocation_id,
            function_name=function.name,
            started=True,
            error=error,
            return_value=return_value,
            outputs=outputs,
        )

    @staticmethod
    def _log(
        function: IndexedFunction,
        trigger_label: str,
        started_at: float,
        invocation_id: str,
        *,
        outcome: str,
        error: BaseException | None = None,
    ) -> None:
        duration_ms = round((time.monotonic() - started_at) * MILLISECONDS_PER_SECOND)
        if error is None:
            log.info(
                "function=%s trigger=%s duration_ms=%d outcome=%s invocation_id=%s",
                function.name,
                trigger_label,
                duration_ms,
                outcome,
                invocation_id,
            )
            return
        log.warning(
            "function=%s trigger=%s duration_ms=%d outcome=%s error=%s invocation_id=%s",
            function.name,
            trigger_label,
            duration_ms,
            outcome,
            type(error).__name__,
            invocation_id,
        )
        # The traceback, for whoever debugs the app (the real host logs it too); the app's own rule is that
        # exception text never carries a secret.
        errors_log.error("invocation %s of %s raised", invocation_id, function.name, exc_info=error)
