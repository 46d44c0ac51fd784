"""Worker tasks: one shared pool serving every event type under each type's limit.

A type with queued events and a free slot is *scheduled*: put once on the pool's
ready line. A worker takes a type from that line, takes one of its slots, and
handles its events one after another without yielding between them (a
handler's own awaits are the only checkpoints) until nothing is left that it
may start; then it gives the slot back and takes the next ready type, or parks
when there is none. So 10,000 event types need no task each, and a burst over
many types is served by one worker without a task switch per event. New
workers start one at a time, only while types wait and no worker is parked or
starting, and at most ``max_idle_workers`` stay parked.

A type that needs nothing beyond calling its handlers is *plain*: the worker
calls them inline (:meth:`WorkerPool._serve`). Otherwise (a key, timeouts,
retries, middleware, context) :meth:`WorkerPool._serve_general` hands each event
to :class:`~eventcore._delivery.Delivery`. Anything a worker must react to - a
handler wanting its slot back, a lowered limit, a type that stopped being plain,
shutdown - raises the type's single ``attention`` flag, checked once per event.

Every change of a type's state goes through the transitions of its parts (see
``_state``); the deadlock escape lives in ``_waits``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from contextvars import copy_context
from typing import Any

import anyio
import anyio.abc

from ._delivery import Delivery, Reporter, handler_failure
from ._envelope import NO_KEY, Envelope, HandlerResult
from ._slot import WorkerSlot, current_slot
from ._state import TypeState
from ._types import DropReason
from ._waits import WaitGraph
from ._wake import Wake, wake_class

_NOTHING: Any = object()
_LEAVE, _GENERAL, _STAY = "leave", "general", "stay"


class WorkerPool:
    """The worker tasks of every type, in one task group, and the line of ready types."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        reporter: Reporter,
        delivery: Delivery,
        max_idle_workers: int,
    ) -> None:
        self.task_group = task_group
        self.reporter = reporter
        self.delivery = delivery
        self.max_idle_workers = max_idle_workers
        #: types with queued events and a free slot, each at most once
        self.ready: deque[TypeState] = deque()
        #: one wake-up event per parked worker
        self.parked: list[Wake] = []
        #: workers spawned that have not started running yet
        self.starting = 0
        #: set once shutdown's deadline passed: no handler starts any more
        self.stopping = False
        self.context = copy_context()
        self.cancelled: type[BaseException] = anyio.get_cancelled_exc_class()
        #: the one-waiter event of this loop (parked workers, publish_and_wait)
        self.wake_class: Callable[[], Wake] = wake_class(self.cancelled)
        #: the waits of this run's handlers (the deadlock escape's graph)
        self.waits = WaitGraph()

    def schedule(self, state: TypeState) -> None:
        """Put *state* on the ready line (the caller checked it has work and a free slot)."""
        state.gate.line_up()
        self.ready.append(state)
        self._call_worker()

    def kick(self, state: TypeState) -> None:
        """Make sure queued events of *state* have a worker coming, if a slot is free."""
        if (state.items or state.queue.orphans) and state.gate.line_up_if_free():
            self.ready.append(state)
            self._call_worker()

    def stop(self, states: Iterable[TypeState]) -> None:
        """Shutdown's deadline passed: no handler starts from now on."""
        self.stopping = True
        self.delivery.halt()
        self.ready.clear()
        for state in states:
            state.stop()
        for wake in self.parked:
            wake.set()

    def _call_worker(self) -> None:
        """Wake a parked worker, or start one if none is parked or starting."""
        if self.stopping:
            return
        if self.parked:
            self.parked.pop().set()
        elif not self.starting:
            self.starting += 1
            # Workers start in the dispatcher's context, not in the publisher's that
            # happened to need one (propagate_context carries that per event instead).
            self.context.run(self.task_group.start_soon, self._run)

    def _next_state(self, slot: WorkerSlot) -> TypeState | None:
        """Take the next ready type and a slot in it."""
        ready = self.ready
        while ready and not self.stopping:
            state = ready.popleft()
            gate = state.gate
            if gate.running >= gate.concurrency or not (state.items or state.queue.orphans):
                gate.off_line()
                continue  # served meanwhile, or its slots are taken
            if state.attention and (gate.reclaimers or gate.stopping or gate.paused):
                gate.off_line()
                continue  # suspended handlers take free slots first; or shutting down, paused
            gate.acquire()  # off the line, into a slot
            slot.state = state
            slot.holding = True
            if (len(state.items) > 1 or state.queue.orphans) and gate.running < gate.concurrency:
                self.schedule(state)  # room for one more worker on this type
            elif ready:
                self._call_worker()  # other types wait: get a worker coming for them
            return state
        return None

    def _leave(self, state: TypeState, slot: WorkerSlot) -> None:
        """Give the slot in *state* back (if held) and reschedule what is left."""
        if slot.key is not NO_KEY:
            state.let_go(slot.key)
            slot.key = NO_KEY
        slot.state = None  # a parked worker keeps no type (and no class) alive
        if slot.holding:
            slot.holding = False
            if state.attention:
                state.release()
            else:  # plain, nobody wants a slot back: no attention to recompute
                state.gate.release()
        if state.items or state.queue.orphans:
            self.kick(state)
        elif state.quiet is not None:
            state.quieted()

    def _attend(self, state: TypeState, slot: WorkerSlot) -> str:
        """Decide what a worker does when its type's ``attention`` flag is up."""
        gate = state.gate
        if gate.stopping or gate.paused:
            return _LEAVE
        if gate.reclaimers:
            # A handler that lent its slot wants it back: hand ours over.
            state.let_go(slot.key)
            slot.key = NO_KEY
            slot.holding = False
            state.pass_slot()
            return _LEAVE
        if gate.running > gate.concurrency:  # the limit was lowered
            return _LEAVE
        return _STAY if state.plan.plain and not state.queue.keys else _GENERAL

    async def _run(self) -> None:
        """One worker task: serve ready types, park when there are none."""
        self.starting -= 1
        slot = WorkerSlot(self)
        current_slot.set(slot)
        while True:
            state = self._next_state(slot)
            if state is not None:
                await self._serve(state, slot)
                continue
            # park (inline: a coroutine per park would cost as much as the rest of it)
            wake = self._park()
            if wake is None:
                return  # retire: enough workers are parked, or shutting down
            try:
                await wake.wait()
            finally:
                if not wake.is_set():
                    self.parked.remove(wake)
            if self.stopping:
                return

    async def _serve(self, state: TypeState, slot: WorkerSlot) -> None:
        """The hot loop: call *state*'s handlers inline, event after event, until nothing
        is left for this worker; the general loop takes over while the type needs it
        (it returns here when the type is plain again: no recursion)."""
        items = state.items
        queue = state.queue
        gate = state.gate
        counts = state.counts
        reporter = self.reporter
        item = _NOTHING
        try:
            while True:
                if state.attention:
                    verdict = self._attend(state, slot)
                    if verdict is _LEAVE:
                        return
                    if verdict is _GENERAL:
                        if await self._serve_general(state, slot) is _LEAVE:
                            return
                        continue  # plain again
                if not items:
                    return
                item = items.popleft()  # taken out only now that its handling starts
                if queue.putters:
                    queue.hand_over()
                plan = state.plan
                if type(item) is Envelope:
                    if item.context is None and item.receipt is None:
                        # publish_and_wait's envelope: the handlers inline, as below,
                        # with each one's result for the outcome (as Delivery does it)
                        if not await self._serve_tracked(item, state):
                            return  # cut off by shutdown; the finally reports it
                    elif not await self.delivery.deliver(
                        item, counts, plan.subs, None, None, slot.bind
                    ):
                        return  # cut off by shutdown; the finally reports it
                elif (call := plan.single) is not None:  # one subscription, no filter
                    try:
                        await call(item)
                    except BaseException as exc:
                        failure = handler_failure(exc)  # or raised again
                        counts.fail()
                        reporter.handler_failed(item, plan.handler_of(call), failure)
                elif (awaits := plan.awaits) is not None:  # no filters: the shortest loop
                    for call in awaits:
                        if gate.stopping:
                            return  # no handler starts after the shutdown deadline
                        try:
                            await call(item)
                        except BaseException as exc:
                            failure = handler_failure(exc)  # or raised again
                            counts.fail()
                            reporter.handler_failed(item, plan.handler_of(call), failure)
                else:
                    for call, accepts, handler in plan.entries:
                        if gate.stopping:
                            return  # no handler starts after the shutdown deadline
                        try:
                            if accepts is None or accepts(item):
                                await call(item)
                        except BaseException as exc:
                            failure = handler_failure(exc)  # or raised again
                            counts.fail()
                            reporter.handler_failed(item, handler, failure)
                counts.handled += 1  # inline: see tests/test_state_fields.py
                item = _NOTHING
        finally:
            if item is not _NOTHING:
                self._cut_off(state, item)
            self._leave(state, slot)

    async def _serve_tracked(self, envelope: Envelope, state: TypeState) -> bool:
        """Deliver a plain type's *envelope* (no context, no receipt) inline: what
        :meth:`Delivery.deliver` does for it, without its options (the type is plain).

        :return: False when shutdown's deadline cut the handlers off
        """
        event = envelope.event
        reporter = self.reporter
        counts = state.counts
        gate = state.gate
        results: list[HandlerResult] = []
        for call, accepts, handler in state.plan.entries:
            if gate.stopping:
                return False  # no handler starts after the shutdown deadline
            if accepts is not None:
                try:
                    if not accepts(event):
                        continue
                except Exception as exc:
                    counts.fail()
                    reporter.handler_failed(event, accepts, exc)
                    continue
            try:
                results.append(HandlerResult(handler, await call(event)))
                continue
            except BaseException as exc:
                failure = handler_failure(exc)  # or raised again
            counts.fail()
            reporter.handler_failed(event, handler, failure, 1, envelope.id)
            results.append(HandlerResult(handler, exception=failure))
        envelope.finish(results)
        return True

    async def _serve_general(self, state: TypeState, slot: WorkerSlot) -> str:
        """Handle *state*'s events through :class:`Delivery` (keys, timeouts, retries,
        middleware, context); the caller (:meth:`_serve`) gives the slot back.

        :return: what to do next (``_LEAVE``, or ``_STAY``: plain again)
        """
        delivery = self.delivery
        counts = state.counts
        item = _NOTHING
        try:
            while True:
                verdict = self._attend(state, slot)
                if verdict is not _GENERAL:
                    return verdict
                item, slot.key = state.take(slot.key)
                if item is None:
                    item = _NOTHING
                    return _LEAVE
                config = state.config
                if not await delivery.deliver(
                    item,
                    counts,
                    state.plan.subs,
                    config.handler_timeout,
                    config.retry,
                    slot.bind,
                ):
                    return _LEAVE  # cut off by shutdown; the finally reports it
                counts.finish()
                item = _NOTHING
        finally:
            if item is not _NOTHING:
                self._cut_off(state, item)

    def _park(self) -> Wake | None:
        """A parked worker's wake-up, or None when it should retire instead."""
        if self.stopping or len(self.parked) >= self.max_idle_workers:
            return None
        wake = self.wake_class()
        self.parked.append(wake)
        return wake

    def _cut_off(self, state: TypeState, item: Any) -> None:
        state.counts.cut_off()
        self.reporter.dropped(item, DropReason.SHUTDOWN)
