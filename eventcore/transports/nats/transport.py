"""The NATS transport itself: its settings, its life (connect, set up, close) and
the seam's methods, over the package's publish / consume / settle / layout
modules and the shared kit."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import nats.errors
from nats.aio.client import Client

from ..._errors import EventcoreError, InvalidConfiguration, TransportError
from ..._transport import BrokerStats, Verdict
from ..._wire.codec import DEFAULT_MAX_SIZE, Codec
from .._kit import (
    Crew,
    KeepAlive,
    Ledger,
    Settler,
    redact,
    refused_send,
    remaining,
    require_asyncio,
    unavailable,
    validate,
    wire_name,
)
from .consume import Consumer, NatsSource
from .layout import Layout, Route, not_ready, stream_name
from .publish import Publisher
from .settings import settings as checked_settings
from .settle import NatsReceipt, Settling

if TYPE_CHECKING:
    from ..._dispatcher import Dispatcher

logger = logging.getLogger("eventcore.nats")

#: bytes of a message's max_payload kept for its headers (Nats-Msg-Id and framing)
_HEADER_ROOM = 256


class _Session:
    """What one open run of the transport holds (built by ``open``, ended by ``close``)."""

    def __init__(self, transport: NatsTransport, nc: Client, bus: Dispatcher) -> None:
        s = transport.settings
        # the envelope and its header must fit the server's max_payload
        self.codec = Codec(
            bus.names,
            format=s.format,  # type: ignore[arg-type]  # checked in settings()
            max_size=min(s.max_size, nc.max_payload - _HEADER_ROOM),
            keys=lambda t: bus.config(t).key,
        )
        self.nc = nc
        self.bus = bus
        self.layout = Layout(s, nc.jetstream(timeout=s.setup_timeout), bus)
        self.ledger: Ledger[NatsReceipt] = Ledger()
        self.publisher = Publisher(s, nc, self.codec)
        self.consumer = Consumer(s, nc, self.layout, self.ledger, self.codec, bus)
        #: open() ended: from then on, the dispatcher not running means shutdown
        self.opened = False
        self.settling = settling = Settling(
            nc, s.group, self.ledger, self.layout, self.publisher, self._closing
        )
        self.settler = Settler(self.ledger, settling.apply, logger=logger)
        self.keep_alive = KeepAlive(
            self.ledger, settling.refresh, every=s.ack_wait / 4, logger=logger
        )
        self.crew = Crew(f"eventcore-nats-{s.group}", logger)

    def _closing(self) -> bool:
        """Whether the dispatcher shuts down (its give-backs are held: see :mod:`.settle`)."""
        return self.opened and not self.bus.running


class NatsTransport:
    """Routes event types through NATS JetStream (see the package doc).

    :param url: the server(s), comma-separated; credentials in the URL are never
        logged or shown
    :param group: the consumer group: every process of one service uses the same
        group and shares the work; another service uses its own and gets a copy
    :param prefix: the first token of subjects and stream names
    :param partitions: for types with a ``key``: how many ordered partitions
    :param max_deliver: deliveries of one message before it becomes a dead letter
        (a delivery that crashed its process, or outlived ``ack_wait`` unseen)
    :param ack_wait: seconds JetStream waits for an ack before redelivering (held
        messages are kept alive with ``in_progress`` every quarter of it)
    :param max_msgs: the stream's limit of messages (None: no limit)
    :param max_bytes: the stream's limit of bytes (None: no limit)
    :param max_ack_pending: messages in flight per consumer (group) across the
        service; each process also holds no more than its local queue has room for
        (a keyed type's partitions have one each)
    :param groups: the groups that receive what this process publishes (default:
        its own group); each gets its own copy, kept for it until one of its
        processes handled it, also before its first process starts
    :param duplicate_window: seconds in which a re-sent event id is deduplicated
    :param publish_timeout: seconds to wait for JetStream's acknowledgement
    :param connect_timeout: seconds the first connection, and the set-up of streams
        and consumers (waiting for a new stream's leader), may take
    :param fetch_wait: seconds one pull request stays open (at most 1 s: closing
        waits until the open requests ended, as a message on its way to a request
        whose subscription is gone would wait ``ack_wait``)
    :param storage: ``"file"`` or ``"memory"`` for new streams
    :param replicas: replicas of new streams and consumers (clustered JetStream)
    :param format: ``"json"`` or ``"msgpack"`` on the wire
    :param max_size: the largest message sent or decoded, in bytes
    :param options: more ``nats.connect`` options: ``tls`` (an SSLContext),
        ``user_credentials``, ``nkeys_seed``, ``token``, ``user``, ``password``...
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        group: str,
        prefix: str = "eventcore",
        partitions: int = 1,
        max_deliver: int = 5,
        ack_wait: float = 30.0,
        max_msgs: int | None = None,
        max_bytes: int | None = None,
        max_ack_pending: int = 1024,
        groups: Sequence[str] | None = None,
        duplicate_window: float = 120.0,
        publish_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        fetch_wait: float = 1.0,
        storage: str = "file",
        replicas: int = 1,
        format: str = "json",
        max_size: int = DEFAULT_MAX_SIZE,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = checked_settings(
            url,
            group=group,
            prefix=prefix,
            partitions=partitions,
            max_deliver=max_deliver,
            ack_wait=ack_wait,
            max_msgs=max_msgs,
            max_bytes=max_bytes,
            max_ack_pending=max_ack_pending,
            groups=groups,
            duplicate_window=duplicate_window,
            publish_timeout=publish_timeout,
            connect_timeout=connect_timeout,
            fetch_wait=fetch_wait,
            storage=storage,
            replicas=replicas,
            format=format,
            max_size=max_size,
            options=options,
        )
        s = self.settings
        self.group, self.prefix = s.group, s.prefix
        self.partitions, self.max_deliver, self.ack_wait = s.partitions, s.max_deliver, s.ack_wait
        self.max_msgs, self.max_bytes, self.max_ack_pending = (
            s.max_msgs,
            s.max_bytes,
            s.max_ack_pending,
        )
        self.duplicate_window, self.publish_timeout = s.duplicate_window, s.publish_timeout
        self.connect_timeout, self.fetch_wait, self.replicas = (
            s.connect_timeout,
            s.fetch_wait,
            s.replicas,
        )
        self._session: _Session | None = None
        #: the routes of past runs, for their figures in stats
        self._routes: dict[type, Route] = {}

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups that receive what this process publishes."""
        return self.settings.groups

    @groups.setter
    def groups(self, groups: Sequence[str]) -> None:
        if self._session is not None:
            raise InvalidConfiguration("the groups of an open NATS transport cannot change")
        self.settings = replace(self.settings, groups=validate.groups(groups, self.group))

    def __repr__(self) -> str:
        servers = ",".join(redact(server) for server in self.settings.servers)
        return f"NatsTransport({servers!r}, group={self.group!r}, prefix={self.prefix!r})"

    # -- life ------------------------------------------------------------------------

    async def open(
        self, bus: Dispatcher, *, task_group: anyio.abc.TaskGroup | None = None
    ) -> None:
        """Connect, then create or check the streams and consumers of the routed types
        known now (others on first use). The transport's tasks run in *task_group*
        (the dispatcher's, which outlives :meth:`close`).

        :raises InvalidConfiguration: not on asyncio, or an existing stream or
            consumer does not match this transport's settings
        :raises BrokerUnavailable: the server cannot be reached, refused the
            credentials, or JetStream gave no stream a leader within ``connect_timeout``
        """
        require_asyncio("NATS")
        if self._session is not None:
            raise InvalidConfiguration(
                f"{self!r} is already open for another dispatcher: give each its own transport"
            )
        nc = await self._connect()
        session = self._session = _Session(self, nc, bus)
        try:
            session.layout.routes = self._routes
            await session.publisher.start()
            await session.crew.start(
                {"settle": session.settler.run, "in-progress": session.keep_alive.run},
                task_group=task_group,
            )
            await self._prepare(session, bus)
            session.opened = True
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()  # a failed open leaves nothing behind
            raise

    async def _connect(self) -> Client:
        """The first connection, bounded by ``connect_timeout``: each server is tried
        twice, then it fails with the server's reason (a closed port, wrong
        credentials), not after the whole timeout. After it, the client reconnects
        forever."""
        s = self.settings
        where = ", ".join(redact(server) for server in s.servers)
        errors: list[BaseException] = []

        async def on_error(exc: Exception) -> None:
            if self._session is None:  # connecting: open() reports it
                errors.append(exc)
            else:
                logger.warning("NATS: %s: %s", type(exc).__name__, redact(str(exc)))

        nc = Client()
        options: dict[str, Any] = {
            "servers": list(s.servers),
            "name": f"eventcore:{s.group}",
            "connect_timeout": min(2.0, s.connect_timeout),
            "max_reconnect_attempts": 1,  # at start; forever once connected
            "reconnect_time_wait": 0.5,
            "error_cb": on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            **s.options,
        }
        with anyio.move_on_after(s.connect_timeout):
            try:
                await nc.connect(**options)
            except Exception as exc:
                errors.append(exc)
        if nc.is_connected:
            nc.options["max_reconnect_attempts"] = -1
            return nc
        with anyio.CancelScope(shield=True):
            try:
                await nc.close()
            except Exception as exc:  # nothing to close
                logger.debug("closing a failed NATS connection: %s", exc)
        told = [e for e in errors if not isinstance(e, nats.errors.NoServersError)]
        said = [e for e in told if isinstance(e, nats.errors.Error)]  # the server's words
        reason: BaseException | str = (
            (said or told)[-1]
            if told
            else f"no answer within connect_timeout={s.connect_timeout} s"
        )
        raise unavailable("NATS", where, reason, "connecting") from None

    async def _prepare(self, session: _Session, bus: Dispatcher) -> None:
        """Set up the routed types known now: streams, and consumers where subscribed."""
        subscribed = {sub.event_type for sub in bus.subscriptions()}
        where = ", ".join(redact(server) for server in self.settings.servers)
        for event_type in {*subscribed, *bus.configured_types()}:
            if bus.transport_of(event_type) is not self:
                continue
            try:
                await session.layout.for_publish(event_type)
                if event_type in subscribed:
                    await session.consumer.pulls_of(event_type)
            except EventcoreError:
                raise
            except Exception as exc:
                doing = f"setting up {event_type.__qualname__} (waiting for a stream leader)"
                if not_ready(exc):
                    raise unavailable("JetStream", where, exc, doing) from None
                raise TransportError(
                    f"JetStream failed while setting up {event_type.__qualname__}: "
                    f"{type(exc).__name__}: {redact(str(exc))}"
                ) from None

    async def close(self) -> None:
        """Give back what was fetched and not handed over, and what the open pull
        requests still bring: once they all ended (the give-backs of the shutdown
        were held until then: see :mod:`.settle`), send every pending ack / nak,
        make sure the server has them, and close."""
        session = self._session
        if session is None:
            return
        nc = session.nc
        try:
            await session.publisher.stop()
            try:
                await session.consumer.stop()
            finally:  # no request of this process is open: the held give-backs go
                session.settling.release()
            for key, _ in session.ledger.unsettled():  # never handed over: back now
                session.ledger.settle(key, Verdict.SHUTDOWN)
            await session.settler.drain(self.publish_timeout * 2)
        finally:
            await session.crew.stop()
            session.ledger.clear()
            session.layout.reset()  # the routes' figures stay for stats()
            self._session = None  # from here on a disconnect is ours
            try:
                await nc.flush(timeout=max(1, int(self.publish_timeout)))
            except Exception as exc:
                logger.warning(
                    "the last acks may not have reached NATS (they will be redelivered): %s",
                    redact(str(exc)),
                )
            finally:
                try:
                    await nc.close()
                except Exception as exc:  # the server went away first
                    logger.warning("closing the NATS connection: %s", redact(str(exc)))

    async def _on_disconnected(self) -> None:
        if self._session is None:  # closing
            return
        logger.warning("NATS: disconnected; reconnecting (publishes follow the overflow policy)")

    async def _on_reconnected(self) -> None:
        logger.info("NATS: reconnected")

    def _require(self) -> _Session:
        if self._session is None:
            raise TransportError("the NATS transport is not open: start the dispatcher")
        return self._session

    # -- the seam --------------------------------------------------------------------

    async def send(
        self,
        event_type: type,
        event: Any,
        *,
        deadline: float | None = None,
        principal: Any = None,
    ) -> None:
        """Write *event* to its stream(s); return once JetStream acknowledged it.

        :param deadline: when the publish must have returned (``anyio.current_time()``
            clock); None: ``publish_timeout`` only
        :param principal: who publishes (written into the envelope)
        :raises QueueFull: the stream is at its limits, the server is unreachable, or
            JetStream has no leader for the stream yet (the type's overflow policy
            decides what ``publish`` does)
        :raises PublishUnconfirmed: no acknowledgement in time (a retry of the same
            event object is deduplicated)
        :raises TransportError: JetStream refused the write
        """
        session = self._require()
        route = session.layout.known(event_type)
        if route is None or not route.stream_ready:
            route = await self._route_for_send(session, event_type, deadline)
        await session.publisher.send(route, event, deadline=deadline, principal=principal)

    async def _route_for_send(
        self, session: _Session, event_type: type, deadline: float | None
    ) -> Route:
        """The route, set up (or checked again after the stream vanished or lost its
        leader) within the publish's deadline, or ``publish_timeout`` without one;
        JetStream not ready is no room (the type's overflow policy decides)."""
        left = remaining(deadline)
        try:
            with anyio.fail_after(self.publish_timeout if left is None else left):
                return await session.layout.for_publish(event_type)
        except EventcoreError:
            raise
        except Exception as exc:
            if not_ready(exc):
                raise refused_send(
                    event_type,
                    f"JetStream has no leader for its stream yet, or does not answer "
                    f"({type(exc).__name__})",
                ) from None
            raise TransportError(
                f"JetStream failed while setting up {event_type.__qualname__}: "
                f"{type(exc).__name__}: {redact(str(exc))}"
            ) from None

    def source(self, event_type: type) -> NatsSource:
        """The source of *event_type*'s messages for this process's group."""
        return NatsSource(self._require().consumer, event_type)

    # -- observing -------------------------------------------------------------------

    def stream_of(
        self, event_type: type | str, partition: int = 0, *, group: str | None = None
    ) -> str:
        """The stream that holds *event_type*'s events (a class, or its wire name) for
        *group* (default: this transport's group), e.g. to inspect it with the
        ``nats`` CLI. Every partition of a type is on the same stream (on the
        subject ``...<partition>``): *partition* is accepted for the shape shared
        with the other transports."""
        names = None if self._session is None else self._session.bus.names
        return stream_name(self.prefix, group or self.group, wire_name(event_type, names))

    def broker_stats(self, event_type: type) -> BrokerStats:
        """The type's figures on JetStream as seen by this process."""
        route = self._routes.get(event_type)
        return BrokerStats() if route is None else route.stats()
