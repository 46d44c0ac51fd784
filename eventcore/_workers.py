"""Worker tasks: one shared pool serving every event type, per-type limits, per-key order.

Each concrete event type has a :class:`TypeGroup`: its channel, its resolved
subscriptions, its counters, and up to ``concurrency`` worker *slots*. The
worker tasks form one pool shared by all types. A group with queued events and
a free slot is *scheduled*: put once on the pool's ready line. A worker takes a
group from that line, takes one of its slots, and handles its events one after
another without yielding between them (a handler's own awaits are the only
checkpoints) until the group's queue is empty; then it gives the slot back and
takes the next ready group, or parks when there is none. So 10,000 event types
need no task each, and a burst over many types is served by one worker without
a task switch per event. New workers start one at a time, only while groups
wait and no worker is parked or starting, and at most ``max_idle_workers`` stay
parked.

A type that needs nothing beyond calling its handlers is *plain*: the worker
calls them inline. Otherwise (a key, timeouts, retries, middleware, context) it
runs :meth:`WorkerPool._serve_general`, which hands each event to
:class:`~eventcore._delivery.Delivery`. Anything a worker must react to - a
handler wanting its slot back, a lowered limit, a type that stopped being plain -
raises the group's single ``attention`` flag, checked once per event.

Per-key order: a worker that takes an event whose key another worker is
handling puts it in that key's backlog (it still counts as queued); the worker
holding the key handles its backlog, in order, before it takes anything else.

Deadlock escape (contract 8): a handler that must wait - for room in a full
queue, or for a ``publish_and_wait`` outcome - is *blocked*. If its waiting
closes a cycle in the wait-for graph (every slot of the target type is blocked,
and following those waits leads back to the handler's own type), the handler
lends its slot: its type is scheduled again so that another worker drains its
queue, and the handler takes a slot back, ahead of new events, when its wait is
over. Like a fork-join pool's compensation thread, this keeps ``concurrency``
as the limit on handlers that are *running*; one suspended in such a wait is
not running.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable
from contextvars import Context, ContextVar, copy_context
from typing import Any

import anyio
import anyio.abc

from ._channel import Channel
from ._config import Retry, TypeConfig
from ._delivery import Delivery, Envelope, Reporter, is_own_cancellation
from ._registry import Subscription
from ._types import DropReason


class TypeGroup(Channel):
    """Everything the dispatcher keeps for one concrete event type: its channel
    (the bounded queue, by inheritance), settings, subscriptions, slots, counters."""

    __slots__ = (
        "abandoned",
        "accepted",
        "attention",
        "backlog",
        "blocked_on",
        "calls",
        "concurrency",
        "dropped",
        "event_type",
        "evicted",
        "failed",
        "handler_timeout",
        "held_order",
        "in_flight",
        "key",
        "plain",
        "quiet",
        "refused",
        "retry",
        "scheduled",
        "slot_waiters",
        "subs",
        "workers",
    )

    def __init__(self, event_type: type, config: TypeConfig) -> None:
        super().__init__(config.queue_size, config.overflow)
        self.event_type = event_type
        self.concurrency = config.concurrency
        self.key: Callable[[Any], Hashable] | None = config.key
        self.handler_timeout: float | None = config.handler_timeout
        self.retry: Retry | None = config.retry
        self.subs: tuple[Subscription[Any], ...] = ()
        #: (handler, filter) of each subscription: what the hot loop needs, unpacked
        self.calls: tuple[tuple[Callable[[Any], Any], Callable[[Any], bool] | None], ...] = ()
        #: whether workers may call handlers inline (see the module docstring)
        self.plain = True
        #: whether workers must look at slot_waiters, the limit or `plain` (see refresh)
        self.attention = False
        #: worker slots taken by workers serving this group
        self.workers = 0
        #: whether the group is on the pool's ready line
        self.scheduled = False
        #: for each slot whose handler is blocked: the group it waits on
        self.blocked_on: list[TypeGroup] = []
        #: handlers that lent their slot and want it back, first come first served
        self.slot_waiters: deque[anyio.Event] = deque()
        #: events waiting behind an earlier event with the same key
        self.backlog: dict[Hashable, deque[tuple[int, Any]]] = {}
        #: numbers the events held in a backlog, in the order they were held
        self.held_order = itertools.count()
        #: set when the group has nothing queued or in flight (for drain)
        self.quiet: anyio.Event | None = None
        self.in_flight = 0
        self.accepted = 0
        self.dropped = 0
        self.refused = 0
        self.evicted = 0
        self.failed = 0
        self.abandoned = 0

    def apply(self, config: TypeConfig) -> None:
        """Take new settings; queued events stay, a smaller bound applies to new publishes."""
        self.resize(config.queue_size)
        self.overflow = config.overflow
        self.concurrency = config.concurrency
        self.key = config.key
        self.handler_timeout = config.handler_timeout
        self.retry = config.retry
        self.refresh()

    def refresh(self) -> None:
        """Recompute ``attention`` after a change of slots, limit or plainness."""
        self.attention = (
            bool(self.slot_waiters) or self.workers > self.concurrency or not self.plain
        )

    @property
    def busy(self) -> bool:
        """Whether anything is queued or in flight."""
        return bool(self.items) or self.in_flight > 0 or self.held > 0

    @property
    def handled(self) -> int:
        """Accepted events whose delivery finished (derived, so the hot path counts less)."""
        return self.accepted - self.queued - self.in_flight - self.evicted - self.abandoned

    def abandon_all(self) -> list[Any]:
        """Take every waiting event out (at shutdown) and count it abandoned."""
        lost = list(self.items)
        self.items.clear()
        for waiting in self.backlog.values():
            lost.extend(item for _, item in waiting)
        self.backlog.clear()
        self.held = 0
        self.limit = self.maxsize
        self.abandoned += len(lost)
        return lost

    def evict_oldest(self) -> Any:
        """Take the oldest waiting event out (DROP_OLDEST).

        Events held behind their key left the queue before everything in it, so
        the oldest of them (by the order they were held in) goes first.
        """
        oldest: deque[tuple[int, Any]] | None = None
        for waiting in self.backlog.values():
            if waiting and (oldest is None or waiting[0][0] < oldest[0][0]):
                oldest = waiting
        if oldest is None:
            return self.items.popleft()
        self.held -= 1
        self.limit += 1
        return oldest.popleft()[1]


class WorkerSlot:
    """One worker task: the group it serves now, and whether it holds a slot there."""

    __slots__ = ("bind", "group", "holding", "pool")

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.group: TypeGroup | None = None
        self.holding = False
        #: makes this slot current inside a publisher's context (propagate_context)
        self.bind = _bind_slot(self)


_current_slot: ContextVar[WorkerSlot | None] = ContextVar("eventcore_worker_slot", default=None)

_NOTHING: Any = object()
_NO_KEY: Any = object()
_LEAVE, _GENERAL, _STAY = "leave", "general", "stay"


class WorkerPool:
    """The worker tasks of every group, in one task group, and the line of ready groups."""

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
        #: groups with queued events and a free slot, each at most once
        self.ready: deque[TypeGroup] = deque()
        #: one wake-up event per parked worker
        self.parked: list[anyio.Event] = []
        #: workers spawned that have not started running yet
        self.starting = 0
        #: set once shutdown cancels the workers: no group is served any more
        self.stopping = False
        self.context = copy_context()
        self.cancelled: type[BaseException] = anyio.get_cancelled_exc_class()

    def schedule(self, group: TypeGroup) -> None:
        """Put *group* on the ready line (the caller checked it has work and a free slot)."""
        group.scheduled = True
        self.ready.append(group)
        self._call_worker()

    def kick(self, group: TypeGroup) -> None:
        """Make sure queued events of *group* have a worker coming, if a slot is free."""
        if group.items and group.workers < group.concurrency and not group.scheduled:
            self.schedule(group)

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

    def _next_group(self, slot: WorkerSlot) -> TypeGroup | None:
        """Take the next ready group and a slot in it."""
        ready = self.ready
        while ready and not self.stopping:
            group = ready.popleft()
            group.scheduled = False
            if not group.items or group.workers >= group.concurrency:
                continue  # served meanwhile
            group.workers += 1  # still <= concurrency: `attention` is unchanged
            slot.group = group
            slot.holding = True
            if len(group.items) > 1 and group.workers < group.concurrency:
                self.schedule(group)  # room for one more worker on this type
            elif ready:
                self._call_worker()  # other types wait: get a worker coming for them
            return group
        return None

    def _leave(self, group: TypeGroup, slot: WorkerSlot) -> None:
        """Give the slot in *group* back (if held) and reschedule what is left."""
        if slot.holding:
            slot.holding = False
            group.workers -= 1
            if group.attention:  # a lowered limit may be met now
                group.refresh()
            self.kick(group)
        if not group.items:
            self._quiet(group)

    def _attend(self, group: TypeGroup, slot: WorkerSlot) -> str:
        """Decide what a worker does when its group's ``attention`` flag is up."""
        if group.slot_waiters:
            # A handler that lent its slot wants it back: hand ours over.
            slot.holding = False
            group.slot_waiters.popleft().set()
            group.refresh()
            return _LEAVE
        if group.workers > group.concurrency:  # the limit was lowered
            return _LEAVE
        return _STAY if group.plain else _GENERAL

    def _quiet(self, group: TypeGroup) -> None:
        if not group.in_flight and not group.held and group.quiet is not None:
            group.quiet.set()
            group.quiet = None

    async def _run(self) -> None:
        """One worker task: serve ready groups, park when there are none."""
        self.starting -= 1
        slot = WorkerSlot(self)
        _current_slot.set(slot)
        try:
            while True:
                group = self._next_group(slot)
                if group is not None:
                    await self._serve(group, slot)
                elif not await self._park():
                    return
        finally:
            if slot.group is not None and slot.holding:
                slot.holding = False
                slot.group.workers -= 1
                slot.group.refresh()

    async def _serve(self, group: TypeGroup, slot: WorkerSlot) -> None:
        """The hot loop: handle *group*'s events until its queue is empty."""
        items = group.items
        putters = group.putters
        reporter = self.reporter
        cancelled = self.cancelled
        item = _NOTHING
        try:
            while True:
                if group.attention:
                    verdict = self._attend(group, slot)
                    if verdict is _LEAVE:
                        return
                    if verdict is _GENERAL:
                        await self._serve_general(group, slot)
                        return
                if not items:
                    return
                item = items.popleft()  # taken out only now that its handling starts
                if putters and len(items) <= group.low_water:
                    group.wake_putters()
                group.in_flight += 1
                if item.__class__ is Envelope:
                    await self.delivery.deliver(item, group, group.subs, None, None, slot.bind)
                else:
                    for handler, accepts in group.calls:
                        try:
                            if accepts is None or accepts(item):
                                await handler(item)
                        except Exception as exc:
                            group.failed += 1
                            reporter.handler_failed(item, handler, exc)
                        except cancelled as exc:
                            if is_own_cancellation():
                                raise
                            group.failed += 1
                            reporter.handler_failed(item, handler, exc)
                group.in_flight -= 1
                item = _NOTHING
        finally:
            if item is not _NOTHING:
                self._abandon_in_flight(group, item)
            self._leave(group, slot)

    async def _serve_general(self, group: TypeGroup, slot: WorkerSlot) -> None:
        """Handle *group*'s events through :class:`Delivery` until none is left for us."""
        items = group.items
        delivery = self.delivery
        held_key: Any = _NO_KEY
        item = _NOTHING
        try:
            while True:
                if held_key is _NO_KEY:
                    if group.attention:
                        verdict = self._attend(group, slot)
                        if verdict is _LEAVE:
                            return
                        if verdict is _STAY:  # plain again: back to the hot loop
                            await self._serve(group, slot)
                            return
                    if not items:
                        return
                    item = items.popleft()
                    group.wake_putter()
                    if group.key is not None:
                        key = self._key_of(group, item)
                        if key is _NO_KEY:  # the key function failed; reported
                            item = _NOTHING
                            continue
                        waiting = group.backlog.get(key)
                        if waiting is not None:  # another worker handles this key
                            waiting.append((next(group.held_order), item))
                            group.hold()
                            item = _NOTHING
                            continue
                        group.backlog[key] = deque()
                        held_key = key
                else:
                    waiting = group.backlog[held_key]
                    if not waiting:
                        del group.backlog[held_key]
                        held_key = _NO_KEY
                        continue
                    item = waiting.popleft()[1]
                    group.unhold()
                group.in_flight += 1
                await delivery.deliver(
                    item, group, group.subs, group.handler_timeout, group.retry, slot.bind
                )
                group.in_flight -= 1
                item = _NOTHING
        finally:
            if item is not _NOTHING:
                self._abandon_in_flight(group, item)
                item = _NOTHING

    def _key_of(self, group: TypeGroup, item: Any) -> Any:
        event = item.event if item.__class__ is Envelope else item
        try:
            return group.key(event)  # type: ignore[misc]  # checked by the caller
        except Exception as exc:
            group.failed += 1
            self.reporter.handler_failed(event, group.key, exc)  # type: ignore[arg-type]
            if item.__class__ is Envelope:
                item.finish()
            return _NO_KEY

    def _abandon_in_flight(self, group: TypeGroup, item: Any) -> None:
        group.in_flight -= 1
        group.abandoned += 1
        self.reporter.dropped(item, DropReason.SHUTDOWN)

    async def _park(self) -> bool:
        """Wait for a ready group; return False (retire) when enough workers are parked."""
        if len(self.parked) >= self.max_idle_workers:
            return False
        wake = anyio.Event()
        self.parked.append(wake)
        try:
            await wake.wait()
        finally:
            if not wake.is_set():
                self.parked.remove(wake)
        return True

    # -- deadlock escape -------------------------------------------------------------

    def begin_wait(self, target: TypeGroup) -> tuple[WorkerSlot | None, bool]:
        """Record that the current task is about to wait on *target*.

        :return: the caller's worker slot (None when the caller is not one of this
            pool's handlers) and whether the slot was lent out to avoid a deadlock
        """
        slot = _current_slot.get()
        if slot is None or slot.pool is not self or not slot.holding:
            return None, False
        group = slot.group
        assert group is not None
        group.blocked_on.append(target)
        if not self._closes_cycle(group, target):
            return slot, False
        group.blocked_on.remove(target)
        slot.holding = False
        group.workers -= 1
        group.refresh()
        self.kick(group)
        return slot, True

    async def end_wait(self, slot: WorkerSlot | None, target: TypeGroup, lent: bool) -> None:
        """Undo :meth:`begin_wait`; take a slot back if it was lent (waits for one if needed)."""
        if slot is None:
            return
        group = slot.group
        assert group is not None
        if not lent:
            group.blocked_on.remove(target)
            return
        if group.workers < group.concurrency:
            group.workers += 1
            slot.holding = True
            group.refresh()
            return
        handed = anyio.Event()
        group.slot_waiters.append(handed)
        group.refresh()  # a worker serving the group hands its slot over
        try:
            await handed.wait()
        except BaseException:
            if not handed.is_set():
                group.slot_waiters.remove(handed)
                group.refresh()
            else:  # we got a slot we will not use: give it back
                group.workers -= 1
                group.refresh()
                self.kick(group)
            raise
        slot.holding = True

    @staticmethod
    def _closes_cycle(origin: TypeGroup, target: TypeGroup) -> bool:
        """Whether waiting on *target* could wait, through stuck groups, on *origin*."""
        seen: set[int] = set()
        stack = [target]
        while stack:
            group = stack.pop()
            if id(group) in seen:
                continue
            seen.add(id(group))
            if len(group.blocked_on) < group.workers:
                continue  # some slot of this group is free to make progress
            if group is origin:
                return True
            stack.extend(group.blocked_on)
        return False


def _bind_slot(slot: WorkerSlot) -> Callable[[Context], None]:
    """Make the worker's slot visible inside a publisher's context (for the deadlock escape)."""

    def bind(context: Context) -> None:
        context.run(_current_slot.set, slot)

    return bind


def current_slot() -> WorkerSlot | None:
    """The worker slot of the current task, if it is an eventcore worker."""
    return _current_slot.get()
