"""The dispatcher's life: start (``async with``), drain, and shutdown with a deadline."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio
import anyio.lowlevel

from ._delivery import Delivery, Reporter
from ._errors import DispatcherClosed, LifecycleMisuse
from ._features import Features
from ._routes import Routes
from ._run import Phase, Run
from ._states import TypeStates
from ._types import DropReason, Lifecycle
from ._workers import WorkerPool

logger = logging.getLogger("eventcore")


class Life:
    """Starts and stops one dispatcher's runs: the workers, the pumps, the transports."""

    def __init__(
        self,
        states: TypeStates,
        run: Run,
        routes: Routes,
        features: Features,
        reporter: Reporter,
        delivery: Delivery,
        max_idle_workers: int,
        on_lifecycle: Callable[[Lifecycle], object] | None,
    ) -> None:
        self._states = states
        self._run = run
        self._routes = routes
        self._features = features
        self._reporter = reporter
        self._delivery = delivery
        self._max_idle_workers = max_idle_workers
        self._on_lifecycle = on_lifecycle
        self._exit_stack: AsyncExitStack | None = None
        self._attached: AsyncExitStack | None = None

    async def enter(self) -> None:
        """Start a run (``async with dispatcher``)."""
        if self._run.phase is Phase.RUNNING or self._run.phase is Phase.CLOSING:
            raise LifecycleMisuse(
                f"this dispatcher is already {self._run.phase.value}: enter `async with` once "
                "and use the dispatcher inside it; for a second, independent run build "
                "another Dispatcher"
            )
        await self._start()  # a failed start closes what it opened
        self._announce(Lifecycle.STARTED)
        try:
            await self._attach()
        except BaseException:
            await self.exit(0)  # nothing was queued yet: a prompt, clean stop
            raise

    async def _attach(self) -> None:
        """Enter the attached services (an outbox relay): the run works meanwhile."""
        async with AsyncExitStack() as attached:
            for service in self._features.attached:
                await attached.enter_async_context(service)
            self._attached = attached.pop_all()

    async def _start(self) -> None:
        """Open the transports, start the workers and the pumps."""
        routes = self._routes
        async with AsyncExitStack() as stack:
            # the transports' tasks run in a task group of the run, left after they closed
            await stack.enter_async_context(routes.running())
            stack.callback(self._abandon_queued)  # settles their receipts: before closing
            for transport in routes.known():
                await routes.open(transport)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            pool = WorkerPool(task_group, self._reporter, self._delivery, self._max_idle_workers)
            self._delivery.halt(False)
            threshold = self._features.slow_handler_threshold
            if threshold is not None:
                task_group.start_soon(self._delivery.watch_slow_handlers, threshold)
            pumps = await stack.enter_async_context(anyio.create_task_group())
            self._run.begin(pool, anyio.lowlevel.current_token(), threading.get_ident())
            self._states.sync_pauses()  # paused types stay paused in the next run
            self._states.open_fast_path()
            routes.start(pumps)
            self._exit_stack = stack.pop_all()

    async def exit(self, shutdown_timeout: float) -> None:
        """End the run: drain within *shutdown_timeout*, then stop everything.

        Leaving a dispatcher that is not running (never entered, or left already)
        does nothing.
        """
        run, stack = self._run, self._exit_stack
        if run.in_own_worker():
            raise LifecycleMisuse(
                "the dispatcher was left (`__aexit__`) inside one of its own handlers: "
                "shutdown waits for every handler, this one included, so it would never "
                "end; to stop from a handler, set an anyio.Event there and leave "
                "`async with` in the task that entered it"
            )
        pool = run.pool
        if run.phase is not Phase.RUNNING or stack is None or pool is None:
            return
        self._exit_stack = None
        run.close()
        states = self._states
        states.open_fast_path()
        states.sync_pauses()  # shutdown drains paused types too (the pause stays set)
        self._announce(Lifecycle.DRAINING)
        abandoned_before = self._abandoned()
        try:
            attached, self._attached = self._attached, None
            if attached is not None:  # the services stop first (a relay: no new publishes)
                await attached.aclose()  # unshielded: their scopes are older than a shield
            self._routes.stop()  # fetch nothing more from brokers
            with anyio.CancelScope(shield=True), anyio.move_on_after(shutdown_timeout):
                await self._quiet()
        finally:
            # The deadline passed (or everything drained): no handler starts from now on.
            pool.stop(list(states))
            pool.task_group.cancel_scope.cancel()
            try:
                # The body's own exception is not handed to the task groups: it leaves
                # `async with` as itself, never wrapped in an ExceptionGroup.
                # (Queued events are abandoned, then the transports closed, on the way out.)
                await stack.__aexit__(None, None, None)
            finally:
                pool.waits.clear()
                self._stopped(abandoned_before, shutdown_timeout)

    def _abandon_queued(self) -> None:
        """Report every event still queued as cut off by shutdown."""
        for state in self._states:
            for item in state.abandon():
                self._reporter.dropped(item, DropReason.SHUTDOWN)

    def _stopped(self, abandoned_before: int, shutdown_timeout: float) -> None:
        """Report what shutdown cut off and forget everything bound to the event loop."""
        self._run.end()
        self._routes.forget()
        states = self._states
        states.open_fast_path()
        for state in states:
            state.reset()
        states.table.sweep(everything=True)
        lost = self._abandoned() - abandoned_before
        if lost:
            logger.warning(
                "shutdown_timeout (%s s) ran out: %d accepted event(s) were not handled "
                "(counted as abandoned in stats(), passed to on_drop if set)",
                shutdown_timeout,
                lost,
            )
        self._announce(Lifecycle.STOPPED)

    def _abandoned(self) -> int:
        live = sum(state.counts.abandoned for state in self._states)
        retired = self._states.table.retired_counters()
        return live + sum(counters["abandoned"] for _, counters in retired)

    def _announce(self, phase: Lifecycle) -> None:
        logger.debug("dispatcher %s", phase.value)
        if self._on_lifecycle is not None:
            try:
                self._on_lifecycle(phase)
            except Exception:
                logger.exception("on_lifecycle hook failed (%s)", phase.value)

    async def drain(self) -> None:
        """Wait until no event is queued or in flight (see ``Dispatcher.drain``)."""
        if self._run.phase is Phase.NEW:
            raise DispatcherClosed(self._run.closed_message("drain()"))
        if self._run.in_own_worker():
            raise LifecycleMisuse(
                "drain() was awaited inside a handler of this dispatcher: it would wait for "
                "that handler itself; use publish_and_wait() to wait for follow-on events"
            )
        await self._quiet(skip_paused=True)

    async def _quiet(self, skip_paused: bool = False) -> None:
        while True:
            busy = next(
                (s for s in self._states if s.busy and not (skip_paused and s.paused)), None
            )
            if busy is None:
                return
            await busy.quiet_event().wait()
