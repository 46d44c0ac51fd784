"""The Redis transport itself: its settings, its life (connect, load the scripts,
close) and the seam's methods, over the package's publish / consume / settle /
layout modules and the shared kit."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc

from ..._errors import InvalidConfiguration, TransportError
from ..._transport import BrokerStats
from .._kit import (
    Crew,
    KeepAlive,
    Settler,
    redact,
    require_asyncio,
    unavailable,
    wire_name,
)
from .client import aioredis
from .consume import RedisSource
from .publish import RECONNECT_FOR, Publisher
from .settings import Counters, Session, consumer_name, stream_name
from .settings import settings as checked_settings
from .settle import Janitor, Settling

if TYPE_CHECKING:
    from ..._dispatcher import Dispatcher

logger = logging.getLogger("eventcore.redis")

#: how long opening may take to connect (s)
_CONNECT_TIMEOUT = 5.0


class RedisTransport:
    """Routes event types through Redis Streams consumer groups (see the package doc).

    :param url: ``redis://``, ``rediss://`` (TLS) or ``unix://``, with
        ``user:password@`` for ACLs; never logged or shown in reprs with its credentials
    :param group: the consumer group: the service's name (each service gets every
        event once; the processes of one service share them)
    :param prefix: the first part of every key this transport writes
    :param partitions: streams per keyed type, chosen by a hash of the event's key
        (unkeyed types use one stream)
    :param max_deliver: deliveries of one entry before it is dead-lettered unhandled
    :param claim_idle: seconds an entry stays pending in a consumer that stopped
        keeping it (a live consumer keeps what it handles) before another one of
        the group claims it; also how long a keyed type's stream lease lasts
    :param max_len: the most unacknowledged entries a stream holds; a publish into a
        full stream raises :class:`~eventcore.QueueFull` (None: unbounded)
    :param dedup: drop a publish whose event id was published in the last *dedup*
        seconds (a retry after a lost connection, or of the same event object by
        the caller); None: off
    :param groups: consumer groups this publisher feeds: created on each stream
        before its first write, so a group whose processes start later still gets
        everything published for it (default: none; a consumer creates its own)
    :param format: ``"json"`` or ``"msgpack"``
    :param max_size: the largest message in bytes, checked before sending and reading
    :param recreate_group: when a group vanishes, recreate it from the stream's
        start (``0``) instead of raising :class:`GroupVanished`
    :param client: a ``redis.asyncio.Redis`` of your own (TLS, ACL, sentinel...);
        *url* is then ignored and the client is not closed by the transport
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        group: str,
        prefix: str = "eventcore",
        partitions: int = 1,
        max_deliver: int = 5,
        claim_idle: float = 30.0,
        max_len: int | None = 100_000,
        dedup: float | None = None,
        groups: Sequence[str] | None = None,
        format: Literal["json", "msgpack"] = "json",
        max_size: int = 1024 * 1024,
        recreate_group: bool = False,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.settings = checked_settings(
            url,
            group=group,
            prefix=prefix,
            partitions=partitions,
            max_deliver=max_deliver,
            claim_idle=claim_idle,
            max_len=max_len,
            dedup=dedup,
            format=format,
            max_size=max_size,
            recreate_group=recreate_group,
            groups=groups,
        )
        s = self.settings
        self.url, self.group, self.prefix, self.groups = s.url, s.group, s.prefix, s.groups
        self.partitions, self.max_deliver, self.claim_idle = (
            s.partitions,
            s.max_deliver,
            s.claim_idle,
        )
        self.max_len, self.dedup, self.recreate_group = s.max_len, s.dedup, s.recreate_group
        self.format: Literal["json", "msgpack"] = format
        self.max_size = s.max_size
        #: this process's consumer name in every group (reported in stats)
        self.consumer = consumer_name()
        self._given_client = client
        self._session: Session | None = None
        self._publisher: Publisher | None = None
        self._settler: Settler[Any] | None = None
        self._crew: Crew | None = None
        self._sources: dict[type, RedisSource] = {}
        #: the figures of every run, for stats
        self._counters: dict[type, Counters] = defaultdict(Counters)

    def __repr__(self) -> str:
        return (
            f"RedisTransport({redact(self.url)!r}, group={self.group!r}, "
            f"prefix={self.prefix!r}, consumer={self.consumer!r})"
        )

    # -- life --------------------------------------------------------------------------

    async def open(
        self, bus: Dispatcher, *, task_group: anyio.abc.TaskGroup | None = None
    ) -> None:
        """Connect, load the scripts and start the transport's tasks (asyncio only) in
        *task_group* (the dispatcher's, which outlives :meth:`close`).

        :raises InvalidConfiguration: not on asyncio, a client that decodes
            responses, or open for another dispatcher
        :raises BrokerUnavailable: Redis cannot be reached (or refused the credentials)
        """
        require_asyncio("Redis")
        if self._session is not None:
            raise InvalidConfiguration(
                f"{self!r} is open for another dispatcher: give each dispatcher "
                "a transport of its own"
            )
        redis = self._client()
        session = Session(self.settings, redis, bus, self.consumer)
        session.counters = self._counters  # kept across runs
        try:
            with anyio.fail_after(_CONNECT_TIMEOUT):
                await session.load_scripts()
        except Exception as exc:
            if self._given_client is None:
                await redis.aclose()
            raise unavailable("Redis", redact(self.url), exc, "connecting") from None
        self._session = session
        self._publisher = Publisher(session)
        settling = Settling(session)
        self._settler = Settler(session.ledger, settling.apply, logger=logger)
        keep_alive = KeepAlive(
            session.ledger, settling.refresh, every=self.claim_idle / 3, logger=logger
        )
        self._crew = Crew(f"eventcore-redis-{self.group}", logger)
        try:
            await self._crew.start(
                {
                    "settle": self._settler.run,
                    "keep-alive": keep_alive.run,
                    "janitor": Janitor(session, self._sources).run,
                },
                task_group=task_group,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()  # a failed open leaves nothing behind
            raise
        logger.info("%r: connected as consumer %s", self, self.consumer)

    def _client(self) -> Any:
        if self._given_client is not None:
            if self._given_client.get_connection_kwargs().get(  # type: ignore[no-untyped-call]
                "decode_responses"
            ):
                raise InvalidConfiguration(
                    "the Redis transport needs a client with decode_responses=False "
                    "(messages are bytes)"
                )
            return self._given_client
        try:
            return aioredis.Redis.from_url(
                self.url,
                # no socket timeout: redis-py would wrap every command in a task
                # (asyncio.wait_for); the transport bounds its own calls instead
                socket_timeout=None,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                health_check_interval=10,
                client_name=f"eventcore-{self.group}",
            )
        except ValueError as exc:
            raise InvalidConfiguration(f"url: {redact(str(exc))}") from None

    async def close(self) -> None:
        """Send the acks still queued, stop the transport's tasks, give up the leases
        of keyed types, close the connections."""
        session, crew, settler = self._session, self._crew, self._settler
        if session is None:
            return
        try:
            if settler is not None:
                await settler.drain(RECONNECT_FOR)
        finally:
            if crew is not None:
                await crew.stop()
            for source in self._sources.values():
                if source.leases is not None:
                    try:
                        await source.leases.release()
                    except Exception as exc:
                        logger.warning("releasing the leases of %r failed: %s", source, exc)
            self._sources.clear()
            session.ledger.clear()
            self._session = self._publisher = self._settler = self._crew = None
            if self._given_client is None:
                await session.redis.aclose()

    def _require(self) -> Session:
        if self._session is None:
            raise TransportError("the Redis transport is not open: start the dispatcher")
        return self._session

    # -- the seam ----------------------------------------------------------------------

    async def send(
        self,
        event_type: type,
        event: Any,
        *,
        deadline: float | None = None,
        principal: Any = None,
    ) -> None:
        """Append *event* to its stream; return once Redis acknowledged the XADD.

        The publishes of one event-loop tick go out in one pipeline. Once its
        message has joined a pipeline a publish is not cancelled before Redis
        answered (it took effect, so it returns).

        :param deadline: when the publish must have returned (``anyio.current_time()``
            clock); None: the transport's own limits
        :param principal: who publishes (written into the envelope)
        :raises QueueFull: the stream holds ``max_len`` unacknowledged entries, or
            Redis did not take it before the deadline (nothing stored)
        :raises PublishUnconfirmed: its pipeline left and no answer came in time
        :raises WireError: the event cannot be encoded, or is too large
        """
        self._require()
        assert self._publisher is not None
        await self._publisher.send(event_type, event, deadline=deadline, principal=principal)

    def source(self, event_type: type) -> RedisSource:
        """This process's consumer of *event_type* in the transport's group."""
        source = RedisSource(self._require(), event_type)
        self._sources[event_type] = source
        return source

    # -- observing ---------------------------------------------------------------------

    def stream_of(
        self, event_type: type | str, partition: int = 0, *, group: str | None = None
    ) -> str:
        """The stream of *event_type*'s partition *partition* (a class, or its wire
        name; usable before the transport is open). Every group reads the same
        streams: *group* is accepted for the shape shared with the other transports."""
        names = None if self._session is None else self._session.bus.names
        return stream_name(self.prefix, wire_name(event_type, names), partition)

    def streams_of(self, event_type: type | str) -> list[str]:
        """Every stream *event_type*'s events may be on (all its partitions)."""
        return [self.stream_of(event_type, p) for p in range(self.partitions)]

    def dead_stream_of(self, event_type: type | str) -> str:
        """The dead-letter stream of *event_type*."""
        names = None if self._session is None else self._session.bus.names
        return f"{self.prefix}:dead:{wire_name(event_type, names)}"

    def broker_stats(self, event_type: type) -> BrokerStats:
        """*event_type*'s figures: its group's backlog on Redis (not delivered yet,
        or delivered and not acknowledged; refreshed every few seconds) and counters."""
        c = self._counters.get(event_type) or Counters()
        return BrokerStats(
            pending=c.pending,
            redelivered=c.redelivered,
            acked=c.acked,
            nacked=c.nacked,
            terminated=c.terminated,
            dead_lettered=c.dead_lettered,
            consumer=self.consumer,
        )
