"""The :class:`Dispatcher`: subscriptions, per-type settings, publishing, and the lifecycle."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import AsyncExitStack
from contextvars import copy_context
from types import TracebackType
from typing import Any, overload

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from ._authorization import Policy, current_principal
from ._channel import Overflow
from ._config import Retry, TypeConfig, check_retry, check_timeout
from ._deadletters import DeadLetter, DeadLetterHook
from ._delivery import Delivery, Envelope, Outcome, Reporter
from ._errors import (
    DispatcherClosed,
    InvalidConfiguration,
    InvalidEvent,
    PublishTimeout,
    QueueFull,
    Unauthorized,
)
from ._middleware import HandleMiddleware, PublishMiddleware, apply_publish_chain
from ._registry import Registry, Subscription, check_handler
from ._stats import TypeStats
from ._types import DropHook, DropReason, E, ErrorHook, Filter, Handler, Lifecycle, R
from ._wire.names import EventName, EventNames
from ._workers import TypeGroup, WorkerPool, current_slot

logger = logging.getLogger("eventcore")


class _Phase(enum.Enum):
    NEW = "not started"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


#: the member itself: reading ``_Phase.RUNNING`` costs ~130 ns on Python 3.11,
#: too much for every publish
_RUNNING = _Phase.RUNNING


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET
"""Marks an argument that was not given (where None means something)."""


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
        overflow policy, a publish middleware or shutdown
    :param on_dead_letter: ``on_dead_letter(DeadLetter)``, called for every event
        that was not handled; subscribing to :class:`DeadLetter` receives them too
    :param dead_letter_unmatched: also dead-letter events that no subscription matched
    :param publish_middleware: run in order on every event before it is queued
        (see ``eventcore._middleware``)
    :param handle_middleware: wrap every handler call, the first outermost
    :param policy: an authorization policy; once installed, everything not
        allowed is denied (see :class:`Grants`)
    :param propagate_context: run handlers in a copy of the publisher's
        ``contextvars`` (request ids, trace context); costs a little per event
    :param slow_handler_threshold: log a warning for every handler call running
        longer than this many seconds
    :param on_lifecycle: ``on_lifecycle(Lifecycle)``, called when the dispatcher
        has started, starts draining, and has stopped
    :param max_idle_workers: how many idle worker tasks to keep parked; the pool
        of workers is shared by all types, grows while types wait for one, and
        workers beyond this number retire when there is no work
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
        on_dead_letter: DeadLetterHook | None = None,
        dead_letter_unmatched: bool = False,
        publish_middleware: Sequence[PublishMiddleware] = (),
        handle_middleware: Sequence[HandleMiddleware] = (),
        policy: Policy | None = None,
        propagate_context: bool = False,
        slow_handler_threshold: float | None = None,
        on_lifecycle: Callable[[Lifecycle], object] | None = None,
        max_idle_workers: int = 256,
    ) -> None:
        self._default = TypeConfig(queue_size, concurrency, overflow)
        check_timeout("shutdown_timeout", shutdown_timeout)
        check_timeout("slow_handler_threshold", slow_handler_threshold)
        if slow_handler_threshold == 0:
            raise InvalidConfiguration("slow_handler_threshold must be > 0 or None")
        if isinstance(max_idle_workers, bool) or not isinstance(max_idle_workers, int):
            raise InvalidConfiguration(
                f"max_idle_workers must be an int, got {max_idle_workers!r}"
            )
        if max_idle_workers < 0:
            raise InvalidConfiguration(f"max_idle_workers must be >= 0, got {max_idle_workers}")
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidConfiguration(
                f"policy must have may_publish() and may_receive() methods, got {policy!r}"
            )
        self.shutdown_timeout = shutdown_timeout
        self._max_idle_workers = max_idle_workers
        self._slow_handler_threshold = slow_handler_threshold
        self._on_lifecycle = on_lifecycle
        self._publish_chain: tuple[PublishMiddleware, ...] = ()
        self._policy = policy
        self._propagate_context = propagate_context
        self._reporter = Reporter(on_error, on_drop, on_dead_letter)
        self._reporter.dead_letter_sink = self._queue_dead_letter
        self._delivery = Delivery(
            self._reporter, dead_letter_unmatched, track_calls=slow_handler_threshold is not None
        )
        self._dead_letter_unmatched = dead_letter_unmatched
        self._registry = Registry()
        self._names = EventNames()
        self._configs: dict[type, TypeConfig] = {}
        self._groups: dict[type, TypeGroup] = {}
        #: the groups publish may use without the slow path: empty unless running with
        #: nothing to do on the way in (see _open_fast_path)
        self._fast: dict[type, TypeGroup] = {}
        self._slow_publish = False
        self._full_delivery = False
        self._envelope_all = False
        self._phase = _Phase.NEW
        self.use(publish=publish_middleware, handle=handle_middleware)
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
        timeout: float | None = None,
        retry: Retry | None = None,
        principal: Hashable | None = None,
    ) -> Subscription[E]:
        """Call *handler* for every event of *event_type* or a subclass of it.

        Handlers of one event run one after another, in subscription order.

        :param filter: a predicate; the handler sees only events for which it is true
        :param timeout: cancel a call after this many seconds (a ``HandlerTimeout``
            failure); default: the type's ``handler_timeout``
        :param retry: retry failed calls (see :class:`Retry`); default: the type's
        :param principal: who subscribes, for the authorization policy
        :raises InvalidHandler: *handler* is not an ``async`` callable
        :return: the subscription; ``subscription.unsubscribe()`` ends it
        """
        if not isinstance(event_type, type):
            raise InvalidEvent(f"subscribe() takes an event class, got {event_type!r}")
        check_handler(handler)
        if filter is not None and not callable(filter):
            raise TypeError(f"filter must be a callable returning bool, got {filter!r}")
        check_timeout("timeout", timeout)
        check_retry(retry)
        subscription = Subscription(
            self, event_type, handler, filter, timeout=timeout, retry=retry, principal=principal
        )
        self._registry.add(subscription)
        self._subscriptions_changed()
        return subscription

    def on(
        self,
        event_type: type[E],
        *,
        filter: Filter[E] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        principal: Hashable | None = None,
    ) -> Callable[[Callable[[E], Awaitable[R]]], Callable[[E], Awaitable[R]]]:
        """Decorator form of :meth:`subscribe`; returns the handler unchanged."""

        def register(handler: Callable[[E], Awaitable[R]]) -> Callable[[E], Awaitable[R]]:
            self.subscribe(
                event_type, handler, filter=filter, timeout=timeout, retry=retry,
                principal=principal,
            )  # fmt: skip
            return handler

        return register

    def unsubscribe(self, subscription: Subscription[Any]) -> None:
        """End *subscription*; queued events no longer reach it. Idempotent."""
        subscription.unsubscribe()

    def _subscriptions_changed(self) -> None:
        for group in self._groups.values():
            self._refresh(group)

    def _refresh(self, group: TypeGroup) -> None:
        """Resolve *group*'s subscriptions (with the policy) and whether it is plain."""
        subs = self._registry.resolve(group.event_type)
        policy = self._policy
        if policy is not None:
            subs = tuple(s for s in subs if policy.may_receive(s.principal, group.event_type))
        group.subs = subs
        group.calls = tuple((s.handler, s.filter) for s in subs)
        group.plain = not (
            self._full_delivery
            or group.key is not None
            or group.handler_timeout is not None
            or group.retry is not None
            or any(s.timeout is not None or s.retry is not None for s in subs)
        )
        group.refresh()

    # -- settings --------------------------------------------------------------------

    def use(
        self,
        *,
        publish: Sequence[PublishMiddleware] = (),
        handle: Sequence[HandleMiddleware] = (),
    ) -> Installed:
        """Add publish and/or handle middleware after the ones already installed.

        Same as the constructor's ``publish_middleware`` / ``handle_middleware``
        (see ``eventcore._middleware``); takes effect for events published from now on.

        :return: a handle whose ``remove()`` takes exactly these middleware out again
        """
        for name, chain in (("publish", publish), ("handle", handle)):
            if not all(callable(m) for m in chain):
                raise InvalidConfiguration(f"{name} middleware must be a sequence of callables")
        installed = Installed(self, tuple(publish), tuple(handle))
        self._publish_chain += installed.publish
        self._delivery.handle_chain += installed.handle
        self._settle()
        return installed

    def _remove_middleware(self, installed: Installed) -> None:
        self._publish_chain = _without(self._publish_chain, installed.publish)
        self._delivery.handle_chain = _without(self._delivery.handle_chain, installed.handle)
        self._settle()

    @property
    def propagate_context(self) -> bool:
        """Whether handlers run in a copy of the publisher's ``contextvars``.

        Settable at any time (integrations turn it on); applies to events published
        from then on.
        """
        return self._propagate_context

    @propagate_context.setter
    def propagate_context(self, value: bool) -> None:
        self._propagate_context = bool(value)
        self._settle()

    def subscriptions(self) -> tuple[Subscription[Any], ...]:
        """Every active subscription, in subscription order."""
        return self._registry.all()

    def configured_types(self) -> tuple[type, ...]:
        """The event types given settings of their own with :meth:`configure`."""
        return tuple(self._configs)

    def register(
        self,
        event_type: type,
        *,
        name: str | None = None,
        version: int | None = None,
        min_version: int = 1,
    ) -> EventName:
        """Give *event_type* its stable name on the wire (see :mod:`eventcore.wire`).

        :param name: e.g. ``"orders.placed"``; default: the ``@event`` name, else
            ``module.QualName`` with an ``EventNameWarning`` (renaming the class
            would then break consumers)
        :param version: the version this process writes; default: ``@event``'s, else 1
        :param min_version: the oldest version this process still reads
        :raises InvalidEventName: the name is not dot-separated tokens of
            ``[A-Za-z0-9_-]`` (what NATS subjects and Redis keys accept)
        :raises DuplicateEventName: the name is taken, or the type has another one
        """
        return self._names.register(
            event_type, name=name, version=version, min_version=min_version
        )

    @property
    def names(self) -> EventNames:
        """The registry of event names: what codecs, transports and catalogs use."""
        return self._names

    def _settle(self) -> None:
        """Decide which paths publish and delivery take, from the features in use."""
        handle_chain = bool(self._delivery.handle_chain)
        #: every event travels in an Envelope (its id, time, context)
        self._envelope_all = handle_chain or self._propagate_context
        #: every type needs the full delivery path
        self._full_delivery = (
            handle_chain or self._dead_letter_unmatched or self._slow_handler_threshold is not None
        )
        self._slow_publish = (
            bool(self._publish_chain) or self._policy is not None or self._envelope_all
        )
        self._open_fast_path()
        self._subscriptions_changed()

    def _open_fast_path(self) -> None:
        """Let publish skip its checks only while running with nothing to do on the way in
        (one dict lookup then decides both: no phase test on the hot path)."""
        fast = self._phase is _RUNNING and not self._slow_publish
        self._fast = self._groups if fast else {}

    def configure(
        self,
        event_type: type,
        *,
        queue_size: int | None = None,
        concurrency: int | None = None,
        overflow: Overflow | None = None,
        key: Callable[[Any], Hashable] | _Unset | None = UNSET,
        handler_timeout: float | _Unset | None = UNSET,
        retry: Retry | _Unset | None = UNSET,
    ) -> None:
        """Set how events of *event_type* are queued and handled.

        The settings apply to *event_type* and to its subclasses that have no
        settings of their own; what is not given keeps its current value (the
        dispatcher's default at first). It may be called while running.

        :param queue_size: how many accepted events may wait (the backpressure bound)
        :param concurrency: how many handler calls of this type may run at once
        :param overflow: what a publish into the full queue does
        :param key: ``key(event)``: events with equal keys are handled one at a time
            in accepted order, different keys concurrently (None: no key)
        :param handler_timeout: default ``timeout`` of the type's subscriptions
        :param retry: default ``retry`` of the type's subscriptions
        :raises InvalidConfiguration: a value is out of range
        """
        if not isinstance(event_type, type):
            raise InvalidEvent(f"configure() takes an event class, got {event_type!r}")
        current = self.config(event_type)
        self._configs[event_type] = TypeConfig(
            current.queue_size if queue_size is None else queue_size,
            current.concurrency if concurrency is None else concurrency,
            current.overflow if overflow is None else overflow,
            current.key if key is UNSET else key,
            current.handler_timeout if handler_timeout is UNSET else handler_timeout,
            current.retry if retry is UNSET else retry,
        )
        for event_class, group in self._groups.items():
            group.apply(self.config(event_class))
            self._refresh(group)
            if self._pool is not None:
                self._pool.kick(group)

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

    async def publish(
        self,
        event: object,
        *,
        timeout: float | None = None,
        principal: Hashable | _Unset | None = UNSET,
    ) -> bool:
        """Queue *event* for every handler of its type and supertypes.

        Returns as soon as the event is accepted, without yielding to the event loop
        unless the queue is full; what happens then is the type's overflow policy.

        :param timeout: under ``Overflow.BLOCK``, the longest wait for room
        :param principal: who publishes, for the authorization policy (default:
            the one set by :func:`acting_as`)
        :return: True when accepted; False when refused under ``DROP_NEWEST`` or by
            a publish middleware
        :raises QueueFull: the queue is full under ``Overflow.RAISE``
        :raises PublishTimeout: no room appeared within *timeout* under ``BLOCK``
        :raises Unauthorized: the policy does not let *principal* publish this type
        :raises DispatcherClosed: the dispatcher is not running
        :raises InvalidEvent: *event* is None, a class, or a builtin value
        """
        group = self._fast.get(event.__class__)
        if group is None:  # a new type, not running, or middleware/policy/context to apply
            prepared = self._prepare(event, principal, tracked=False)
            if prepared is None:
                return False
            group, event = prepared
            if group.full():
                return await self._put_full(group, event, timeout)
            self._enqueue(group, event)
            return True
        items = group.items
        if len(items) < group.limit:
            items.append(event)
            group.accepted += 1
            if group.workers < group.concurrency and not group.scheduled:
                self._pool.schedule(group)  # type: ignore[union-attr]  # set while running
            return True
        return await self._put_full(group, event, timeout)

    def publish_nowait(
        self, event: object, *, principal: Hashable | _Unset | None = UNSET
    ) -> bool:
        """Queue *event* without ever waiting (also callable from sync code on the loop).

        :return: True when accepted; False when refused under ``DROP_NEWEST`` or by
            a publish middleware
        :raises QueueFull: the queue is full under ``BLOCK`` or ``RAISE``
        """
        prepared = self._prepare(event, principal, tracked=False)
        if prepared is None:
            return False
        group, item = prepared
        if group.full():
            if group.overflow is Overflow.BLOCK:
                group.refused += 1
                raise self._queue_full(group, "publish_nowait never waits")
            return self._overflow(group, item)
        self._enqueue(group, item)
        return True

    async def publish_and_wait(
        self,
        event: E,
        *,
        timeout: float | None = None,
        principal: Hashable | _Unset | None = UNSET,
        raise_errors: bool = False,
    ) -> Outcome[E]:
        """Publish *event* and wait until every matching handler has run.

        :param timeout: under ``Overflow.BLOCK``, the longest wait for room (the
            handling itself is not timed)
        :param raise_errors: raise an ``ExceptionGroup`` of the handlers' exceptions
            instead of returning them in the outcome
        :return: the outcome: each handler's return value or exception, or the
            reason the event was dropped
        """
        prepared = self._prepare(event, principal, tracked=True)
        if prepared is None:
            return Outcome(event, dropped=DropReason.REJECTED)
        group, envelope = prepared
        assert isinstance(envelope, Envelope)
        assert envelope.done is not None
        if group.full():
            await self._put_full(group, envelope, timeout)  # a drop finishes the envelope
        else:
            self._enqueue(group, envelope)
        pool = self._pool
        assert pool is not None
        slot, lent = pool.begin_wait(group)
        try:
            await envelope.done.wait()
        finally:
            await pool.end_wait(slot, group, lent)
        outcome: Outcome[E] | None = envelope.outcome
        assert outcome is not None
        if raise_errors:
            outcome.raise_for_failures()
        return outcome

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

    def _prepare(
        self, event: object, principal: Hashable | _Unset | None, tracked: bool
    ) -> tuple[TypeGroup, Any] | None:
        """The slow part of publish: phase, middleware, validation, authorization, envelope.

        :return: the group and the item to queue, or None when a middleware refused it
        """
        if self._phase is not _Phase.RUNNING and not (
            self._phase is _Phase.CLOSING and self._is_own_worker()
        ):
            raise DispatcherClosed(self._closed_message())
        if self._publish_chain:
            original = event
            event = apply_publish_chain(self._publish_chain, event)
            if event is None:
                group = self._group_for(original)
                group.dropped += 1
                self._reporter.dropped(original, DropReason.REJECTED)
                return None
        group = self._group_for(event)
        policy = self._policy
        if policy is not None:
            who = current_principal() if principal is UNSET else principal
            if not policy.may_publish(who, group.event_type):
                group.refused += 1
                raise Unauthorized(
                    f"{who!r} may not publish {group.event_type.__qualname__}: the "
                    "authorization policy does not allow it (everything not granted is denied)",
                    who,
                    group.event_type,
                )
        if tracked or self._envelope_all:
            context = copy_context() if self._propagate_context else None
            stamped = bool(self._delivery.handle_chain)
            return group, Envelope(event, context, tracked, stamped)
        return group, event

    def _group_for(self, event: object) -> TypeGroup:
        """The group of *event*'s class, created on first use; refuses non-events."""
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
        group = TypeGroup(event_class, self.config(event_class))
        self._refresh(group)
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

    def _queue_dead_letter(self, letter: DeadLetter) -> None:
        """Queue *letter* for DeadLetter subscribers, never waiting (it may come from a worker)."""
        if self._pool is None or not self._registry.resolve(DeadLetter):
            return
        group = self._group_for(letter)
        if not group.full():
            self._enqueue(group, letter)
        elif group.overflow is Overflow.BLOCK or group.overflow is Overflow.RAISE:
            group.refused += 1
            logger.error(
                "the DeadLetter queue is full (queue_size=%d): a dead letter of %s was not queued",
                group.maxsize,
                type(letter.event).__qualname__,
            )
        else:
            self._overflow(group, letter)

    async def _put_full(self, group: TypeGroup, item: object, timeout: float | None) -> bool:
        """Apply the overflow policy to *item* arriving at *group*'s full queue."""
        if group.overflow is not Overflow.BLOCK:
            return self._overflow(group, item)
        check_timeout("timeout", timeout)
        pool = self._pool
        assert pool is not None
        slot, lent = pool.begin_wait(group)
        try:
            if timeout is None:  # no cancel scope where none is needed
                await group.wait_for_room()
            else:
                with anyio.fail_after(timeout):
                    await group.wait_for_room()
            if self._pool is None:  # woken by shutdown, not by room
                group.refused += 1
                raise DispatcherClosed(self._closed_message())
            self._enqueue(group, item)  # before any other await: the room is ours now
        except TimeoutError:
            group.refused += 1
            raise PublishTimeout(
                f"no room in the queue of {group.event_type.__qualname__} "
                f"(queue_size={group.maxsize}) within {timeout} s: its handlers are not "
                "keeping up; raise queue_size or concurrency, or publish with a longer timeout",
                group.event_type,
            ) from None
        finally:
            await pool.end_wait(slot, group, lent)
        return True

    def _overflow(self, group: TypeGroup, item: object) -> bool:
        """The non-blocking policies for a full queue."""
        overflow = group.overflow
        if overflow is Overflow.DROP_NEWEST:
            group.dropped += 1
            self._reporter.dropped(item, DropReason.DROPPED_NEWEST)
            return False
        if overflow is Overflow.DROP_OLDEST:
            oldest = group.evict_oldest()
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
            f"(queue_size={group.maxsize}) and {why}: its handlers are not keeping "
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
            self._pool = WorkerPool(
                task_group, self._reporter, self._delivery, self._max_idle_workers
            )
            if self._slow_handler_threshold is not None:
                task_group.start_soon(
                    self._delivery.watch_slow_handlers, self._slow_handler_threshold
                )
            self._token = anyio.lowlevel.current_token()
            self._loop_thread = threading.get_ident()
            self._phase = _Phase.RUNNING
            self._open_fast_path()
            self._exit_stack = stack.pop_all()
        self._lifecycle(Lifecycle.STARTED)
        return self

    def _lifecycle(self, phase: Lifecycle) -> None:
        logger.debug("dispatcher %s", phase.value)
        if self._on_lifecycle is not None:
            try:
                self._on_lifecycle(phase)
            except Exception:
                logger.exception("on_lifecycle hook failed (%s)", phase.value)

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
        self._open_fast_path()
        self._lifecycle(Lifecycle.DRAINING)
        abandoned_before = sum(g.abandoned for g in self._groups.values())
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.shutdown_timeout):
                await self.drain()
            pool.stopping = True
            pool.task_group.cancel_scope.cancel()
            return await stack.__aexit__(exc_type, exc, tb)
        finally:
            self._phase = _Phase.CLOSED
            self._open_fast_path()
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
            self._lifecycle(Lifecycle.STOPPED)

    def _abandon_queued(self) -> None:
        """Report every event still queued after shutdown; nothing is lost silently."""
        for group in self._groups.values():
            while group.putters:  # blocked publishers get DispatcherClosed
                group.wake_putter()
            for item in group.abandon_all():
                self._reporter.dropped(item, DropReason.SHUTDOWN)
            group.workers = 0
            group.scheduled = False
            group.blocked_on.clear()
            group.slot_waiters.clear()
            group.refresh()


class Installed:
    """Middleware added by :meth:`Dispatcher.use`; ``remove()`` takes it out again."""

    __slots__ = ("_owner", "handle", "publish")

    def __init__(
        self,
        owner: Dispatcher,
        publish: tuple[PublishMiddleware, ...],
        handle: tuple[HandleMiddleware, ...],
    ) -> None:
        self._owner: Dispatcher | None = owner
        self.publish = publish
        self.handle = handle

    def remove(self) -> None:
        """Take these middleware out (events already queued keep their envelope). Idempotent."""
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._remove_middleware(self)


def _without(chain: tuple[Any, ...], removed: tuple[Any, ...]) -> tuple[Any, ...]:
    """*chain* without one occurrence of each of *removed* (by identity)."""
    kept = list(chain)
    for item in removed:
        for index, present in enumerate(kept):
            if present is item:
                del kept[index]
                break
    return tuple(kept)


def _snapshot(group: TypeGroup) -> TypeStats:
    return TypeStats(
        event_type=group.event_type,
        accepted=group.accepted,
        dropped=group.dropped,
        refused=group.refused,
        evicted=group.evicted,
        queued=group.queued,
        in_flight=group.in_flight,
        handled=group.handled,
        failed=group.failed,
        abandoned=group.abandoned,
    )
