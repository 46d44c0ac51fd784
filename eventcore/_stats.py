"""Counters per event type and the frozen snapshot that ``Dispatcher.stats`` returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ._counters import COUNTERS
from ._events import check_event_class
from ._state import TypeState
from ._states import TypeStates
from ._transport import BrokerStats


@dataclass(frozen=True)
class TypeStats:
    """A snapshot of one event type's counters.

    Two identities hold at every snapshot::

        published == accepted + dropped + refused
        accepted  == handled + queued + in_flight + evicted + abandoned
    """

    event_type: type
    #: events that entered the queue
    accepted: int
    #: publishes refused under DROP_NEWEST (``publish`` returned False)
    dropped: int
    #: publishes that raised: QueueFull (RAISE, publish_nowait) or PublishTimeout (BLOCK)
    refused: int
    #: accepted events evicted from the queue under DROP_OLDEST
    evicted: int
    #: accepted events waiting in the queue now
    queued: int
    #: events whose handlers are running now
    in_flight: int
    #: events whose every matching handler has run (successfully or not)
    handled: int
    #: handler invocations that raised (one event may count several times)
    failed: int
    #: accepted events that shutdown cut off before they were handled
    abandoned: int
    #: the type's figures on its broker, when it is routed through a transport
    #: that reports them (``Transport.broker_stats``)
    broker: BrokerStats | None = None
    #: whether the type is paused (``Dispatcher.pause``): its workers take no event
    paused: bool = False

    @property
    def published(self) -> int:
        """Every publish attempt of this type that passed validation."""
        return self.accepted + self.dropped + self.refused


def stats_of(states: TypeStates, event_type: type) -> TypeStats:
    """The stats of *event_type*: its live state's, or what its retired state left."""
    check_event_class(event_type, "stats")  # an instance or str would read all zeros
    state = states.get(event_type)
    if state is not None:
        return _with_broker(states, _snapshot(state))
    stats = _retired(event_type, states.table.counters_of(event_type))
    if states.paused:
        stats = replace(stats, paused=states.is_paused(event_type))
    return _with_broker(states, stats)


def stats_of_all(states: TypeStates) -> Mapping[type, TypeStats]:
    """The stats of every concrete type published so far."""
    found = {cls: _retired(cls, counters) for cls, counters in states.table.retired_counters()}
    for state in states:
        found[state.event_type] = _snapshot(state)
    if states.paused:
        found = {
            cls: replace(stats, paused=states.is_paused(cls)) if not stats.paused else stats
            for cls, stats in found.items()
        }
    if states.routing:
        found = {cls: _with_broker(states, stats) for cls, stats in found.items()}
    return found


def _with_broker(states: TypeStates, stats: TypeStats) -> TypeStats:
    """*stats* with the broker's figures, when its type is routed and they exist."""
    route = states.route_of(stats.event_type)
    report = getattr(route, "broker_stats", None)
    if report is None:
        return stats
    return replace(stats, broker=report(stats.event_type))


def _snapshot(state: TypeState) -> TypeStats:
    counts = state.counts
    return TypeStats(
        event_type=state.event_type,
        accepted=counts.accepted,
        dropped=counts.dropped,
        refused=counts.refused,
        evicted=counts.evicted,
        queued=state.queued,
        in_flight=state.in_flight,
        handled=counts.handled,
        failed=counts.failed,
        abandoned=counts.abandoned,
        paused=state.paused,
    )


def _retired(event_type: type, counters: dict[str, int] | None) -> TypeStats:
    """The stats of a type without a live state (idle, or never published)."""
    kept: dict[str, Any] = dict.fromkeys(COUNTERS, 0) if counters is None else counters
    return TypeStats(event_type=event_type, queued=0, in_flight=0, **kept)
