"""The :class:`Dispatcher`: a thin facade over the collaborators that do the work.

=================== ==================================================================
``_states``         per-type settings and states, their plans and pauses (the table)
``_publishing``     the publish paths (``publish``, ``publish_nowait``, ``..._and_wait``)
``_lifecycle``      start, drain, shutdown with a deadline
``_routes``         the transports and the pumps of routed types
``_bridge``         ``publish_threadsafe``
``_run``            the phase and what exists only while running (the worker pool)
=================== ==================================================================

Each is built here with what it needs and never calls back into the facade.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

from ._authorization import Policy
from ._bridge import ThreadBridge
from ._config import (
    UNSET,
    Overflow,
    Retry,
    TypeConfig,
    _Unset,
    check_timeout,
    check_transport,
)
from ._deadletters import DeadLetter, DeadLetterHook
from ._delivery import Delivery, Reporter
from ._errors import InvalidConfiguration
from ._events import check_event_class
from ._features import Features
from ._lifecycle import Life
from ._middleware import HandleMiddleware, PublishMiddleware
from ._publishing import PublishAndWaitMethod, Publisher, PublishMethod, PublishNowaitMethod
from ._registry import Registry
from ._routes import Routes
from ._run import Run
from ._state import TypeState
from ._states import TypeStates
from ._stats import TypeStats, stats_of, stats_of_all
from ._subscription import Subscription, end_subscription
from ._types import DropHook, E, ErrorHook, Filter, Handler, Lifecycle, R
from ._wire.names import EventName, EventNames

_D = TypeVar("_D", bound="Dispatcher")


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
    :param transport: route every subscribed type through this broker transport
        (see ``eventcore._transport``); ``configure(T, transport=...)`` routes one type
    """

    #: the publisher's own methods (no frame of the facade's on the hot path): see
    #: ``Publisher.publish``, ``.publish_nowait`` and ``.publish_and_wait``
    publish: PublishMethod
    publish_nowait: PublishNowaitMethod
    publish_and_wait: PublishAndWaitMethod

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
        default = TypeConfig(queue_size, concurrency, overflow)
        _check_arguments(
            shutdown_timeout, slow_handler_threshold, transport, max_idle_workers, policy,
            on_error=on_error, on_drop=on_drop, on_dead_letter=on_dead_letter,
            on_lifecycle=on_lifecycle,
        )  # fmt: skip
        self.shutdown_timeout = shutdown_timeout
        self._features = features = Features(
            policy, propagate_context, dead_letter_unmatched, slow_handler_threshold
        )
        self._reporter = reporter = Reporter(on_error, on_drop, on_dead_letter)
        self._delivery = delivery = Delivery(
            reporter, dead_letter_unmatched, track_calls=slow_handler_threshold is not None
        )
        self._registry = registry = Registry()
        self._names = EventNames()
        self._run = run = Run()
        self._states = states = TypeStates(default, registry, features, run, transport)
        self._routes = routes = Routes(self, states, run, reporter)
        self._publisher = publisher = Publisher(states, run, features, routes, reporter, delivery)
        reporter.dead_letter_sink = publisher.queue_dead_letter
        self._life = Life(
            states, run, routes, features, reporter, delivery, max_idle_workers, on_lifecycle
        )
        self._bridge = ThreadBridge(run, publisher)
        self.publish = publisher.publish
        self.publish_nowait = publisher.publish_nowait
        self.publish_and_wait = publisher.publish_and_wait
        self.attach = features.attach  # an outbox: publish(session=...), relay per run
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
        subscription = self._registry.subscribe(
            self._subscription_ended, event_type, handler, filter, timeout, retry, principal
        )
        self._states.subscriptions_changed(event_type)
        if self._states.route_of(event_type) is not None:
            self._routes.start_pump(event_type)
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
        """End *subscription*; queued events no longer reach it. Idempotent.
        ``InvalidHandler`` if it is not a :class:`Subscription`."""
        end_subscription(subscription)

    def _subscription_ended(self, subscription: Subscription[Any]) -> None:
        self._registry.remove(subscription)
        self._states.subscriptions_changed(subscription.event_type)
        self._routes.repump_family(subscription.event_type)  # stop what nobody here handles

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
        _check_middleware(publish, handle)
        installed = Installed(self._remove_middleware, tuple(publish), tuple(handle))
        features = self._features
        features.use_publish_chain(features.publish_chain + installed.publish)
        self._delivery.handle_chain += installed.handle
        self._settle()
        return installed

    def _remove_middleware(self, installed: Installed) -> None:
        features = self._features
        features.use_publish_chain(_without(features.publish_chain, installed.publish))
        self._delivery.handle_chain = _without(self._delivery.handle_chain, installed.handle)
        self._settle()

    def _settle(self) -> None:
        self._features.settle(bool(self._delivery.handle_chain))
        self._states.settle()

    @property
    def propagate_context(self) -> bool:
        """Whether handlers run in a copy of the publisher's ``contextvars``.

        Settable at any time (integrations turn it on); applies to events published
        from then on.
        """
        return self._features.propagate_context

    @propagate_context.setter
    def propagate_context(self, value: bool) -> None:
        self._features.use_context(bool(value))
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
        config = self.config(event_type).changed(
            queue_size, concurrency, overflow, key, handler_timeout, retry, transport
        )
        for state in self._states.configure(event_type, config):
            self._routes.repump(state)
        if self._states.route_of(event_type) is not None and self._registry.resolve(event_type):
            self._routes.start_pump(event_type)

    def config(self, event_type: type) -> TypeConfig:
        """The settings in force for *event_type* (its own, its nearest configured
        base's, or the default); ``InvalidEvent`` if it is not an event class."""
        check_event_class(event_type, "config")
        return self._states.config(event_type)

    def configured_types(self) -> tuple[type, ...]:
        """The event types given settings of their own with :meth:`configure`."""
        return tuple(self._states.configs)

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
        return self._states.route_of(event_type)

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
        self._states.pause(event_type)

    def resume(self, event_type: type) -> None:
        """Undo :meth:`pause` of *event_type*: its workers take its queued events again.

        A subclass stays paused while a base class of it is paused. Idempotent.

        :raises InvalidEvent: *event_type* is not an event class
        """
        check_event_class(event_type, "resume")
        self._states.resume(event_type)

    def paused(self, event_type: type) -> bool:
        """Whether *event_type* is paused, itself or through a paused base class
        (``InvalidEvent`` if it is not an event class)."""
        return self._states.is_paused(event_type)

    def paused_types(self) -> tuple[type, ...]:
        """The event types given to :meth:`pause` and not resumed since."""
        return tuple(self._states.paused)

    # -- observing -------------------------------------------------------------------

    @overload
    def stats(self) -> Mapping[type, TypeStats]: ...
    @overload
    def stats(self, event_type: type) -> TypeStats: ...
    def stats(self, event_type: type | None = None) -> Mapping[type, TypeStats] | TypeStats:
        """Counters per concrete event type published so far, or for one event class
        (``InvalidEvent`` for anything else: an instance, or ``str`` as in :meth:`configure`)."""
        if event_type is None:
            return stats_of_all(self._states)
        return stats_of(self._states, event_type)

    @property
    def running(self) -> bool:
        """Whether the dispatcher accepts events from any task."""
        return self._run.running

    def _live_states(self) -> Iterator[TypeState]:
        """The live per-type states (for tests that check their invariants)."""
        return iter(self._states)

    # -- other threads -----------------------------------------------------------------

    def publish_threadsafe(self, event: object, *, timeout: float | None = None) -> bool:
        """Publish from a thread other than the event loop's; blocks that thread until
        the event is accepted (see :meth:`publish` for the result and errors).

        :raises DispatcherClosed: the dispatcher is not running (or stopped meanwhile)
        :raises RuntimeError: called from the event loop thread itself (use ``publish``)
        """
        return self._bridge.publish(event, timeout)

    # -- life --------------------------------------------------------------------------
    async def __aenter__(self: _D) -> _D:
        """Start a run; ``LifecycleMisuse`` (a ``RuntimeError``) if it runs already."""
        await self._life.enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drain within ``shutdown_timeout`` and stop; a no-op when not running."""
        await self._life.exit(self.shutdown_timeout)

    async def drain(self) -> None:
        """Wait until no event is queued or in flight, including follow-on events.

        Paused types are not waited for: their events wait for ``resume()``.

        :raises DispatcherClosed: the dispatcher was never started
        :raises LifecycleMisuse: called from one of the dispatcher's own handlers (it
            would wait for that handler itself; a ``RuntimeError``)
        """
        await self._life.drain()


class Installed:
    """Middleware added by :meth:`Dispatcher.use`; ``remove()`` takes it out again."""

    __slots__ = ("_remove", "handle", "publish")

    def __init__(
        self,
        remove: Callable[[Installed], None],
        publish: tuple[PublishMiddleware, ...],
        handle: tuple[HandleMiddleware, ...],
    ) -> None:
        self._remove: Callable[[Installed], None] | None = remove
        self.publish = publish
        self.handle = handle

    def remove(self) -> None:
        """Take these middleware out (events already queued keep their envelope). Idempotent."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove(self)


def _without(chain: tuple[Any, ...], removed: tuple[Any, ...]) -> tuple[Any, ...]:
    """*chain* without one occurrence of each of *removed* (by identity)."""
    kept = list(chain)
    for item in removed:
        for index, present in enumerate(kept):
            if present is item:
                del kept[index]
                break
    return tuple(kept)


def _check_arguments(
    shutdown_timeout: float,
    slow_handler_threshold: float | None,
    transport: Any,
    max_idle_workers: int,
    policy: Policy | None,
    **hooks: object,
) -> None:
    """Refuse what the constructor cannot work with (``InvalidConfiguration``)."""
    check_timeout("shutdown_timeout", shutdown_timeout)
    check_timeout("slow_handler_threshold", slow_handler_threshold)
    check_transport(transport)
    if slow_handler_threshold == 0:
        raise InvalidConfiguration("slow_handler_threshold must be > 0 or None")
    if isinstance(max_idle_workers, bool) or not isinstance(max_idle_workers, int):
        raise InvalidConfiguration(f"max_idle_workers must be an int, got {max_idle_workers!r}")
    if max_idle_workers < 0:
        raise InvalidConfiguration(f"max_idle_workers must be >= 0, got {max_idle_workers}")
    if policy is not None and not isinstance(policy, Policy):
        raise InvalidConfiguration(
            f"policy must have may_publish() and may_receive() methods, got {policy!r}"
        )
    for name, value in hooks.items():
        if value is not None and not callable(value):
            raise InvalidConfiguration(f"{name} must be a callable or None, got {value!r}")


def _check_middleware(publish: Sequence[object], handle: Sequence[object]) -> None:
    """Refuse middleware that is not a sequence of callables (``InvalidConfiguration``)."""
    for name, chain in (("publish", publish), ("handle", handle)):
        if not all(callable(m) for m in chain):
            raise InvalidConfiguration(f"{name} middleware must be a sequence of callables")
