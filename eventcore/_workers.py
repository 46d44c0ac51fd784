"""Worker tasks per event type: the concurrency limit, per-key order, parking, deadlock escape.

Each concrete event type has a :class:`TypeGroup`: its channel, its resolved
subscriptions, its counters, and up to ``concurrency`` worker *slots*. A worker
task holds one slot. Workers start only when the type has work, handle events
one after another without yielding between them (a handler's own awaits are the
only checkpoints), and park when the queue is empty. At most ``max_idle_workers``
workers stay parked across the whole dispatcher; the others retire, so 10,000
event types never mean 10,000 idle tasks.

A type that needs nothing beyond calling its handlers is *plain*: its workers
call them inline. Otherwise (a key, timeouts, retries, middleware, context) its
workers run :meth:`WorkerPool._run_general`, which hands each event to
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
lends its slot: its type may start another worker to drain the queue, and the
handler takes a slot back, ahead of new events, when its wait is over. Like a
fork-join pool's compensation thread, this keeps ``concurrency`` as the limit
on handlers that are *running*; one suspended in such a wait is not running.
"""

from __future__ import annotations

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


class TypeGroup:
    """Everything the dispatcher keeps for one concrete event type."""

    __slots__ = (
        "abandoned",
        "accepted",
        "attention",
        "backlog",
        "blocked_on",
        "channel",
        "concurrency",
        "dropped",
        "event_type",
        "evicted",
        "failed",
        "handler_timeout",
        "idle",
        "in_flight",
        "items",
        "key",
        "plain",
        "quiet",
        "refused",
        "retry",
        "slot_waiters",
        "subs",
        "workers",
    )

    def __init__(self, event_type: type, config: TypeConfig) -> None:
        self.event_type = event_type
        self.channel = Channel(config.queue_size, config.overflow)
        self.items = self.channel.items
        self.concurrency = config.concurrency
        self.key: Callable[[Any], Hashable] | None = config.key
        self.handler_timeout: float | None = config.handler_timeout
        self.retry: Retry | None = config.retry
        self.subs: tuple[Subscription[Any], ...] = ()
        #: whether workers may call handlers inline (see the module docstring)
        self.plain = True
        #: whether workers must look at slot_waiters, the limit or `plain` (see refresh)
        self.attention = False
        #: worker slots taken (running, parked or about to start)
        self.workers = 0
        #: for each slot whose handler is blocked: the group it waits on
        self.blocked_on: list[TypeGroup] = []
        #: one wake-up event per parked worker
        self.idle: list[anyio.Event] = []
        #: handlers that lent their slot and want it back, first come first served
        self.slot_waiters: deque[anyio.Event] = deque()
        #: events waiting behind an earlier event with the same key
        self.backlog: dict[Hashable, deque[Any]] = {}
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
        self.channel.resize(config.queue_size)
        self.channel.overflow = config.overflow
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
        return bool(self.items) or self.in_flight > 0 or self.channel.held > 0

    @property
    def handled(self) -> int:
        """Accepted events whose delivery finished (derived, so the hot path counts less)."""
        return self.accepted - self.channel.queued - self.in_flight - self.evicted - self.abandoned

    def abandon_all(self) -> list[Any]:
        """Take every waiting event out (at shutdown) and count it abandoned."""
        lost = list(self.items)
        self.items.clear()
        for waiting in self.backlog.values():
            lost.extend(waiting)
        self.backlog.clear()
        self.channel.held = 0
        self.channel.limit = self.channel.maxsize
        self.abandoned += len(lost)
        return lost

    def evict_oldest(self) -> Any:
        """Take the oldest waiting event out (DROP_OLDEST)."""
        if self.items:
            return self.items.popleft()
        for waiting in self.backlog.values():  # everything waits behind keys
            if waiting:
                self.channel.held -= 1
                self.channel.limit += 1
                return waiting.popleft()
        raise AssertionError("evict_oldest on an empty queue")  # pragma: no cover


class WorkerSlot:
    """The slot one worker task holds in its group, and whether it holds it right now."""

    __slots__ = ("group", "holding", "pool")

    def __init__(self, pool: WorkerPool, group: TypeGroup) -> None:
        self.pool = pool
        self.group = group
        self.holding = True


_current_slot: ContextVar[WorkerSlot | None] = ContextVar("eventcore_worker_slot", default=None)

_NOTHING: Any = object()
_NO_KEY: Any = object()
_LEAVE, _GENERAL, _STAY = "leave", "general", "stay"


class WorkerPool:
    """Starts, parks and retires the worker tasks of every group, in one task group."""

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
        self.idle_workers = 0
        self.context = copy_context()
        self.cancelled: type[BaseException] = anyio.get_cancelled_exc_class()

    def spawn(self, group: TypeGroup) -> None:
        """Start one more worker for *group* (the caller checked the limit)."""
        group.workers += 1
        # Workers start in the dispatcher's context, not in the publisher's that
        # happened to need them (propagate_context carries that per event instead).
        self.context.run(self._start, group)

    def _start(self, group: TypeGroup) -> None:
        name = f"eventcore:{group.event_type.__qualname__}"
        self.task_group.start_soon(self._run, group, WorkerSlot(self, group), name=name)

    def kick(self, group: TypeGroup) -> None:
        """Make sure queued events of *group* have a worker coming."""
        if group.idle:
            group.idle.pop().set()
        elif group.items and group.workers < group.concurrency:
            self.spawn(group)

    def _attend(self, group: TypeGroup, slot: WorkerSlot) -> str:
        """Decide what a worker does when its group's ``attention`` flag is up."""
        if group.slot_waiters:
            # A handler that lent its slot wants it back: hand ours over and retire.
            slot.holding = False
            group.slot_waiters.popleft().set()
            group.refresh()
            return _LEAVE
        if group.workers > group.concurrency:  # the limit was lowered
            slot.holding = False
            group.workers -= 1
            group.refresh()
            return _LEAVE
        return _STAY if group.plain else _GENERAL

    def _quiet(self, group: TypeGroup) -> None:
        if not group.in_flight and not group.channel.held and group.quiet is not None:
            group.quiet.set()
            group.quiet = None

    async def _run(self, group: TypeGroup, slot: WorkerSlot) -> None:
        """The hot loop: handlers of a plain group are called inline."""
        _current_slot.set(slot)
        items = group.items
        putters = group.channel.putters
        reporter = self.reporter
        cancelled = self.cancelled
        bind = _bind_slot(slot)
        item = _NOTHING
        try:
            while True:
                if group.attention:
                    verdict = self._attend(group, slot)
                    if verdict is _LEAVE:
                        return
                    if verdict is _GENERAL:
                        if await self._run_general(group, slot):
                            continue
                        return
                if not items:
                    self._quiet(group)
                    if await self._park(group, slot):
                        continue
                    return
                item = items.popleft()  # taken out only now that its handling starts
                if putters:
                    putters.popleft().set()
                group.in_flight += 1
                if item.__class__ is Envelope:
                    group.failed += await self.delivery.deliver(item, group.subs, None, None, bind)
                else:
                    for sub in group.subs:
                        try:
                            if sub.filter is None or sub.filter(item):
                                await sub.handler(item)
                        except Exception as exc:
                            group.failed += 1
                            reporter.handler_failed(item, sub.handler, exc)
                        except cancelled as exc:
                            if is_own_cancellation():
                                raise
                            group.failed += 1
                            reporter.handler_failed(item, sub.handler, exc)
                group.in_flight -= 1
                item = _NOTHING
        finally:
            if item is not _NOTHING:
                self._abandon_in_flight(group, item)
            if slot.holding:
                slot.holding = False
                group.workers -= 1
                group.refresh()

    async def _run_general(self, group: TypeGroup, slot: WorkerSlot) -> bool:
        """Handle events through :class:`Delivery` until the group is plain again.

        :return: True to go back to the hot loop, False when the worker leaves
        """
        items = group.items
        channel = group.channel
        delivery = self.delivery
        bind = _bind_slot(slot)
        held_key: Any = _NO_KEY
        item = _NOTHING
        try:
            while True:
                if held_key is _NO_KEY:
                    if group.attention:
                        verdict = self._attend(group, slot)
                        if verdict is not _GENERAL:
                            return verdict is _STAY
                    if not items:
                        self._quiet(group)
                        if await self._park(group, slot):
                            continue
                        return False
                    item = items.popleft()
                    channel.wake_putter()
                    if group.key is not None:
                        key = self._key_of(group, item)
                        if key is _NO_KEY:  # the key function failed; reported
                            item = _NOTHING
                            continue
                        waiting = group.backlog.get(key)
                        if waiting is not None:  # another worker handles this key
                            waiting.append(item)
                            channel.hold()
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
                    item = waiting.popleft()
                    channel.unhold()
                group.in_flight += 1
                group.failed += await delivery.deliver(
                    item, group.subs, group.handler_timeout, group.retry, bind
                )
                group.in_flight -= 1
                item = _NOTHING
        finally:
            if item is not _NOTHING:
                self._abandon_in_flight(group, item)

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

    async def _park(self, group: TypeGroup, slot: WorkerSlot) -> bool:
        """Wait for work; return False (slot given up) when too many workers are parked."""
        if self.idle_workers >= self.max_idle_workers:
            slot.holding = False
            group.workers -= 1
            group.refresh()
            return False
        wake = anyio.Event()
        group.idle.append(wake)
        self.idle_workers += 1
        try:
            await wake.wait()
        finally:
            self.idle_workers -= 1
            if not wake.is_set():
                group.idle.remove(wake)
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
        group.refresh()
        if group.idle:  # a parked worker can hand its slot over at once
            group.idle.pop().set()
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
