"""What the parts of the :class:`~eventcore.Dispatcher` share: its phase, its tables,
and the few helpers every publish path, the lifecycle and the facade use."""

from __future__ import annotations

import enum
import sys
from typing import TYPE_CHECKING, Any

from ._authorization import Policy
from ._config import TypeConfig
from ._deadletters import DeadLetter
from ._delivery import Delivery, Reporter
from ._errors import DispatcherClosed, InvalidEvent
from ._middleware import PublishMiddleware
from ._registry import Registry
from ._state import TypeState
from ._table import StateTable
from ._waits import current_slot

if TYPE_CHECKING:
    import anyio.abc
    import anyio.lowlevel

    from ._workers import WorkerPool


class Phase(enum.Enum):
    """Where a dispatcher is in its life."""

    NEW = "not started"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


_STDLIB = frozenset(sys.stdlib_module_names) | {"builtins"}


def is_library_class(cls: type) -> bool:
    """Whether *cls* comes from the standard library (its instances are never events)."""
    return cls.__module__.partition(".")[0] in _STDLIB


def check_event_class(cls: object, what: str) -> None:
    """Refuse anything but an event class (or ``object``, which subscribes to all)."""
    if not isinstance(cls, type) or (cls is not object and is_library_class(cls)):
        raise InvalidEvent(
            f"{what}() takes an event class: a class you define (a dataclass, attrs class, "
            f"pydantic model, ...), got {cls!r}; instances of standard-library types "
            "(int, dict, datetime, ...) are never events"
        )


class DispatcherCore:
    """The shared state of a dispatcher (set up by ``Dispatcher.__init__``)."""

    _default: TypeConfig
    _configs: dict[type, TypeConfig]
    _registry: Registry
    _table: StateTable
    _fast: dict[type, TypeState]
    _reporter: Reporter
    _delivery: Delivery
    _policy: Policy | None
    _publish_chain: tuple[PublishMiddleware, ...]
    _propagate_context: bool
    _dead_letter_unmatched: bool
    _slow_handler_threshold: float | None
    _transport: Any
    #: whether any transport is set (else every type is in memory: no lookups)
    _routing: bool
    _slow_publish: bool
    _full_delivery: bool
    _envelope_all: bool
    _phase: Phase
    #: the types paused with ``Dispatcher.pause`` (and so their subclasses)
    _paused: set[type]
    _pool: WorkerPool | None
    _token: anyio.lowlevel.EventLoopToken | None
    _loop_thread: int | None

    def config(self, event_type: type) -> TypeConfig:
        """The settings in force for *event_type* (its own, its nearest configured
        base's, or the default)."""
        configs = self._configs
        for klass in event_type.__mro__:
            found = configs.get(klass)
            if found is not None:
                return found
        return self._default

    def _refresh(self, state: TypeState) -> None:
        """Resolve *state*'s subscriptions (with the policy) and whether it is plain."""
        subs = self._registry.resolve(state.event_type)
        policy = self._policy
        if policy is not None:
            subs = tuple(s for s in subs if policy.may_receive(s.principal, state.event_type))
        state.subs = subs
        state.calls = tuple([(s.call, s.filter, s.handler) for s in subs])
        filtered = any(s.filter is not None for s in subs)
        state.awaits = None if filtered else tuple([s.call for s in subs])
        state.single = subs[0].call if len(subs) == 1 and not filtered else None
        plain = not (
            self._full_delivery
            or state.key is not None
            or state.handler_timeout is not None
            or state.retry is not None
        )
        if plain:
            for sub in subs:
                if sub.timeout is not None or sub.retry is not None:
                    plain = False
                    break
        state.plain = plain
        state.refresh()

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
        for state in self._table:
            self._refresh(state)

    def _open_fast_path(self) -> None:
        """Let publish skip its checks only while running with nothing to do on the way in
        (one dict lookup then decides both: no phase test on the hot path)."""
        self._table.open_fast_path(self._phase is Phase.RUNNING and not self._slow_publish)

    def _state_for(self, event: object) -> TypeState:
        """The state of *event*'s class, created on first use; refuses non-events."""
        event_class = event.__class__
        state = self._table.get(event_class)
        if state is not None:
            return state
        if event is None or isinstance(event, type) or is_library_class(event_class):
            raise InvalidEvent(
                f"publish() takes an event: an instance of a class you define (a dataclass, "
                f"attrs class, pydantic model, ...), got {event!r} of type "
                f"{event_class.__qualname__}; instances of standard-library types (int, dict, "
                "datetime, ...) are never events"
            )
        return self._new_state(event_class)

    def _new_state(self, event_class: type) -> TypeState:
        config = self.config(event_class)
        state = TypeState(event_class, config)
        if self._paused:
            state.paused = self._pause_holds(event_class)
        if self._routing and event_class is not DeadLetter:
            state.route = config.transport or self._transport
        return self._table.create(event_class, state)

    def _pause_holds(self, event_class: type) -> bool:
        """Whether *event_class*'s workers are held now: it or a base is paused, and the
        dispatcher is not shutting down (shutdown drains paused types too)."""
        paused = self._paused
        return (
            bool(paused)
            and self._phase is not Phase.CLOSING
            and any(klass in paused for klass in event_class.__mro__)
        )

    def _sync_pause(self, state: TypeState) -> None:
        """Hold or free *state*'s workers as ``_pause_holds`` says."""
        hold = self._pause_holds(state.event_type)
        if hold and not state.paused:
            state.pause()
        elif not hold and state.paused:
            state.resume()
            if self._pool is not None:
                self._pool.kick(state)

    def _route_of(self, event_class: type) -> Any:
        """The transport *event_class* is routed through (None: in memory). Dead
        letters stay in the process that produced them."""
        if not self._routing or event_class is DeadLetter:
            return None
        return self.config(event_class).transport or self._transport

    def _is_own_worker(self) -> bool:
        slot = current_slot.get()
        return slot is not None and slot.pool is self._pool and slot.pool is not None

    def _closed_message(self) -> str:
        if self._phase is Phase.NEW:
            return "the dispatcher is not running: publish inside `async with dispatcher:`"
        return f"the dispatcher is {self._phase.value}: it accepts no new events"

    def _check_running(self) -> None:
        """Refuse publishing unless running (or closing, from one of its own handlers)."""
        if self._phase is not Phase.RUNNING and not (
            self._phase is Phase.CLOSING and self._is_own_worker()
        ):
            raise DispatcherClosed(self._closed_message())

    def _enqueue(self, state: TypeState, item: object) -> None:
        state.accept(item)
        pool = self._pool
        assert pool is not None
        pool.kick(state)
