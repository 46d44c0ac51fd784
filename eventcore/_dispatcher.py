"""The :class:`Dispatcher`: subscriptions, per-type settings, publishing, and the lifecycle."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, overload

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from ._channel import Overflow
from ._config import TypeConfig, check_timeout
from ._delivery import Outcome, Reporter, Tracked
from ._errors import (
    DispatcherClosed,
    InvalidConfiguration,
    InvalidEvent,
    PublishTimeout,
    QueueFull,
)
from ._registry import Registry, Subscription, check_handler
from ._stats import TypeStats
from ._types import DropHook, DropReason, E, ErrorHook, Filter, Handler, R
from ._workers import TypeGroup, WorkerPool, current_slot

logger = logging.getLogger("eventcore")


class _Phase(enum.Enum):
    NEW = "not started"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Dispatcher:
    """Routes events to async handlers through one bounded queue per event type.

    :param queue_size: default bound of each type's queue (see :meth:`configure`)
    :param concurrency: default number of handlers of one type that may run at once
    :param overflow: default policy when a queue is full
    :param shutdown_timeout: how long leaving ``async with`` waits for queued and
        in-flight events before cancelling them (they are then reported to
        ``on_drop`` with ``DropReason.SHUTDOWN``)
    :param on_error: ``on_error(event, handler, exception)``, called for every
        handler failure; without it failures are logged to the ``eventcore`` logger
    :param on_drop: ``on_drop(event, reason)``, called for every event lost to an
        overflow policy or to shutdown
    :param max_idle_workers: how many parked worker tasks to keep across all types;
        workers beyond it retire when their queue is empty and start again on demand
    """

    def __init__(
        self,
        *,
        queue_size: int = 1024,
        concurrency: int = 1,
        overflow: Overflow = Overflow.BLOCK,
        shutdown_timeout: float = 10.0,
        on_error: ErrorHook | None = None,
        on_drop: DropHook | None = None,
        max_idle_workers: int = 256,
    ) -> None:
        self._default = TypeConfig(queue_size, concurrency, overflow)
        check_timeout("shutdown_timeout", shutdown_timeout)
        if isinstance(max_idle_workers, bool) or not isinstance(max_idle_workers, int):
            raise InvalidConfiguration(
                f"max_idle_workers must be an int, got {max_idle_workers!r}"
            )
        if max_idle_workers < 0:
            raise InvalidConfiguration(f"max_idle_workers must be >= 0, got {max_idle_workers}")
        self.shutdown_timeout = shutdown_timeout
        self._max_idle_workers = max_idle_workers
        self._reporter = Reporter(on_error, on_drop)
        self._registry = Registry()
        self._configs: dict[type, TypeConfig] = {}
        self._groups: dict[type, TypeGroup] = {}
        self._phase = _Phase.NEW
        self._pool: WorkerPool | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None

    # -- subscriptions ---------------------------------------------------------------

    def subscribe(
        self,
        event_type: type[E],
        handler: Handler[E],
        *,
        filter: Filter[E] | None = None,
    ) -> Subscription[E]:
        """Call *handler* for every event of *event_type* or a subclass of it.

        Handlers of one event run one after another, in subscription order.

        :param filter: a predicate; the handler sees only events for which it is true
        :raises InvalidHandler: *handler* is not an ``async`` callable
        :return: the subscription; ``subscription.unsubscribe()`` ends it
        """
        if not isinstance(event_type, type):
            raise InvalidEvent(f"subscribe() takes an event class, got {event_type!r}")
        check_handler(handler)
        if filter is not None and not callable(filter):
            raise TypeError(f"filter must be a callable returning bool, got {filter!r}")
        subscription = Subscription(self, event_type, handler, filter)
        self._registry.add(subscription)
        self._subscriptions_changed()
        return subscription

    def on(
        self, event_type: type[E], *, filter: Filter[E] | None = None
    ) -> Callable[[Callable[[E], Awaitable[R]]], Callable[[E], Awaitable[R]]]:
        """Decorator form of :meth:`subscribe`; returns the handler unchanged."""

        def register(handler: Callable[[E], Awaitable[R]]) -> Callable[[E], Awaitable[R]]:
            self.subscribe(event_type, handler, filter=filter)
            return handler

        return register

    def unsubscribe(self, subscription: Subscription[Any]) -> None:
        """End *subscription*; queued events no longer reach it. Idempotent."""
        subscription.unsubscribe()

    def _subscriptions_changed(self) -> None:
        resolve = self._registry.resolve
        for event_class, group in self._groups.items():
            group.subs = resolve(event_class)

    # -- settings --------------------------------------------------------------------

    def configure(
        self,
        event_type: type,
        *,
        queue_size: int | None = None,
        concurrency: int | None = None,
        overflow: Overflow | None = None,
    ) -> None:
        """Set the queue bound, concurrency limit or overflow policy of *event_type*.

        The settings apply to *event_type* and to its subclasses that have no
        settings of their own; what is not given keeps its current value (the
        dispatcher's default at first). It may be called while running.

        :raises InvalidConfiguration: a value is out of range
        """
        if not isinstance(event_type, type):
            raise InvalidEvent(f"configure() takes an event class, got {event_type!r}")
        current = self.config(event_type)
        self._configs[event_type] = TypeConfig(
            current.queue_size if queue_size is None else queue_size,
            current.concurrency if concurrency is None else concurrency,
            current.overflow if overflow is None else overflow,
        )
        for event_class, group in self._groups.items():
            group.apply(self.config(event_class))
            if self._pool is not None:
                self._pool.kick(group)
                group.channel.wake_putter()

    def config(self, event_type: type) -> TypeConfig:
        """The settings in force for *event_type* (its own, its nearest configured base's,
        or the default)."""
        configs = self._configs
        for klass in event_type.__mro__:
            found = configs.get(klass)
            if found is not None:
                return found
        return self._default

    # -- publishing ------------------------------------------------------------------

    async def publish(self, event: object, *, timeout: float | None = None) -> bool:
        """Queue *event* for every handler of its type and supertypes.

        Returns as soon as the event is accepted, without yielding to the event loop
        unless the queue is full; what happens then is the type's overflow policy.

        :param timeout: under ``Overflow.BLOCK``, the longest wait for room
        :return: True when accepted; False when refused under ``DROP_NEWEST``
        :raises QueueFull: the queue is full under ``Overflow.RAISE``
        :raises PublishTimeout: no room appeared within *timeout* under ``BLOCK``
        :raises DispatcherClosed: the dispatcher is not running
        :raises InvalidEvent: *event* is None, a class, or a builtin value
        """
        group = self._groups.get(event.__class__)
        if group is None or self._phase is not _Phase.RUNNING:
            group = self._admit(event)
        items = group.items
        if len(items) < group.channel.maxsize:
            items.append(event)
            group.accepted += 1
            if group.idle:
                group.idle.pop().set()
            elif group.workers < group.concurrency:
                self._pool.spawn(group)  # type: ignore[union-attr]  # set while running
            return True
        return await self._put_full(group, event, timeout)

    def publish_nowait(self, event: object) -> bool:
        """Queue *event* without ever waiting (also callable from sync code on the loop).

        :return: True when accepted; False when refused under ``DROP_NEWEST``
        :raises QueueFull: the queue is full under ``BLOCK`` or ``RAISE``
        """
        group = self._admit(event)
        if group.channel.full():
            if group.channel.overflow is Overflow.BLOCK:
                group.refused += 1
                raise self._queue_full(group, "publish_nowait never waits")
            return self._overflow(group, event)
        self._enqueue(group, event)
        return True

    async def publish_and_wait(self, event: E, *, timeout: float | None = None) -> Outcome[E]:
        """Publish *event* and wait until every matching handler has run.

        :param timeout: under ``Overflow.BLOCK``, the longest wait for room (the
            handling itself is not timed)
        :return: the outcome: each handler's return value or exception, or the
            reason the event was dropped
        """
        group = self._admit(event)
        tracked = Tracked(event)
        if group.channel.full():
            if not await self._put_full(group, tracked, timeout):
                return Outcome(event, dropped=DropReason.DROPPED_NEWEST)
        else:
            self._enqueue(group, tracked)
        pool = self._pool
        assert pool is not None
        slot, lent = pool.begin_wait(group)
        try:
            await tracked.done.wait()
        finally:
            await pool.end_wait(slot, group, lent)
        assert tracked.outcome is not None
        return tracked.outcome

    def publish_threadsafe(self, event: object, *, timeout: float | None = None) -> bool:
        """Publish from a thread other than the event loop's; blocks that thread until
        the event is accepted (see :meth:`publish` for the result and errors).

        :raises DispatcherClosed: the dispatcher is not running
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
        return anyio.from_thread.run(self._publish_kw, event, timeout, token=token)

    async def _publish_kw(self, event: object, timeout: float | None) -> bool:
        return await self.publish(event, timeout=timeout)

    def _admit(self, event: object) -> TypeGroup:
        """The slow part of publish: check the event and the phase, create the group."""
        if self._phase is not _Phase.RUNNING and not (
            self._phase is _Phase.CLOSING and self._is_own_worker()
        ):
            raise DispatcherClosed(self._closed_message())
        event_class = event.__class__
        group = self._groups.get(event_class)
        if group is not None:
            return group
        if event is None or isinstance(event, type) or event_class.__module__ == "builtins":
            raise InvalidEvent(
                f"publish() takes an event: an instance of a class you define (a dataclass, "
                f"attrs class, pydantic model, ...), got {event!r} of type "
                f"{event_class.__qualname__}"
            )
        group = TypeGroup(
            event_class, self.config(event_class), self._registry.resolve(event_class)
        )
        self._groups[event_class] = group
        return group

    def _is_own_worker(self) -> bool:
        slot = current_slot()
        return slot is not None and slot.pool is self._pool

    def _closed_message(self) -> str:
        if self._phase is _Phase.NEW:
            return "the dispatcher is not running: publish inside `async with dispatcher:`"
        return f"the dispatcher is {self._phase.value}: it accepts no new events"

    def _enqueue(self, group: TypeGroup, item: object) -> None:
        group.items.append(item)
        group.accepted += 1
        assert self._pool is not None
        self._pool.kick(group)

    async def _put_full(self, group: TypeGroup, item: object, timeout: float | None) -> bool:
        """Apply the overflow policy to *item* arriving at *group*'s full queue."""
        channel = group.channel
        if channel.overflow is not Overflow.BLOCK:
            return self._overflow(group, item)
        check_timeout("timeout", timeout)
        pool = self._pool
        assert pool is not None
        slot, lent = pool.begin_wait(group)
        try:
            with anyio.fail_after(timeout):
                await channel.wait_for_room()
            if self._pool is None:  # woken by shutdown, not by room
                group.refused += 1
                raise DispatcherClosed(self._closed_message())
            self._enqueue(group, item)  # before any other await: the room is ours now
        except TimeoutError:
            group.refused += 1
            raise PublishTimeout(
                f"no room in the queue of {group.event_type.__qualname__} "
                f"(queue_size={channel.maxsize}) within {timeout} s: its handlers are not "
                "keeping up; raise queue_size or concurrency, or publish with a longer timeout",
                group.event_type,
            ) from None
        finally:
            await pool.end_wait(slot, group, lent)
        return True

    def _overflow(self, group: TypeGroup, item: object) -> bool:
        """The non-blocking policies for a full queue."""
        overflow = group.channel.overflow
        if overflow is Overflow.DROP_NEWEST:
            group.dropped += 1
            self._reporter.dropped(item, DropReason.DROPPED_NEWEST)
            return False
        if overflow is Overflow.DROP_OLDEST:
            oldest = group.items.popleft()
            group.evicted += 1
            self._enqueue(group, item)
            self._reporter.dropped(oldest, DropReason.EVICTED)
            return True
        group.refused += 1
        raise self._queue_full(group, "its overflow policy is RAISE")

    @staticmethod
    def _queue_full(group: TypeGroup, why: str) -> QueueFull:
        return QueueFull(
            f"the queue of {group.event_type.__qualname__} is full "
            f"(queue_size={group.channel.maxsize}) and {why}: its handlers are not keeping "
            "up; retry later, raise queue_size or concurrency, or choose another overflow policy",
            group.event_type,
        )

    # -- observing -------------------------------------------------------------------

    @overload
    def stats(self) -> Mapping[type, TypeStats]: ...
    @overload
    def stats(self, event_type: type) -> TypeStats: ...
    def stats(self, event_type: type | None = None) -> Mapping[type, TypeStats] | TypeStats:
        """Counters per concrete event type published so far, or for one type."""
        if event_type is not None:
            group = self._groups.get(event_type)
            if group is None:
                return TypeStats(event_type, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            return _snapshot(group)
        return {cls: _snapshot(group) for cls, group in self._groups.items()}

    @property
    def running(self) -> bool:
        """Whether the dispatcher accepts events from any task."""
        return self._phase is _Phase.RUNNING

    async def drain(self) -> None:
        """Wait until no event is queued or in flight, including follow-on events.

        :raises DispatcherClosed: the dispatcher was never started
        """
        if self._phase is _Phase.NEW:
            raise DispatcherClosed(self._closed_message())
        while True:
            busy = next((g for g in self._groups.values() if g.busy), None)
            if busy is None:
                return
            if busy.quiet is None:
                busy.quiet = anyio.Event()
            await busy.quiet.wait()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Dispatcher:
        if self._phase is _Phase.RUNNING or self._phase is _Phase.CLOSING:
            raise RuntimeError("this dispatcher is already running")
        async with AsyncExitStack() as stack:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            self._pool = WorkerPool(task_group, self._reporter, self._max_idle_workers)
            self._token = anyio.lowlevel.current_token()
            self._loop_thread = threading.get_ident()
            self._phase = _Phase.RUNNING
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, pool = self._exit_stack, self._pool
        assert stack is not None
        assert pool is not None
        self._phase = _Phase.CLOSING
        abandoned_before = sum(g.abandoned for g in self._groups.values())
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.shutdown_timeout):
                await self.drain()
            pool.task_group.cancel_scope.cancel()
            return await stack.__aexit__(exc_type, exc, tb)
        finally:
            self._phase = _Phase.CLOSED
            self._token = None
            self._pool = None
            self._exit_stack = None
            self._abandon_queued()
            lost = sum(g.abandoned for g in self._groups.values()) - abandoned_before
            if lost:
                logger.warning(
                    "shutdown_timeout (%s s) ran out: %d accepted event(s) were not handled "
                    "(counted as abandoned in stats(), passed to on_drop if set)",
                    self.shutdown_timeout,
                    lost,
                )

    def _abandon_queued(self) -> None:
        """Report every event still queued after shutdown; nothing is lost silently."""
        for group in self._groups.values():
            while group.channel.putters:  # blocked publishers get DispatcherClosed
                group.channel.wake_putter()
            while group.items:
                item = group.items.popleft()
                group.abandoned += 1
                self._reporter.dropped(item, DropReason.SHUTDOWN)
            group.workers = 0
            group.idle.clear()
            group.blocked_on.clear()
            group.slot_waiters.clear()


def _snapshot(group: TypeGroup) -> TypeStats:
    return TypeStats(
        event_type=group.event_type,
        accepted=group.accepted,
        dropped=group.dropped,
        refused=group.refused,
        evicted=group.evicted,
        queued=len(group.items),
        in_flight=group.in_flight,
        handled=group.handled,
        failed=group.failed,
        abandoned=group.abandoned,
    )
