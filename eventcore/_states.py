"""The states of every event type: settings by type, created on first use, their
delivery plans kept current, pauses applied (the table itself: ``_table``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._config import TypeConfig
from ._deadletters import DeadLetter
from ._events import check_event_class, is_library_class, refuse_event
from ._features import Features
from ._plan import build_plan
from ._registry import Registry
from ._run import Phase, Run
from ._state import TypeState
from ._table import StateTable


class TypeStates:
    """Per-type settings and states; what publish, the routes and the lifecycle share."""

    def __init__(
        self,
        default: TypeConfig,
        registry: Registry,
        features: Features,
        run: Run,
        transport: Any,
    ) -> None:
        self.default = default
        self.configs: dict[type, TypeConfig] = {}
        self.registry = registry
        self.features = features
        self.run = run
        self.table = StateTable(self.refresh)
        #: the states publish may use without the slow path (the table's view, changed
        #: in place): empty unless running with nothing to do on the way in
        self.fast = self.table.fast
        self.transport = transport
        #: whether any transport is set (else every type is in memory: no lookups)
        self.routing = transport is not None
        #: the types paused with ``Dispatcher.pause`` (and so their subclasses)
        self.paused: set[type] = set()

    def __iter__(self) -> Iterator[TypeState]:
        return iter(self.table)

    def get(self, event_type: type) -> TypeState | None:
        """The live state of *event_type*, if any."""
        return self.table.get(event_type)

    # -- settings ----------------------------------------------------------------------

    def config(self, event_type: type) -> TypeConfig:
        """The settings in force for *event_type* (its own, its nearest configured
        base's, or the default)."""
        configs = self.configs
        for klass in event_type.__mro__:
            found = configs.get(klass)
            if found is not None:
                return found
        return self.default

    def configure(self, event_type: type, config: TypeConfig) -> list[TypeState]:
        """Give *event_type* (and its subclasses without settings) *config*.

        :return: the live states it changed (the caller re-reads their routes)
        """
        self.configs[event_type] = config
        if config.transport is not None:
            self.routing = True
        changed = [state for state in self.table if issubclass(state.event_type, event_type)]
        for state in changed:
            state.apply(self.config(state.event_type))
            state.reroute(self.route_of(state.event_type))
            self.refresh(state)
            self.table.admit(state)
            self.kick(state)
        return changed

    def route_of(self, event_class: type) -> Any:
        """The transport *event_class* is routed through (None: in memory). Dead
        letters stay in the process that produced them."""
        if not self.routing or event_class is DeadLetter:
            return None
        return self.config(event_class).transport or self.transport

    # -- plans -------------------------------------------------------------------------

    def refresh(self, state: TypeState) -> None:
        """Give *state* the plan of its subscriptions (those the policy lets receive)."""
        subs = self.registry.resolve(state.event_type)
        policy = self.features.policy
        if policy is not None:
            subs = tuple(s for s in subs if policy.may_receive(s.principal, state.event_type))
        state.use_plan(build_plan(subs, state.config, self.features.full_delivery))

    def settle(self) -> None:
        """The features changed: re-decide the paths of publish and of every type."""
        self.open_fast_path()
        for state in self.table:
            self.refresh(state)

    def open_fast_path(self) -> None:
        """Let publish skip its checks only while running with nothing to do on the way in
        (one dict lookup then decides both: no phase test on the hot path)."""
        self.table.open_fast_path(
            self.run.phase is Phase.RUNNING and not self.features.slow_publish
        )

    def subscriptions_changed(self, event_type: type) -> None:
        """Re-resolve the states a change of subscriptions to *event_type* concerns.

        Idle states are retired first, so the cost follows the types in use, not
        every type ever seen (contract 12).
        """
        self.table.sweep()
        for state in self.table:
            if issubclass(state.event_type, event_type):
                self.refresh(state)

    # -- states ------------------------------------------------------------------------

    def state_for(self, event: object) -> TypeState:
        """The state of *event*'s class, created on first use; refuses non-events."""
        event_class = event.__class__
        state = self.table.get(event_class)
        if state is not None:
            return state
        if event is None or isinstance(event, type) or is_library_class(event_class):
            raise refuse_event(event)
        return self.new_state(event_class)

    def new_state(self, event_class: type) -> TypeState:
        """A state for *event_class* (which has none), with its settings and pause."""
        config = self.config(event_class)
        state = TypeState(event_class, config)
        if self.paused and self.pause_holds(event_class):
            state.pause()
        if self.routing and event_class is not DeadLetter:
            state.reroute(config.transport or self.transport)
        return self.table.create(event_class, state)

    def enqueue(self, state: TypeState, item: object) -> None:
        """*item* enters *state*'s queue (the caller checked there is room)."""
        state.accept(item)
        self.kick(state)

    def kick(self, state: TypeState) -> None:
        """Get a worker coming for *state*, if running and a slot is free."""
        pool = self.run.pool
        if pool is not None:
            pool.kick(state)

    # -- pausing -----------------------------------------------------------------------

    def pause(self, event_type: type) -> None:
        """Hold *event_type*'s (and its subclasses') workers."""
        self.paused.add(event_type)
        self.sync_pauses()

    def resume(self, event_type: type) -> None:
        """Undo :meth:`pause` of *event_type*."""
        self.paused.discard(event_type)
        self.sync_pauses()

    def is_paused(self, event_type: type) -> bool:
        """Whether *event_type* is paused, itself or through a paused base class."""
        check_event_class(event_type, "paused")
        return any(klass in self.paused for klass in event_type.__mro__)

    def pause_holds(self, event_class: type) -> bool:
        """Whether *event_class*'s workers are held now: it or a base is paused, and the
        dispatcher is not shutting down (shutdown drains paused types too)."""
        paused = self.paused
        return (
            bool(paused)
            and self.run.phase is not Phase.CLOSING
            and any(klass in paused for klass in event_class.__mro__)
        )

    def sync_pauses(self) -> None:
        """Hold or free every state's workers as :meth:`pause_holds` says."""
        for state in self.table:
            hold = self.pause_holds(state.event_type)
            if hold and not state.paused:
                state.pause()
            elif not hold and state.paused:
                state.resume()
                self.kick(state)
