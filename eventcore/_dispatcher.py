"""The :class:`Dispatcher`: the facade over subscriptions, settings, publishing and life.

Publishing lives in ``_publishing``, the lifecycle and the thread bridge in
``_lifecycle``, the state of each type in ``_state`` (its table in ``_table``),
the workers in ``_workers`` and the deadlock escape in ``_waits``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any, overload

import anyio.abc

from ._authorization import Policy
from ._channel import Overflow
from ._config import Retry, TypeConfig, check_retry, check_timeout, check_transport
from ._core import Phase, check_event_class
from ._deadletters import DeadLetter, DeadLetterHook
from ._delivery import Delivery, Reporter
from ._errors import InvalidConfiguration
from ._lifecycle import Running
from ._middleware import HandleMiddleware, PublishMiddleware
from ._publishing import UNSET, _Unset
from ._registry import Registry, Subscription, adapt_handler
from ._state import COUNTERS, TypeState
from ._stats import TypeStats
from ._table import StateTable
from ._types import DropHook, E, ErrorHook, Filter, Handler, Lifecycle, R
from ._wire.names import EventName, EventNames


class Dispatcher(Running):
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
    :param transport: route every subscribed type through this broker transport
        (see ``eventcore._transport``); ``configure(T, transport=...)`` routes one type
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
        transport: Any = None,
    ) -> None:
        self._default = TypeConfig(queue_size, concurrency, overflow)
        check_timeout("shutdown_timeout", shutdown_timeout)
        check_timeout("slow_handler_threshold", slow_handler_threshold)
        check_transport(transport)
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
        for name, value in (
            ("on_error", on_error),
            ("on_drop", on_drop),
            ("on_dead_letter", on_dead_letter),
            ("on_lifecycle", on_lifecycle),
        ):
            if value is not None and not callable(value):
                raise InvalidConfiguration(f"{name} must be a callable or None, got {value!r}")
        self.shutdown_timeout = shutdown_timeout
        self._max_idle_workers = max_idle_workers
        self._slow_handler_threshold = slow_handler_threshold
        self._on_lifecycle = on_lifecycle
        self._transport = transport
        self._routing = transport is not None
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
        self._table = StateTable(self._refresh)
        #: the states publish may use without the slow path (the table's view, changed
        #: in place): empty unless running with nothing to do on the way in
        self._fast = self._table.fast
        self._slow_publish = False
        self._full_delivery = False
        self._envelope_all = False
        self._phase = Phase.NEW
        self._paused = set()
        self._pool = None
        self._pumps: anyio.abc.TaskGroup | None = None
        self._opened = {}
        self._exit_stack: AsyncExitStack | None = None
        self._token = None
        self._loop_thread = None
        self.use(publish=publish_middleware, handle=handle_middleware)

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
        :raises InvalidEvent: *event_type* is not an event class
        :raises InvalidHandler: *handler* is not a handler (an ``async def`` function, or
            a plain ``def`` that eventcore runs in a worker thread)
        :raises InvalidConfiguration: *filter*, *timeout* or *retry* is not valid
        :return: the subscription; ``subscription.unsubscribe()`` ends it
        """
        check_event_class(event_type, "subscribe")
        call = adapt_handler(handler)
        if filter is not None and not callable(filter):
            raise InvalidConfiguration(f"filter must be a callable returning bool, got {filter!r}")
        check_timeout("timeout", timeout)
        check_retry(retry)
        subscription = Subscription(
            self._subscription_ended, event_type, handler, filter,
            timeout=timeout, retry=retry, principal=principal, call=call,
        )  # fmt: skip
        self._registry.add(subscription)
        self._subscriptions_changed(event_type)
        if self._route_of(event_type) is not None:
            self._start_pump(event_type)
        return subscription

    def on(
        self,
        event_type: type[E],
        *,
        filter: Filter[E] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        principal: Hashable | None = None,
    ) -> Callable[[Callable[[E], R]], Callable[[E], R]]:
        """Decorator form of :meth:`subscribe`; returns the handler unchanged."""

        def register(handler: Callable[[E], R]) -> Callable[[E], R]:
            self.subscribe(
                event_type, handler, filter=filter, timeout=timeout, retry=retry,
                principal=principal,
            )  # fmt: skip
            return handler

        return register

    def unsubscribe(self, subscription: Subscription[Any]) -> None:
        """End *subscription*; queued events no longer reach it. Idempotent."""
        subscription.unsubscribe()

    def _subscription_ended(self, subscription: Subscription[Any]) -> None:
        self._registry.remove(subscription)
        self._subscriptions_changed(subscription.event_type)
        state = self._table.get(subscription.event_type)
        if state is not None and state.pump is not None:
            self._repump(state)  # stop fetching what nobody here handles

    def _subscriptions_changed(self, event_type: type) -> None:
        """Re-resolve the states a change of subscriptions to *event_type* concerns.

        Idle states are retired first, so the cost follows the types in use, not
        every type ever seen (contract 12).
        """
        self._table.sweep()
        for state in self._table:
            if issubclass(state.event_type, event_type):
                self._refresh(state)

    def subscriptions(self) -> tuple[Subscription[Any], ...]:
        """Every active subscription, in subscription order."""
        return self._registry.all()

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
        transport: Any = UNSET,
    ) -> None:
        """Set how events of *event_type* are queued and handled.

        The settings apply to *event_type* and to its subclasses that have no
        settings of their own; what is not given keeps its current value (the
        dispatcher's default at first). It may be called while running: queued
        events stay, a smaller ``queue_size`` applies to new publishes, a lower
        ``concurrency`` to handlers that start from now on, and a ``key`` to events
        published from now on.

        :param queue_size: how many accepted events may wait (the backpressure bound)
        :param concurrency: how many handler calls of this type may run at once
        :param overflow: what a publish into the full queue does
        :param key: ``key(event)``: events with equal keys are handled one at a time
            in accepted order, different keys concurrently (None: no key); computed
            when an event is published, where a failing or unhashable key raises
            ``InvalidEvent``
        :param handler_timeout: default ``timeout`` of the type's subscriptions
        :param retry: default ``retry`` of the type's subscriptions
        :param transport: route the type through this broker transport (None: the
            dispatcher's ``transport``, if it has one, else in memory)
        :raises InvalidEvent: *event_type* is not an event class
        :raises InvalidConfiguration: a value is out of range
        """
        check_event_class(event_type, "configure")
        current = self.config(event_type)
        self._configs[event_type] = TypeConfig(
            current.queue_size if queue_size is None else queue_size,
            current.concurrency if concurrency is None else concurrency,
            current.overflow if overflow is None else overflow,
            current.key if key is UNSET else key,
            current.handler_timeout if handler_timeout is UNSET else handler_timeout,
            current.retry if retry is UNSET else retry,
            current.transport if transport is UNSET else transport,
        )
        if transport is not UNSET and transport is not None:
            self._routing = True
        for state in self._table:
            if issubclass(state.event_type, event_type):
                self._apply(state)
        if self._route_of(event_type) is not None and self._registry.resolve(event_type):
            self._start_pump(event_type)

    def _apply(self, state: TypeState) -> None:
        state.apply(self.config(state.event_type))
        state.route = self._route_of(state.event_type)
        self._refresh(state)
        self._table.admit(state)
        self._repump(state)
        if self._pool is not None:
            self._pool.kick(state)

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

    def transport_of(self, event_type: type) -> Any:
        """The transport *event_type* is routed through, or None (in memory)."""
        return self._route_of(event_type)

    def report_dead_letter(self, letter: DeadLetter) -> None:
        """Hand *letter* to ``on_dead_letter`` and the :class:`DeadLetter` subscribers.

        For transports: a broker message that can never be handled (undecodable,
        delivered too often) becomes a dead letter here instead of disappearing.
        """
        if not isinstance(letter, DeadLetter):
            raise TypeError(f"report_dead_letter() takes a DeadLetter, got {letter!r}")
        self._reporter.dead_letter(letter)

    # -- pausing ---------------------------------------------------------------------

    def pause(self, event_type: type) -> None:
        """Stop handling events of *event_type* and its subclasses until :meth:`resume`.

        Workers take no new event of a paused type (handlers already running
        finish); its queued events stay queued, nothing is lost; publishers see the
        type's overflow policy once its queue is full (under BLOCK they wait); a
        routed type fetches nothing from its broker. It may be called before the
        dispatcher starts, while it runs, and survives :meth:`configure`.
        :meth:`drain` does not wait for paused types; shutdown (leaving ``async
        with``) handles their queued events like any other's, within
        ``shutdown_timeout``, and the pause stays set for the next run.
        Idempotent. A paused type is kept (not freed) until it is resumed.

        :raises InvalidEvent: *event_type* is not an event class
        """
        check_event_class(event_type, "pause")
        self._paused.add(event_type)
        for state in self._table:
            self._sync_pause(state)

    def resume(self, event_type: type) -> None:
        """Undo :meth:`pause` of *event_type*: its workers take its queued events again.

        A subclass stays paused while a base class of it is paused. Idempotent.

        :raises InvalidEvent: *event_type* is not an event class
        """
        check_event_class(event_type, "resume")
        self._paused.discard(event_type)
        for state in self._table:
            self._sync_pause(state)

    def paused(self, event_type: type) -> bool:
        """Whether *event_type* is paused, itself or through a paused base class."""
        return any(klass in self._paused for klass in event_type.__mro__)

    def paused_types(self) -> tuple[type, ...]:
        """The event types given to :meth:`pause` and not resumed since."""
        return tuple(self._paused)

    # -- observing -------------------------------------------------------------------

    @overload
    def stats(self) -> Mapping[type, TypeStats]: ...
    @overload
    def stats(self, event_type: type) -> TypeStats: ...
    def stats(self, event_type: type | None = None) -> Mapping[type, TypeStats] | TypeStats:
        """Counters per concrete event type published so far, or for one type."""
        if event_type is not None:
            state = self._table.get(event_type)
            if state is not None:
                return self._with_broker(_snapshot(state))
            stats = _retired(event_type, self._table.counters_of(event_type))
            if self._paused:
                stats = replace(stats, paused=self.paused(event_type))
            return self._with_broker(stats)
        found = {cls: _retired(cls, counters) for cls, counters in self._table.retired_counters()}
        for state in self._table:
            found[state.event_type] = _snapshot(state)
        if self._paused:
            found = {
                cls: replace(stats, paused=self.paused(cls)) if not stats.paused else stats
                for cls, stats in found.items()
            }
        if self._routing:
            found = {cls: self._with_broker(stats) for cls, stats in found.items()}
        return found

    def _with_broker(self, stats: TypeStats) -> TypeStats:
        """*stats* with the broker's figures, when its type is routed and they exist."""
        route = self._route_of(stats.event_type)
        report = getattr(route, "broker_stats", None)
        if report is None:
            return stats
        return replace(stats, broker=report(stats.event_type))

    @property
    def running(self) -> bool:
        """Whether the dispatcher accepts events from any task."""
        return self._phase is Phase.RUNNING

    def _states(self) -> Iterator[TypeState]:
        """The live per-type states (for tests that check their invariants)."""
        return iter(self._table)


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


def _snapshot(state: TypeState) -> TypeStats:
    return TypeStats(
        event_type=state.event_type,
        accepted=state.accepted,
        dropped=state.dropped,
        refused=state.refused,
        evicted=state.evicted,
        queued=state.queued,
        in_flight=state.in_flight,
        handled=state.handled,
        failed=state.failed,
        abandoned=state.abandoned,
        paused=state.paused,
    )


def _retired(event_type: type, counters: dict[str, int] | None) -> TypeStats:
    """The stats of a type without a live state (idle, or never published)."""
    kept: dict[str, Any] = dict.fromkeys(COUNTERS, 0) if counters is None else counters
    return TypeStats(event_type=event_type, queued=0, in_flight=0, **kept)
