"""How routed types map onto RabbitMQ: exchanges, quorum queues, bindings, arguments.

* one durable topic exchange ``<prefix>``; an event is published to it with the
  routing key ``<name>`` (its registered name), or ``<name>.<partition>`` for a
  type with a key;
* one durable quorum queue per (type, group), ``<prefix>.<group>.<name>``, bound
  to the exchange by the event's name; a keyed type has ``partitions`` queues
  (the first one named so, then ``<prefix>.<group>.<name>.<p>``), each with a
  single active consumer, so one key is handled in order by one process at a time;
* the queues' own dead-letter exchange is ``<prefix>.dead`` (a topic exchange)
  with one quorum queue ``<prefix>.dead_letters`` bound to everything: what
  RabbitMQ dead-letters itself lands there with its ``x-death`` header, and so
  do the dead letters this transport writes (with an ``eventcore-reason``).

A queue that exists with other arguments is reported
(:class:`~eventcore.InvalidConfiguration`, with RabbitMQ's own words naming the
argument and both values), never changed: AMQP cannot change a queue's
arguments, and deleting one would lose its messages.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._errors import InvalidConfiguration
from ..._transport import BrokerStats
from .amqp import aiormq

if TYPE_CHECKING:
    from .link import Link

#: the most messages RabbitMQ lets one consumer hold unacknowledged (a short)
MAX_PREFETCH = 65_535


@dataclass(frozen=True)
class Settings:
    """What the queues of one transport look like (see :class:`RabbitMQTransport`)."""

    prefix: str
    max_deliver: int
    max_length: int | None
    max_length_bytes: int | None

    @property
    def exchange(self) -> str:
        return self.prefix

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead_letters"

    def arguments(self, *, keyed: bool) -> dict[str, Any]:
        """The arguments of a type's queue (a partition's, when *keyed*)."""
        arguments: dict[str, Any] = {
            "x-queue-type": "quorum",
            # delivered max_deliver + 1 times: the last delivery only dead-letters
            "x-delivery-limit": self.max_deliver,
            "x-dead-letter-exchange": self.dead_exchange,
        }
        if self.max_length is not None:
            # a quorum queue takes one message past its x-max-length before refusing
            arguments["x-max-length"] = self.max_length - 1
        if self.max_length_bytes is not None:
            arguments["x-max-length-bytes"] = self.max_length_bytes
        if self.max_length is not None or self.max_length_bytes is not None:
            arguments["x-overflow"] = "reject-publish"
        if keyed:
            arguments["x-single-active-consumer"] = True
        return arguments


@dataclass(eq=False)
class Route:
    """One routed type on RabbitMQ: its names, its key, its figures."""

    event_type: type
    name: str
    key: Callable[[Any], Any] | None
    partitions: int
    #: the groups whose queues exist and are bound (declared once per connection)
    declared: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: ready messages in this group's queues (the last figure read; None before)
    pending: int | None = None
    #: the counters of :class:`~eventcore.BrokerStats` by name (acked, nacked...)
    figures: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        """How many queues (and routing keys) the type has per group."""
        return 1 if self.key is None else self.partitions

    def routing_key(self, partition: int) -> str:
        return self.name if self.key is None else f"{self.name}.{partition}"

    def queue(self, settings: Settings, group: str, partition: int) -> str:
        return queue_name(settings.prefix, group, self.name, partition)

    def queues(self, settings: Settings, group: str) -> list[str]:
        return [self.queue(settings, group, p) for p in range(self.count)]

    def stats(self) -> BrokerStats:
        """The route's figures as the seam reports them."""
        figures: dict[str, Any] = dict(self.figures)  # acked, nacked... as BrokerStats names them
        return BrokerStats(pending=self.pending, **figures)


def queue_name(prefix: str, group: str, name: str, partition: int = 0) -> str:
    """The queue of the events named *name* for *group*: ``<prefix>.<group>.<name>``,
    and for the partitions of a keyed type after the first, ``.<partition>``."""
    base = f"{prefix}.{group}.{name}"
    return base if partition == 0 else f"{base}.{partition}"


class Declarer:
    """Declares exchanges, queues and bindings on a channel of its own (a refused
    declaration closes the channel it was made on; this one is then reopened)."""

    def __init__(self, link: Link, settings: Settings) -> None:
        self._link = link
        self._settings = settings
        self._channel: aiormq.abc.AbstractChannel | None = None

    async def _open(self) -> aiormq.abc.AbstractChannel:
        connection = self._link.connection
        if connection is None:
            raise aiormq.exceptions.ChannelInvalidStateError("RabbitMQ is not connected")
        channel = self._channel
        if channel is None or channel.is_closed or channel.connection is not connection:
            channel = self._channel = await connection.channel(publisher_confirms=False)
        return channel

    async def exchanges(self) -> None:
        """The type exchange and the dead-letter exchange with its queue."""
        s = self._settings
        channel = await self._open()
        await channel.exchange_declare(s.exchange, exchange_type="topic", durable=True)
        await channel.exchange_declare(s.dead_exchange, exchange_type="topic", durable=True)
        await self._queue(s.dead_queue, {"x-queue-type": "quorum"})
        await channel.queue_bind(s.dead_queue, s.dead_exchange, routing_key="#")

    async def route(self, route: Route, group: str, *, own: bool) -> None:
        """*group*'s queues of *route*, bound by the event's name. The transport's *own*
        group's queues are checked against its settings; another group's (``groups=``)
        are created with them when missing, and left as they are when present (their
        consumers own their settings)."""
        s = self._settings
        arguments = s.arguments(keyed=route.key is not None)
        for partition in range(route.count):
            queue = route.queue(s, group, partition)
            if own or not await self._exists(queue):
                await self._queue(queue, arguments)
            channel = await self._open()
            await channel.queue_bind(queue, s.exchange, routing_key=route.routing_key(partition))

    async def _exists(self, queue: str) -> bool:
        channel = await self._open()
        try:
            await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True

    async def _queue(self, queue: str, arguments: dict[str, Any]) -> int:
        """Declare *queue*; its number of ready messages."""
        channel = await self._open()
        try:
            ok = await channel.queue_declare(queue, durable=True, arguments=arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise InvalidConfiguration(
                f"the RabbitMQ queue {queue!r} exists with other arguments than this "
                f"transport's ({_reply_text(exc)}); eventcore never changes an existing "
                "queue: give the transport the queue's settings, or delete the queue "
                f"(`rabbitmqctl delete_queue {queue}`, losing its messages) to recreate it"
            ) from None
        return int(ok.message_count or 0)

    async def ready(self, queue: str) -> int | None:
        """The number of ready messages in *queue* (None if it cannot be read now)."""
        channel = await self._open()
        try:
            ok = await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        return int(ok.message_count or 0)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None


def _reply_text(exc: BaseException) -> str:
    """RabbitMQ's reason in a channel error (``PRECONDITION_FAILED - inequivalent arg
    'x-max-length' for queue 'q' in vhost '/': received '10' but current is '20'``)."""
    frame = exc.args[1] if len(exc.args) > 1 else None
    text = getattr(frame, "reply_text", None)
    return str(text) if text else str(exc)
