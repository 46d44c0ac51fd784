"""The dispatcher's life: start (``async with``), drain, shutdown with a deadline,
the pumps of routed types, and the thread bridge."""

from __future__ import annotations

import logging
import threading
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from ._core import Phase
from ._delivery import NO_KEY, Envelope
from ._errors import DispatcherClosed, InvalidEvent
from ._publishing import Publishing
from ._state import TypeState
from ._transport import Verdict, close_transport, open_transport
from ._types import DropReason, Lifecycle
from ._workers import WorkerPool

logger = logging.getLogger("eventcore")

_D = TypeVar("_D", bound="Running")

#: the first and the longest pause after a failed fetch from a transport
_FETCH_RETRY = 0.05
_FETCH_RETRY_MAX = 5.0

#: what _key_or_reject returns for an event it rejected (None is a valid key)
_REJECTED: Any = object()


class Running(Publishing):
    """``async with dispatcher``, ``drain()``, ``publish_threadsafe()``."""

    shutdown_timeout: float
    _max_idle_workers: int
    _on_lifecycle: Any
    _exit_stack: AsyncExitStack | None
    _pumps: anyio.abc.TaskGroup | None
    #: the transports opened in this run, by id (closed when it ends)
    _opened: dict[int, Any]
    _opening: anyio.Lock

    async def __aenter__(self: _D) -> _D:
        if self._phase is Phase.RUNNING or self._phase is Phase.CLOSING:
            raise RuntimeError("this dispatcher is already running")
        self._opening = anyio.Lock()
        try:
            await self._start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close_transports()
            raise
        self._lifecycle(Lifecycle.STARTED)
        return self

    async def _start(self) -> None:
        """Open the transports, start the workers and the pumps."""
        for transport in self._known_transports():
            await self._open_route(transport)
        async with AsyncExitStack() as stack:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            self._pool = WorkerPool(
                task_group, self._reporter, self._delivery, self._max_idle_workers
            )
            self._delivery.stopping = False
            if self._slow_handler_threshold is not None:
                task_group.start_soon(
                    self._delivery.watch_slow_handlers, self._slow_handler_threshold
                )
            self._pumps = await stack.enter_async_context(anyio.create_task_group())
            self._token = anyio.lowlevel.current_token()
            self._loop_thread = threading.get_ident()
            self._phase = Phase.RUNNING
            for state in self._table:
                self._sync_pause(state)  # paused types stay paused in the next run
            self._open_fast_path()
            self._start_pumps()
            self._exit_stack = stack.pop_all()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, pool, pumps = self._exit_stack, self._pool, self._pumps
        assert stack is not None
        assert pool is not None
        assert pumps is not None
        self._phase = Phase.CLOSING
        self._open_fast_path()
        for state in self._table:
            self._sync_pause(state)  # shutdown drains paused types too (the pause stays set)
        self._lifecycle(Lifecycle.DRAINING)
        abandoned_before = self._abandoned()
        try:
            pumps.cancel_scope.cancel()  # fetch nothing more from brokers
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.shutdown_timeout):
                await self._quiet()
        finally:
            # The deadline passed (or everything drained): no handler starts from now on.
            pool.stop(list(self._table))
            pool.task_group.cancel_scope.cancel()
            try:
                # The body's own exception is not handed to the task groups: it leaves
                # `async with` as itself, never wrapped in an ExceptionGroup.
                await stack.__aexit__(None, None, None)
            finally:
                self._abandon_queued()  # settles their receipts: before transports close
                with anyio.CancelScope(shield=True):
                    await self._close_transports()
                self._stopped(abandoned_before)

    def _known_transports(self) -> list[Any]:
        routes = [self._transport, *(config.transport for config in self._configs.values())]
        return list({id(t): t for t in routes if t is not None}.values())

    async def _open_route(self, transport: Any) -> None:
        """Open *transport* once per run (see ``eventcore._transport``)."""
        async with self._opening:  # a pump and a publisher may both need it first
            if id(transport) not in self._opened:
                await open_transport(transport, self)
                self._opened[id(transport)] = transport

    async def _close_transports(self) -> None:
        opened, self._opened = self._opened, {}
        for transport in opened.values():
            try:
                await close_transport(transport)
            except Exception:
                logger.exception("closing the transport %r failed", transport)

    def _abandon_queued(self) -> None:
        """Report every event still queued as cut off by shutdown."""
        for state in self._table:
            for item in state.abandon():
                self._reporter.dropped(item, DropReason.SHUTDOWN)

    def _stopped(self, abandoned_before: int) -> None:
        """Report what shutdown cut off and forget everything bound to the event loop."""
        self._phase = Phase.CLOSED
        self._open_fast_path()
        self._token = None
        self._loop_thread = None
        self._pool = None
        self._pumps = None
        self._exit_stack = None
        for state in self._table:
            state.reset()
        self._table.sweep(everything=True)
        lost = self._abandoned() - abandoned_before
        if lost:
            logger.warning(
                "shutdown_timeout (%s s) ran out: %d accepted event(s) were not handled "
                "(counted as abandoned in stats(), passed to on_drop if set)",
                self.shutdown_timeout,
                lost,
            )
        self._lifecycle(Lifecycle.STOPPED)

    def _abandoned(self) -> int:
        live = sum(state.abandoned for state in self._table)
        retired = self._table.retired_counters()
        return live + sum(counters["abandoned"] for _, counters in retired)

    def _lifecycle(self, phase: Lifecycle) -> None:
        logger.debug("dispatcher %s", phase.value)
        if self._on_lifecycle is not None:
            try:
                self._on_lifecycle(phase)
            except Exception:
                logger.exception("on_lifecycle hook failed (%s)", phase.value)

    async def drain(self) -> None:
        """Wait until no event is queued or in flight, including follow-on events.

        Paused types are not waited for: their events wait for ``resume()``.

        :raises DispatcherClosed: the dispatcher was never started
        :raises RuntimeError: called from one of the dispatcher's own handlers (it
            would wait for that handler itself)
        """
        if self._phase is Phase.NEW:
            raise DispatcherClosed(self._closed_message())
        if self._is_own_worker():
            raise RuntimeError(
                "drain() was awaited inside a handler of this dispatcher: it would wait for "
                "that handler itself; use publish_and_wait() to wait for follow-on events"
            )
        await self._quiet(skip_paused=True)

    async def _quiet(self, skip_paused: bool = False) -> None:
        while True:
            busy = next(
                (s for s in self._table if s.busy and not (skip_paused and s.paused)), None
            )
            if busy is None:
                return
            if busy.quiet is None:
                busy.quiet = anyio.Event()
            await busy.quiet.wait()

    # -- routed types ----------------------------------------------------------------

    def _start_pumps(self) -> None:
        """Start fetching every routed type that has subscriptions."""
        types = {sub.event_type for sub in self._registry.all()}
        for event_type in types:
            if self._route_of(event_type) is not None:
                self._start_pump(event_type)

    def _start_pump(self, event_type: type) -> None:
        """Fetch *event_type*'s events from its transport, if it is routed and running."""
        if self._pumps is None or self._phase is not Phase.RUNNING:
            return
        self._repump(self._table.get(event_type) or self._new_state(event_type))

    def _repump(self, state: TypeState) -> None:
        """Make *state*'s pump read its current route: stop a pump that reads another
        one, start one if the type is routed, subscribed and the dispatcher runs."""
        subscribed = bool(self._registry.resolve(state.event_type))
        if state.pump is not None and (state.pump_route is not state.route or not subscribed):
            state.pump.cancel()  # another route now, or nobody here handles the type
            state.pump = state.pump_route = None
        pumps = self._pumps
        if (
            state.route is None
            or state.pump is not None
            or pumps is None
            or self._phase is not Phase.RUNNING
            or not subscribed
        ):
            return
        scope = anyio.CancelScope()
        state.pump, state.pump_route = scope, state.route
        pumps.start_soon(self._pump, state, state.route, scope)

    async def _pump(self, state: TypeState, route: Any, scope: anyio.CancelScope) -> None:
        """Fetch *state*'s events from *route*, never more than the queue has room for.

        A failing fetch is logged and retried with a growing pause: the broker's
        client reconnects; the dispatcher goes on.
        """
        pause = _FETCH_RETRY
        with scope:
            try:
                await self._open_route(route)
                source = route.source(state.event_type)
                while True:
                    if state.paused:  # fetch nothing while the type is paused
                        await state.resumption().wait()
                        continue
                    room = state.limit - len(state.items)
                    if room <= 0:
                        putter = state.park_putter(None, room_only=True)  # woken by room
                        try:
                            await putter.wake.wait()
                        finally:
                            state.forget_putter(putter)
                        continue
                    try:
                        batch = await source.fetch(room)
                    except Exception:
                        logger.exception(
                            "fetching %s failed; retrying in %.2f s",
                            state.event_type.__qualname__,
                            pause,
                        )
                        await anyio.sleep(pause)
                        pause = min(pause * 2, _FETCH_RETRY_MAX)
                        continue
                    pause = _FETCH_RETRY
                    for event, receipt in batch:
                        key = self._key_or_reject(state, event, receipt)
                        if key is not _REJECTED:
                            context = getattr(receipt, "context", None)
                            envelope = Envelope(event, context, False, False, key, receipt)
                            self._enqueue(state, envelope)
            finally:
                if state.pump is scope:
                    state.pump = state.pump_route = None

    def _key_or_reject(self, state: TypeState, event: Any, receipt: Any) -> Any:
        """The key of a fetched event (NO_KEY without a key function); a failing key
        function rejects the event instead (reported, dead-lettered, receipt rejected:
        ``_REJECTED``)."""
        if state.key is None:
            return NO_KEY
        try:
            return state.key_of(event)
        except InvalidEvent as exc:
            state.failed += 1
            self._reporter.handler_failed(event, state.key, exc)
            receipt.settle(Verdict.REJECTED)
            return _REJECTED

    # -- other threads ---------------------------------------------------------------

    def publish_threadsafe(self, event: object, *, timeout: float | None = None) -> bool:
        """Publish from a thread other than the event loop's; blocks that thread until
        the event is accepted (see :meth:`publish` for the result and errors).

        :raises DispatcherClosed: the dispatcher is not running (or stopped meanwhile)
        :raises RuntimeError: called from the event loop thread itself (use ``publish``)
        """
        token = self._token
        if token is None:
            raise DispatcherClosed(self._closed_message())
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "publish_threadsafe() was called on the event loop's own thread, where it would "
                "block the loop: use `await publish(...)` or `publish_nowait(...)` there"
            )
        try:
            return anyio.from_thread.run(self._publish_from_thread, event, timeout, token=token)
        except anyio.RunFinishedError:
            raise DispatcherClosed("the dispatcher's event loop has finished") from None

    async def _publish_from_thread(self, event: object, timeout: float | None) -> bool:
        return await self.publish(event, timeout=timeout)
