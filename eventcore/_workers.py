"""Worker tasks per event type: the concurrency limit, lazy start, parking, and deadlock escape.

Each concrete event type has a :class:`TypeGroup`: its channel, its resolved
subscriptions, its counters, and up to ``concurrency`` worker *slots*. A worker
task holds one slot. Workers start only when the type has work, handle events
one after another without yielding between them (a handler's own awaits are the
only checkpoints), and park when the queue is empty. At most ``max_idle_workers``
workers stay parked across the whole dispatcher; the others retire, so 10,000
event types never mean 10,000 idle tasks.

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
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.abc

from ._channel import Channel
from ._config import TypeConfig
from ._delivery import Reporter, Tracked, deliver_tracked, is_own_cancellation
from ._registry import Subscription
from ._types import DropReason


class TypeGroup:
    """Everything the dispatcher keeps for one concrete event type."""

    __slots__ = (
        "abandoned",
        "accepted",
        "blocked_on",
        "channel",
        "concurrency",
        "dropped",
        "event_type",
        "evicted",
        "failed",
        "idle",
        "in_flight",
        "items",
        "quiet",
        "refused",
        "slot_waiters",
        "subs",
        "workers",
    )

    def __init__(
        self, event_type: type, config: TypeConfig, subs: tuple[Subscription[Any], ...]
    ) -> None:
        self.event_type = event_type
        self.channel = Channel(config.queue_size, config.overflow)
        self.items = self.channel.items
        self.concurrency = config.concurrency
        self.subs = subs
        #: worker slots taken (running, parked or about to start)
        self.workers = 0
        #: for each slot whose handler is blocked: the group it waits on
        self.blocked_on: list[TypeGroup] = []
        #: one wake-up event per parked worker
        self.idle: list[anyio.Event] = []
        #: handlers that lent their slot and want it back, first come first served
        self.slot_waiters: deque[anyio.Event] = deque()
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
        self.channel.maxsize = config.queue_size
        self.channel.overflow = config.overflow
        self.concurrency = config.concurrency

    @property
    def busy(self) -> bool:
        """Whether anything is queued or in flight."""
        return bool(self.items) or self.in_flight > 0

    @property
    def handled(self) -> int:
        """Accepted events whose delivery finished (derived, so the hot path counts less)."""
        return self.accepted - len(self.items) - self.in_flight - self.evicted - self.abandoned


class WorkerSlot:
    """The slot one worker task holds in its group, and whether it holds it right now."""

    __slots__ = ("group", "holding", "pool")

    def __init__(self, pool: WorkerPool, group: TypeGroup) -> None:
        self.pool = pool
        self.group = group
        self.holding = True


_current_slot: ContextVar[WorkerSlot | None] = ContextVar("eventcore_worker_slot", default=None)

_NOTHING: Any = object()


class WorkerPool:
    """Starts, parks and retires the worker tasks of every group, in one task group."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        reporter: Reporter,
        max_idle_workers: int,
    ) -> None:
        self.task_group = task_group
        self.reporter = reporter
        self.max_idle_workers = max_idle_workers
        self.idle_workers = 0
        self.cancelled: type[BaseException] = anyio.get_cancelled_exc_class()

    def spawn(self, group: TypeGroup) -> None:
        """Start one more worker for *group* (the caller checked the limit)."""
        group.workers += 1
        self.task_group.start_soon(
            self._run,
            group,
            WorkerSlot(self, group),
            name=f"eventcore:{group.event_type.__name__}",
        )

    def kick(self, group: TypeGroup) -> None:
        """Make sure queued events of *group* have a worker coming."""
        if group.idle:
            group.idle.pop().set()
        elif group.items and group.workers < group.concurrency:
            self.spawn(group)

    async def _run(self, group: TypeGroup, slot: WorkerSlot) -> None:
        _current_slot.set(slot)
        items = group.items
        putters = group.channel.putters
        reporter = self.reporter
        cancelled = self.cancelled
        item = _NOTHING
        try:
            while True:
                if group.slot_waiters:
                    # A handler that lent its slot wants it back: hand ours over, retire.
                    slot.holding = False
                    group.slot_waiters.popleft().set()
                    return
                if not items:
                    if not group.in_flight and group.quiet is not None:
                        group.quiet.set()
                        group.quiet = None
                    if await self._park(group, slot):
                        continue
                    return
                item = items.popleft()  # taken out only now that its handling starts
                if putters:
                    putters.popleft().set()
                group.in_flight += 1
                if item.__class__ is Tracked:
                    group.failed += await deliver_tracked(item, group.subs, reporter, cancelled)
                else:
                    for sub in group.subs:
                        try:
                            if sub.filter is None or sub.filter(item):
                                await sub.handler(item)
                        except Exception as exc:
                            group.failed += 1
                            reporter.handler_failed(item, sub.handler, exc)
                        except cancelled as exc:
                            if is_own_cancellation(exc):
                                raise
                            group.failed += 1
                            reporter.handler_failed(item, sub.handler, exc)
                group.in_flight -= 1
                item = _NOTHING
        finally:
            if item is not _NOTHING:
                group.in_flight -= 1
                group.abandoned += 1
                reporter.dropped(item, DropReason.SHUTDOWN)
            if slot.holding:
                slot.holding = False
                group.workers -= 1

    async def _park(self, group: TypeGroup, slot: WorkerSlot) -> bool:
        """Wait for work; return False (slot given up) when too many workers are parked."""
        if self.idle_workers >= self.max_idle_workers:
            slot.holding = False
            group.workers -= 1
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
            return
        handed = anyio.Event()
        group.slot_waiters.append(handed)
        if group.idle:  # a parked worker can hand its slot over at once
            group.idle.pop().set()
        try:
            await handed.wait()
        except BaseException:
            if not handed.is_set():
                group.slot_waiters.remove(handed)
            else:  # we got a slot we will not use: give it back
                group.workers -= 1
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


def current_slot() -> WorkerSlot | None:
    """The worker slot of the current task, if it is an eventcore worker."""
    return _current_slot.get()
