"""The seam for brokers: what a transport implements to carry event types across processes.

In memory (the default) an accepted event goes straight into its type's bounded
queue. A type *routed* through a transport (``Dispatcher(transport=...)`` or
``configure(T, transport=...)``) goes the long way::

    publish(event) -> transport.send(event_type, event)     durable accept: returns
                                                             once the broker has it
    pump, per routed type:
        room = free places in the local queue
        source.fetch(room) -> [(event, receipt), ...]        never more than room
        -> local bounded queue -> workers -> delivery
        -> receipt.settle(verdict)                           once per fetched event

The local queue stays the bound and the concurrency limiter on the consuming
side: a source never holds more than the room it was given. Each fetched event
ends in exactly one :class:`Verdict`; the transport maps it to its broker
(JetStream: ack / ack / nak / term; Redis Streams: XACK / XACK / leave pending /
XACK to a dead-letter stream). Redelivery after a crash is the broker's job.

A transport may also have a life (both optional, both awaited on the
dispatcher's event loop):

* ``async open(bus)``: connect, create or check streams and consumers. Called when
  the dispatcher starts (an error there leaves ``async with`` before anything
  runs) and, for a transport first configured while running, before its first
  send or fetch. It receives the :class:`~eventcore.Dispatcher`: its ``names``
  (wire names), ``config(T)`` (queue size, concurrency, key, retries) and
  ``report_dead_letter()`` for messages that can never be handled (undecodable,
  delivered too often). An ``open`` that names a ``task_group`` keyword also
  receives the task group where its background tasks must run (the dispatcher's,
  entered before the transports open and left after they closed): a transport
  starts no task of its own outside it.
* ``broker_stats(event_type) -> BrokerStats`` (optional, sync, cheap): the
  type's figures on the broker, for stats, metrics and the dashboard.
* ``async close()``: called once at shutdown, after the pumps stopped and every
  fetched event was settled: flush what is pending, drain the connection.

A receipt may carry a ``context`` attribute (a :class:`contextvars.Context`):
the event's handlers then run in it, as with ``propagate_context`` (a transport
puts the publisher's trace context there).

Nothing here costs the in-memory path anything: routed types never take the
publish fast path, and an event without a receipt settles nothing.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._types import DropReason


class Verdict(str, enum.Enum):
    """How the delivery of one fetched event ended; the transport settles it so."""

    #: every matching handler ran and returned: acknowledge
    HANDLED = "handled"
    #: a handler failed after its local retries (already dead-lettered): acknowledge
    FAILED = "failed"
    #: shutdown came before its handling started or ended: retry later (elsewhere)
    SHUTDOWN = "shutdown"
    #: it will never be handled here (evicted, refused): reject
    REJECTED = "rejected"


@dataclass(frozen=True)
class BrokerStats:
    """A routed type's figures on its broker, as this process sees them.

    A transport that has them offers ``broker_stats(event_type)``; they appear in
    ``Dispatcher.stats()`` (``TypeStats.broker``), the Prometheus metrics and the
    dashboard.

    :ivar pending: messages on the broker not yet delivered to this consumer group
        (the last figure the broker reported; None before it reported one)
    :ivar redelivered: messages fetched here that had been delivered before
    :ivar acked: messages acknowledged (handled, or failed and dead-lettered)
    :ivar nacked: messages given back for redelivery (shutdown before handling)
    :ivar terminated: messages refused for good (undecodable, delivery limit, rejected)
    :ivar dead_lettered: messages written to the broker's dead-letter stream
    :ivar consumer: this process's own consumer name on the broker, where it has
        one (Redis Streams: host, pid and a random part; JetStream's durable
        consumers are shared by the group: None)
    """

    pending: int | None = None
    redelivered: int = 0
    acked: int = 0
    nacked: int = 0
    terminated: int = 0
    dead_lettered: int = 0
    consumer: str | None = None


@runtime_checkable
class Receipt(Protocol):
    """The handle on one fetched message that settles it on its broker."""

    def settle(self, verdict: Verdict) -> None:
        """Record the verdict (called exactly once per fetched event, never awaited:
        a transport sends the ack/nak on its own task)."""
        ...


@runtime_checkable
class Source(Protocol):
    """Where a routed type's events come from, in this process."""

    async def fetch(self, room: int) -> Sequence[tuple[Any, Receipt]]:
        """Wait for at least one message and return at most *room* of them."""
        ...


@runtime_checkable
class Transport(Protocol):
    """A broker that carries event types between processes (see the module doc)."""

    async def send(self, event_type: type, event: Any) -> None:
        """Write *event* durably; return once the broker acknowledged it.

        A transport may also take the keyword arguments ``deadline`` (when the
        publish must have returned, on ``anyio.current_time()``'s clock, or None)
        and ``principal`` (who publishes, for the envelope); the dispatcher passes
        them to a ``send`` that names them (see :func:`takes_deadline`).

        :raises QueueFull: the broker refused it for lack of room, or did not take
            it before the deadline (the type's overflow policy decides what
            ``publish`` does then)
        """
        ...

    def source(self, event_type: type) -> Source:
        """The source of *event_type*'s events for this process's consumer group."""
        ...


#: whether a transport class's send takes deadline= and principal=, by class
_TAKES_DEADLINE: dict[type, bool] = {}


def takes_deadline(transport: Any) -> bool:
    """Whether *transport*'s ``send`` accepts ``deadline=`` and ``principal=`` (the
    seam of the NATS and Redis transports; an older transport gets neither)."""
    kind = type(transport)
    known = _TAKES_DEADLINE.get(kind)
    if known is None:
        try:
            parameters = inspect.signature(transport.send).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        known = _TAKES_DEADLINE[kind] = "deadline" in parameters and "principal" in parameters
    return known


async def open_transport(transport: Any, bus: Any, task_group: Any = None) -> None:
    """Call ``transport.open(bus)`` if the transport has a life, with
    ``task_group=`` if its ``open`` names it (see the module doc)."""
    opener = getattr(transport, "open", None)
    if opener is None:
        return
    try:
        takes_group = "task_group" in inspect.signature(opener).parameters
    except (TypeError, ValueError):
        takes_group = False
    if takes_group:
        await opener(bus, task_group=task_group)
    else:
        await opener(bus)


async def close_transport(transport: Any) -> None:
    """Call ``transport.close()`` if the transport has a life (see the module doc)."""
    closer = getattr(transport, "close", None)
    if closer is not None:
        await closer()


def verdict_of(results: Sequence[Any], dropped: DropReason | None) -> Verdict:
    """The verdict of a delivery with these handler *results*, or of a dropped event."""
    if dropped is DropReason.SHUTDOWN:
        return Verdict.SHUTDOWN
    if dropped is not None:
        return Verdict.REJECTED
    if all(result.exception is None for result in results):
        return Verdict.HANDLED
    return Verdict.FAILED
