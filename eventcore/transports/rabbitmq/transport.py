"""The RabbitMQ transport: its settings, its life, and the glue between the layout,
the link, publishing, consuming and settling (each in its own module)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.abc

from ..._errors import InvalidConfiguration, TransportError
from ..._transport import BrokerStats
from ..._wire.codec import DEFAULT_MAX_SIZE, Codec
from .._kit import Crew, Ledger, Settler, redact, require_asyncio, unavailable, validate
from .._kit.common import wire_name
from .amqp import CONNECTION_ERRORS
from .consume import Inbox, RabbitReceipt, Reader
from .layout import Declarer, Route, Settings, queue_name
from .link import Link
from .publish import Publisher
from .settle import Settle

if TYPE_CHECKING:
    from ..._dispatcher import Dispatcher

logger = logging.getLogger("eventcore.rabbitmq")

#: how often the figures of the queues are read (s)
_FIGURES_EVERY = 5.0


@dataclass(frozen=True)
class RabbitSource:
    """Delivers one routed type's messages to this process (see :class:`~eventcore.Source`)."""

    transport: RabbitMQTransport
    event_type: type

    async def fetch(self, room: int) -> Sequence[tuple[Any, RabbitReceipt]]:
        """Wait for pushed messages; return at most *room* of them."""
        return await self.transport.fetch_for(self.event_type, room)


class RabbitMQTransport:
    """Routes event types through RabbitMQ quorum queues (see
    :mod:`eventcore.transports.rabbitmq`).

    :param url: ``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS);
        credentials are never logged or shown
    :param group: the consumer group: every process of one service uses the same
        group and shares the work; another service uses its own and gets a copy
    :param prefix: the name of the topic exchange, and the first part of queue names
    :param partitions: for types with a ``key``: how many queues, each with a
        single active consumer (one key is handled in order by one process at a time)
    :param max_deliver: deliveries of one message before it becomes a dead letter
        (the queues' ``x-delivery-limit``)
    :param max_length: the most messages a queue holds (``x-max-length`` with
        ``reject-publish``: a full queue refuses a publish, and the type's overflow
        policy decides); None: no limit
    :param max_length_bytes: the most bytes a queue holds, as ``max_length``
    :param groups: the groups that receive what this process publishes (default:
        its own group); their queues are created when missing, so each gets its copy
        also before its first process starts
    :param publish_timeout: seconds to wait for RabbitMQ's confirmation
    :param connect_timeout: seconds a connection may take (at start, and each
        attempt to reconnect)
    :param format: ``"json"`` or ``"msgpack"`` on the wire
    :param max_size: the largest message sent or decoded, in bytes
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        group: str,
        groups: Sequence[str] | None = None,
        prefix: str = "eventcore",
        max_length: int | None = None,
        max_length_bytes: int | None = None,
        max_deliver: int = 5,
        partitions: int = 1,
        publish_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        format: str = "json",
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._url = validate.url("url", url, ("amqp", "amqps"))
        self.group = validate.token("group", group, names="RabbitMQ queues")
        self.prefix = validate.token("prefix", prefix, names="RabbitMQ exchanges and queues")
        self.partitions = validate.count("partitions", partitions)
        self.max_deliver = validate.count("max_deliver", max_deliver)
        self.max_length = validate.count("max_length", max_length, optional=True)
        self.max_length_bytes = validate.count("max_length_bytes", max_length_bytes, optional=True)
        self.groups = validate.groups(groups, self.group)
        self.publish_timeout = validate.seconds("publish_timeout", publish_timeout)
        self.connect_timeout = validate.seconds("connect_timeout", connect_timeout)
        self._format = validate.choice("format", format, ("json", "msgpack"))
        self._max_size = validate.count("max_size", max_size)
        self._settings = Settings(self.prefix, self.max_deliver, max_length, max_length_bytes)
        self._routes: dict[type, Route] = {}
        self._inboxes: dict[type, Inbox] = {}
        self._ledger: Ledger[RabbitReceipt] = Ledger()
        self._crew = Crew("eventcore-rabbitmq", logger)
        self._bus: Dispatcher | None = None
        self._link: Link | None = None
        self._declarer: Declarer | None = None
        self._publisher: Publisher | None = None
        self._reader: Reader | None = None
        self._settler: Settler[RabbitReceipt] | None = None

    def __repr__(self) -> str:
        return (
            f"RabbitMQTransport({redact(self._url)!r}, group={self.group!r}, "
            f"prefix={self.prefix!r})"
        )

    # -- life ------------------------------------------------------------------------

    async def open(
        self, bus: Dispatcher, *, task_group: anyio.abc.TaskGroup | None = None
    ) -> None:
        """Connect, then declare the exchanges and the queues of the routed types known
        now (others on first use). The transport's tasks run in *task_group* (the
        dispatcher's, which outlives :meth:`close`).

        :raises InvalidConfiguration: not on asyncio, or an existing queue has other
            arguments than this transport's
        :raises BrokerUnavailable: RabbitMQ cannot be reached
        """
        require_asyncio("RabbitMQ")
        if self._link is not None:
            raise InvalidConfiguration(
                f"{self!r} is already open for another dispatcher: give each its own transport"
            )
        link = Link(
            self._url,
            name=f"eventcore:{self.group}",
            connect_timeout=self.connect_timeout,
            on_up=self._reconnected,
        )
        await link.connect()
        self._link, self._bus = link, bus
        codec = Codec(
            bus.names,
            format=self._format,  # type: ignore[arg-type]  # checked in __init__
            max_size=self._max_size,
            keys=lambda t: bus.config(t).key,
        )
        self._publisher = Publisher(
            link, self._settings, codec, publish_timeout=self.publish_timeout
        )
        self._reader = Reader(bus, codec, self._ledger, self.max_deliver)
        settle = Settle(link, self._ledger, self._settings, self.group, self.publish_timeout)
        self._settler = Settler(self._ledger, settle.apply, logger=logger)
        try:
            await self._declare_all()
            await self._crew.start(
                {"settle": self._settler.run, "link": link.watch, "figures": self._figures},
                task_group=task_group,
            )
        except BaseException:
            await self.close()  # a failed open leaves nothing behind
            raise

    async def _declare_all(self) -> None:
        """The exchanges, and the queues of every routed type known to the dispatcher."""
        bus, link = self._require_open()
        if self._declarer is None:
            self._declarer = Declarer(link, self._settings)
        try:
            await self._declarer.exchanges()
        except CONNECTION_ERRORS as exc:
            raise unavailable("RabbitMQ", link.where, exc, "declaring the exchanges") from None
        for event_type in {sub.event_type for sub in bus.subscriptions()} | set(
            bus.configured_types()
        ):
            if bus.transport_of(event_type) is self:
                await self._route(event_type)

    async def _reconnected(self) -> None:
        """After a reconnection: declare again, consume again (buffered messages and
        unsettled receipts of the old channel are RabbitMQ's to deliver again)."""
        for route in self._routes.values():
            route.declared.clear()
        for inbox in self._inboxes.values():
            inbox.forget()
        await self._declare_all()
        for event_type, inbox in self._inboxes.items():
            await self._subscribe(event_type, inbox)
            inbox.arrived.set()  # a waiting fetch looks again

    async def close(self) -> None:
        """Send every pending verdict, give back what was delivered but never fetched,
        and close the connection."""
        link = self._link
        if link is None:
            return
        try:
            if self._settler is not None and link.up.is_set():
                await self._settler.drain(self.publish_timeout * 2)
        finally:
            await self._crew.stop()
            self._ledger.clear()
            self._inboxes.clear()  # unacknowledged deliveries return to their queues
            for route in self._routes.values():  # their figures stay for stats()
                route.declared.clear()
            if self._declarer is not None:
                await self._declarer.close()
            self._link = self._declarer = None
            self._publisher = self._reader = self._settler = None
            await link.close()

    def _require_open(self) -> tuple[Dispatcher, Link]:
        if self._bus is None or self._link is None:
            raise TransportError("the RabbitMQ transport is not open: start the dispatcher")
        return self._bus, self._link

    # -- routes ----------------------------------------------------------------------

    async def _route(self, event_type: type) -> Route:
        """*event_type*'s route, its queues declared for every group it feeds."""
        route = self._routes.get(event_type)
        if route is not None and route.declared.issuperset(self.groups):
            return route
        bus, _ = self._require_open()
        key = bus.config(event_type).key
        if route is None or (route.key is None) != (key is None):  # new, or re-keyed
            name = bus.names.resolve(event_type).name
            fresh = Route(event_type, name, key, self.partitions)
            if route is not None:  # re-keyed: the figures go on
                fresh.figures.update(route.figures)
                fresh.pending = route.pending
            route = self._routes[event_type] = fresh
        route.key = key
        for group in self.groups:
            await self._declare(route, group)
        return route

    async def _declare(self, route: Route, group: str) -> None:
        if group in route.declared:
            return
        declarer = self._declarer
        assert declarer is not None
        async with route.lock:
            if group not in route.declared:
                await declarer.route(route, group, own=group == self.group)
                route.declared.add(group)

    async def _again(self, route: Route) -> None:
        """Declare the exchanges and *route* again (a publish was returned, or its
        exchange was missing: something was deleted under the service)."""
        route.declared.clear()
        if self._declarer is not None:
            await self._declarer.exchanges()
        await self._route(route.event_type)

    # -- publishing ------------------------------------------------------------------

    async def send(
        self,
        event_type: type,
        event: Any,
        *,
        deadline: float | None = None,
        principal: Any = None,
    ) -> None:
        """Publish *event*; return once RabbitMQ confirmed it (see ``publish``).

        :raises QueueFull: a queue is full, or RabbitMQ is unreachable
        :raises PublishUnconfirmed: no confirmation within ``publish_timeout``
        :raises TransportError: RabbitMQ returned it as unroutable
        """
        route = self._routes.get(event_type)
        if route is None or not route.declared.issuperset(self.groups):
            route = await self._route(event_type)
        publisher = self._publisher
        if publisher is None:
            raise TransportError("the RabbitMQ transport is not open: start the dispatcher")
        await publisher.send(
            route, event, deadline=deadline, principal=principal, again=self._again
        )

    # -- consuming -------------------------------------------------------------------

    def source(self, event_type: type) -> RabbitSource:
        """The source of *event_type*'s messages for this process's group."""
        return RabbitSource(self, event_type)

    async def fetch_for(self, event_type: type, room: int) -> list[tuple[Any, RabbitReceipt]]:
        """At most *room* of *event_type*'s delivered messages (consuming from now on)."""
        inbox = self._inboxes.get(event_type)
        if inbox is None or inbox.channel is None:
            inbox = await self._consume(event_type)
        reader = self._reader
        assert reader is not None
        return await reader.take(inbox, room)

    async def _consume(self, event_type: type) -> Inbox:
        route = await self._route(event_type)
        if self.group not in self.groups:  # it consumes without publishing to its group
            await self._declare(route, self.group)
        inbox = self._inboxes.get(event_type)
        if inbox is None or inbox.route is not route:
            inbox = self._inboxes[event_type] = Inbox(route)
        await self._subscribe(event_type, inbox)
        return inbox

    async def _subscribe(self, event_type: type, inbox: Inbox) -> None:
        bus, link = self._require_open()
        async with inbox.lock:
            channel = link.consuming
            if inbox.channel is not None or channel is None:
                return
            queues = inbox.route.queues(self._settings, self.group)
            config = bus.config(event_type)  # what the type may hold: waiting and running
            await inbox.subscribe(channel, queues, config.queue_size + config.concurrency)

    # -- observing -------------------------------------------------------------------

    def queues_of(self, event_type: type, group: str | None = None) -> list[str]:
        """The queues that hold *event_type*'s events for *group* (default: this
        transport's group), e.g. to inspect them with ``rabbitmqctl list_queues``.

        :raises InvalidConfiguration: the type is not registered with a name yet
        """
        route = self._routes.get(event_type)
        if route is None:
            raise InvalidConfiguration(
                f"{event_type.__qualname__} has no route on {self!r} yet: open the "
                "dispatcher (or publish one) first"
            )
        return route.queues(self._settings, group or self.group)

    def stream_of(
        self, event_type: type | str, partition: int = 0, *, group: str | None = None
    ) -> str:
        """The queue that holds *event_type*'s events (a class, or its wire name) of
        *partition* for *group* (default: this transport's group), e.g. to inspect it
        with ``rabbitmqctl list_queues`` (the name shared with the other transports)."""
        names = None if self._bus is None else self._bus.names
        name = wire_name(event_type, names)
        return queue_name(self.prefix, group or self.group, name, partition)

    def declared(self) -> list[str]:
        """Every queue this transport declared (its types' queues for each group it
        feeds or consumes, and the dead-letter queue), e.g. to delete them."""
        names = {self._settings.dead_queue}
        for route in self._routes.values():
            for group in {*self.groups, self.group}:
                names.update(route.queues(self._settings, group))
        return sorted(names)

    def broker_stats(self, event_type: type) -> BrokerStats:
        """The type's figures on RabbitMQ as seen by this process."""
        route = self._routes.get(event_type)
        return BrokerStats() if route is None else route.stats()

    async def _figures(self) -> None:
        """Read the ready messages of this group's queues now and then (a crew job)."""
        while True:
            await asyncio.sleep(_FIGURES_EVERY)
            declarer, link = self._declarer, self._link
            if declarer is None or link is None or not link.up.is_set():
                continue
            for route in list(self._routes.values()):
                try:
                    counts = [
                        await declarer.ready(q) for q in route.queues(self._settings, self.group)
                    ]
                except CONNECTION_ERRORS:
                    break
                if all(c is not None for c in counts):
                    route.pending = sum(c for c in counts if c is not None)
