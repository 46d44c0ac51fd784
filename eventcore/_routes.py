"""The routes to transports: opening and closing them once per run, and the pumps
that fetch routed types' events from their brokers into their queues."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from ._delivery import Reporter
from ._envelope import NO_KEY, Envelope
from ._errors import EventcoreError, InvalidEvent, TransportError
from ._run import Phase, Run
from ._state import TypeState
from ._states import TypeStates
from ._transport import Verdict, close_transport, open_transport

logger = logging.getLogger("eventcore")

#: the first and the longest pause after a failed fetch from a transport
_FETCH_RETRY = 0.05
_FETCH_RETRY_MAX = 5.0

#: what _key_or_reject returns for an event it rejected (None is a valid key)
_REJECTED: Any = object()


class Routes:
    """The transports of one dispatcher and the pumps of its routed types.

    :param owner: the public dispatcher, handed to each transport when it opens
        (transports read its names and settings through its public API)
    """

    def __init__(self, owner: object, states: TypeStates, run: Run, reporter: Reporter) -> None:
        self._owner = owner
        self._states = states
        self._run = run
        self._reporter = reporter
        #: the transports opened in this run, by id (closed when it ends)
        self._opened: dict[int, Any] = {}
        self._opening: anyio.Lock | None = None
        self._pumps: anyio.abc.TaskGroup | None = None
        #: the task group of the transports' own tasks, for the run (see running())
        self._crews: anyio.abc.TaskGroup | None = None

    def known(self) -> list[Any]:
        """Every transport of the dispatcher and of its configured types, once each."""
        routes = [self._states.transport, *(c.transport for c in self._states.configs.values())]
        return list({id(t): t for t in routes if t is not None}.values())

    def is_open(self, transport: Any) -> bool:
        """Whether *transport* was opened in this run (and not closed since)."""
        return id(transport) in self._opened

    async def open(self, transport: Any) -> None:
        """Open *transport* once per run (see ``eventcore._transport``)."""
        if self._opening is None:
            self._opening = anyio.Lock()
        async with self._opening:  # a pump and a publisher may both need it first
            if id(transport) not in self._opened:
                try:
                    await open_transport(transport, self._owner, self._crews)
                except EventcoreError:
                    raise
                except Exception as exc:  # a transport of another library's
                    raise TransportError(
                        f"opening the transport {transport!r} failed: {type(exc).__name__}: {exc}"
                    ) from exc
                self._opened[id(transport)] = transport

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The transports' run: a task group for their tasks (handed to ``open``),
        left after every transport opened in it was closed. An error of the body
        (a transport that cannot open) leaves as itself, not in an exception group."""
        failure: Exception | None = None
        async with anyio.create_task_group() as crews:
            self._crews = crews
            try:
                yield
            except Exception as exc:
                failure = exc
            finally:
                with anyio.CancelScope(shield=True):
                    await self.close()
                self._crews = None
        if failure is not None:
            raise failure

    async def close(self) -> None:
        """Close every transport opened in this run (failures are logged)."""
        opened, self._opened = self._opened, {}
        self._opening = None
        for transport in opened.values():
            try:
                await close_transport(transport)
            except Exception:
                logger.exception("closing the transport %r failed", transport)

    # -- pumps -------------------------------------------------------------------------

    def start(self, pumps: anyio.abc.TaskGroup) -> None:
        """Run pumps in *pumps*; start fetching every routed type that has subscriptions
        (and the routed subclasses of each: see :meth:`start_pump`)."""
        self._pumps = pumps
        types = {sub.event_type for sub in self._states.registry.all()}
        for event_type in types:
            self.start_pump(event_type)

    def stop(self) -> None:
        """Fetch nothing more (shutdown began)."""
        if self._pumps is not None:
            self._pumps.cancel_scope.cancel()

    def forget(self) -> None:
        """The run ended: its pumps' task group is gone."""
        self._pumps = None

    def start_pump(self, event_type: type) -> None:
        """Fetch *event_type*'s events from its transport, if it is routed and running,
        and those of its subclasses known in this process: a routed event travels on
        its own class's stream, so a handler of a base class reads the streams of the
        subclasses too (routing by the class hierarchy, as in memory)."""
        if self._pumps is None or self._run.phase is not Phase.RUNNING:
            return
        states = self._states
        for klass in routed_family(event_type):
            if states.route_of(klass) is not None:
                self.repump(states.get(klass) or states.new_state(klass))

    def repump_family(self, event_type: type) -> None:
        """The subscriptions of *event_type* changed: stop the pumps of it and of its
        subclasses that nobody here handles any more."""
        for klass in routed_family(event_type):
            state = self._states.get(klass)
            if state is not None and state.pump is not None:
                self.repump(state)

    def repump(self, state: TypeState) -> None:
        """Make *state*'s pump read its current route: stop a pump that reads another
        one, start one if the type is routed, subscribed and the dispatcher runs."""
        subscribed = bool(self._states.registry.resolve(state.event_type))
        if state.pump is not None and (state.pump_route is not state.route or not subscribed):
            state.pump.cancel()  # another route now, or nobody here handles the type
            state.detach_pump()
        pumps = self._pumps
        if (
            state.route is None
            or state.pump is not None
            or pumps is None
            or self._run.phase is not Phase.RUNNING
            or not subscribed
        ):
            return
        scope = anyio.CancelScope()
        state.attach_pump(scope, state.route)
        pumps.start_soon(self._pump, state, state.route, scope)

    async def _pump(self, state: TypeState, route: Any, scope: anyio.CancelScope) -> None:
        """Fetch *state*'s events from *route*, never more than the queue has room for.

        A failing fetch is logged and retried with a growing pause: the broker's
        client reconnects; the dispatcher goes on.
        """
        pause = _FETCH_RETRY
        queue = state.queue
        with scope:
            try:
                source = await self._source(state, route)
                while True:
                    if state.paused:  # fetch nothing while the type is paused
                        await state.resumption().wait()
                        continue
                    room = queue.limit - len(queue.items)
                    if room <= 0:
                        putter = state.park(None, room_only=True)  # woken by room
                        try:
                            await putter.wake.wait()
                        finally:
                            state.forget(putter)
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
                            self._states.enqueue(state, envelope)
            finally:
                state.detach_pump(scope)

    async def _source(self, state: TypeState, route: Any) -> Any:
        """*route* opened and its source of *state*'s type; a failure is logged and
        retried with a growing pause, never raised: it would cancel the dispatcher's
        task groups, and with them the user's ``async with`` body and other types.
        (A publisher of the type gets the error itself, typed.)"""
        pause = _FETCH_RETRY
        while True:
            try:
                await self.open(route)
                return route.source(state.event_type)
            except Exception as exc:
                logger.error(
                    "routing %s through %r failed (%s: %s); it is not fetched, retrying in %.2f s",
                    state.event_type.__qualname__,
                    route,
                    type(exc).__name__,
                    exc,
                    pause,
                )
            await anyio.sleep(pause)
            pause = min(pause * 2, _FETCH_RETRY_MAX)

    def _key_or_reject(self, state: TypeState, event: Any, receipt: Any) -> Any:
        """The key of a fetched event (NO_KEY without a key function); a failing key
        function rejects the event instead (reported, dead-lettered, receipt rejected:
        ``_REJECTED``)."""
        key_function = state.config.key
        if key_function is None:
            return NO_KEY
        try:
            return state.key_of(event)
        except InvalidEvent as exc:
            state.counts.fail()
            self._reporter.handler_failed(event, key_function, exc)
            receipt.settle(Verdict.REJECTED)
            return _REJECTED


def routed_family(event_type: type) -> list[type]:
    """*event_type* and its subclasses defined so far (each once; ``object`` alone:
    every class of the interpreter is not a family of events)."""
    if event_type is object:
        return [object]
    family, todo = [event_type], [event_type]
    while todo:
        subclasses: list[type] = todo.pop().__subclasses__()
        for sub in subclasses:
            if sub not in family:
                family.append(sub)
                todo.append(sub)
    return family
