"""Counters per event type and the frozen snapshot that ``Dispatcher.stats`` returns."""

from __future__ import annotations

from dataclasses import dataclass

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
