"""Consuming from RabbitMQ: one consumer per queue of the type (a keyed type: one per
partition, each a single active consumer), pushed messages buffered up to the
consumer's prefetch, handed to the dispatcher at most ``room`` at a time.

The prefetch of a type's consumers is what the type may hold in this process,
``queue_size`` waiting plus ``concurrency`` running (split between the
partitions of a keyed type): buffered here, queued locally and being handled
together never exceed it, and the local queue never holds more than its room.

A message seen more than ``max_deliver`` times (``x-delivery-count``, which
counts redeliveries after a requeue or a lost connection) is a dead letter
(``DELIVERY_LIMIT``); one that cannot be decoded, or carries another type, is a
dead letter (``UNDECODABLE``).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import TYPE_CHECKING, Any

from ..._deadletters import DeadLetter, DeadLetterReason
from ..._errors import TransportError
from ..._transport import Verdict
from ..._wire.errors import WireError
from .._kit import Ledger
from .._kit.tracecontext import handler_context
from .amqp import aiormq
from .layout import MAX_PREFETCH, Route

if TYPE_CHECKING:
    from ..._dispatcher import Dispatcher
    from ..._wire.codec import Codec


class RabbitReceipt:
    """Settles one delivered message (see :class:`~eventcore.Receipt`)."""

    __slots__ = ("attempts", "channel", "context", "ledger", "message", "route", "tag")

    def __init__(
        self,
        ledger: Ledger[RabbitReceipt],
        route: Route,
        message: aiormq.abc.DeliveredMessage,
        attempts: int,
    ) -> None:
        self.ledger = ledger
        self.route = route
        self.message = message
        #: the channel it came on: its delivery tag means nothing on another one
        self.channel: Any = message.channel
        self.tag = int(message.delivery_tag or 0)
        self.attempts = attempts
        #: the handlers run in it: the publisher's trace context, when it sent one
        self.context: contextvars.Context | None = None

    def settle(self, verdict: Verdict) -> None:
        """Queue the ack / nack / dead letter of this message (sent by the settler)."""
        self.ledger.settle(self, verdict)


class Inbox:
    """The consumers of one routed type in this process, and what they delivered."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.buffer: deque[aiormq.abc.DeliveredMessage] = deque()
        self.arrived = asyncio.Event()
        #: the consuming channel the consumers were made on (None: not consuming)
        self.channel: aiormq.abc.AbstractChannel | None = None
        self.lock = asyncio.Lock()

    async def deliver(self, message: aiormq.abc.DeliveredMessage) -> None:
        """The consumers' callback: buffer the message (RabbitMQ's prefetch bounds it)."""
        self.buffer.append(message)
        self.arrived.set()

    async def subscribe(
        self, channel: aiormq.abc.AbstractChannel, queues: list[str], room: int
    ) -> None:
        """Consume *queues* on *channel*, a prefetch of *room* split between them."""
        self.buffer.clear()
        prefetch = max(1, min(MAX_PREFETCH, room // len(queues)))
        for queue in queues:
            # per-consumer QoS: global QoS closes a quorum queue's connection
            await channel.basic_qos(prefetch_count=prefetch, global_=False)
            await channel.basic_consume(queue, self.deliver)
        self.channel = channel

    def forget(self) -> None:
        """The channel is gone: its buffered messages come again from RabbitMQ."""
        self.channel = None
        self.buffer.clear()


class Reader:
    """Turns delivered messages into (event, receipt) pairs for the dispatcher."""

    def __init__(
        self, bus: Dispatcher, codec: Codec, ledger: Ledger[RabbitReceipt], max_deliver: int
    ) -> None:
        self._bus = bus
        self._codec = codec
        self._ledger = ledger
        self._max_deliver = max_deliver

    async def take(self, inbox: Inbox, room: int) -> list[tuple[Any, RabbitReceipt]]:
        """Wait for messages; at most *room* of them, decoded (dead letters left out)."""
        buffer = inbox.buffer
        while not buffer:
            inbox.arrived.clear()
            await inbox.arrived.wait()
        out = []
        for _ in range(min(room, len(buffer))):
            fetched = self._receive(inbox.route, buffer.popleft())
            if fetched is not None:
                out.append(fetched)
        return out

    def _receive(
        self, route: Route, message: aiormq.abc.DeliveredMessage
    ) -> tuple[Any, RabbitReceipt] | None:
        headers = message.header.properties.headers
        count = headers.get("x-delivery-count") if headers else None
        delivered = count if isinstance(count, int) else 0
        if message.delivery.redelivered:  # type: ignore[union-attr]
            route.figures["redelivered"] += 1
        receipt = RabbitReceipt(self._ledger, route, message, delivered + 1)
        self._ledger.hold(receipt, receipt)
        body = message.body
        if delivered >= self._max_deliver:
            self._bus.report_dead_letter(
                DeadLetter(self._peek(body), DeadLetterReason.DELIVERY_LIMIT, attempts=delivered)
            )
            self._ledger.settle(receipt, Verdict.REJECTED, DeadLetterReason.DELIVERY_LIMIT.value)
            return None
        try:
            envelope = self._codec.decode(body)
            if not isinstance(envelope.event, route.event_type):
                raise TransportError(f"a {envelope.name} message on a queue of {route.name}")
        except (WireError, TransportError) as exc:
            self._bus.report_dead_letter(
                DeadLetter(body, DeadLetterReason.UNDECODABLE, exc, attempts=delivered + 1)
            )
            self._ledger.settle(receipt, Verdict.REJECTED, DeadLetterReason.UNDECODABLE.value)
            return None
        receipt.context = handler_context(envelope.traceparent, envelope.id)
        return envelope.event, receipt

    def _peek(self, body: bytes) -> Any:
        """The event of a message that will not be handled, or its bytes."""
        try:
            return self._codec.decode(body).event
        except WireError:
            return body
