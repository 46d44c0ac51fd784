"""NATS JetStream: route event types through streams and durable pull consumers.

::

    from eventcore import Dispatcher
    from eventcore.transports.nats import NatsTransport

    bus = Dispatcher(transport=NatsTransport("nats://127.0.0.1:4222", group="billing"))

How a routed type maps onto JetStream (``prefix`` defaults to ``eventcore``):

* a stream per event type and consumer group, ``<prefix>_<group>__<name>`` (dots of
  the registered name become underscores), on the subjects
  ``<prefix>.<group>.<name>.<partition>``, with work-queue retention: it keeps a
  message until its group acknowledged it, also when no process of the group has
  started yet. ``publish`` writes to the stream of every group in ``groups``
  (default: the transport's own group, the common case of one service whose
  processes both publish and consume). A stream is bounded by ``max_msgs`` /
  ``max_bytes`` with *discard new*: a full stream (its consumers behind) refuses
  the write, and the type's overflow policy decides what ``publish`` does.
  (Interest retention, one stream shared by all groups, lost messages across a
  server restart here; work queues did not.)
* a durable pull consumer per stream, shared by every process of the group:
  competing consumers, each event handled by one process of each group;
* a type with a ``key``: ``partitions`` consumers, one per partition of the key's
  hash, each with one message in flight at a time across the whole service, so
  the events of one key are handled in order by one process at a time (the
  trade-off: a partition is handled serially, so ``partitions`` bounds the type's
  parallelism across the service);
* dead letters of routed types are also written to the stream
  ``<prefix>_dead_letters`` (subject ``<prefix>.dead.<name>``) with the reason in
  headers, before the original message is acknowledged.

``publish`` returns once JetStream acknowledged the write; the message id header
(``Nats-Msg-Id``) is the event id, so a retry after :class:`PublishUnconfirmed`
of the same event object is deduplicated within ``duplicate_window``. A fetched message ends in one
verdict: handled -> ack; failed after the local retries -> dead letter, ack;
shutdown before it was handled -> nak (another process takes it at once);
undecodable, unknown, or delivered more than ``max_deliver`` times -> dead
letter, term. Retries happen in the process (the type's ``Retry``), never as a
delayed nak, which would hold a place in ``max_ack_pending`` meanwhile; every
message held here, queued or running, is kept alive with ``in_progress`` every
half ``ack_wait``, so a message waiting in the local queue is never redelivered
elsewhere while it waits.

Runs on asyncio and uvloop (nats-py needs asyncio); on trio, starting a
dispatcher with a NATS-routed type raises :class:`~eventcore.InvalidConfiguration`.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._deadletters import DeadLetter, DeadLetterReason
from .._errors import InvalidConfiguration, PublishUnconfirmed, QueueFull, TransportError
from .._transport import BrokerStats, Verdict
from .._wire.codec import DEFAULT_MAX_SIZE, Codec
from .._wire.errors import WireError
from .._wire.ids import new_event_id
from ._kit.common import partition_of, redact, require_asyncio
from ._kit.tracecontext import current_traceparent, handler_context

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.js.api import (
        AckPolicy,
        ConsumerConfig,
        DiscardPolicy,
        RetentionPolicy,
        StorageType,
        StreamConfig,
    )
    from nats.js.client import JetStreamContext
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "eventcore.transports.nats needs nats-py: pip install 'eventcore[nats]'", name=exc.name
    ) from exc

from ._nats_routes import Route, check_layout, ensure_consumer, ensure_stream, stream_name

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from .._dispatcher import Dispatcher

logger = logging.getLogger("eventcore.nats")

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
#: JetStream's error codes for a stream that is at its limits (discard new)
_STREAM_FULL = {10077, 10047, 10078}
#: the status of a request nobody answered (JetStream not ready)
_NO_RESPONDERS = 503
#: replies after which a stream is checked (and created) again before the next write
_GONE = {_NO_RESPONDERS, 10059}
#: what a positive publish acknowledgement is read as
_STORED: dict[str, Any] = {}
#: bytes of a message's max_payload kept for its headers (Nats-Msg-Id and framing)
_HEADER_ROOM = 256
#: how long a fetch waits for more partitions once one answered, in seconds
_PARTITION_GRACE = 0.005
#: the most messages one fetch asks for
_MAX_BATCH = 256
#: how many unconfirmed event ids are remembered for safe retries
_REMEMBERED = 10_000


def _check_token(what: str, value: object) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise InvalidConfiguration(
            f"{what} must be letters, digits, '_' or '-' (it names NATS streams and "
            f"consumers), got {value!r}"
        )
    return value


def _check_positive(what: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidConfiguration(f"{what} must be a number > 0, got {value!r}")


class _Sending:
    """One event on its way: its id, and the groups whose streams stored it."""

    __slots__ = ("event", "id", "since", "stored")

    def __init__(self, event: Any, event_id: str) -> None:
        self.event = event
        self.id = event_id
        self.since = time.monotonic()
        self.stored: set[str] = set()

    def expired(self, transport: NatsTransport) -> bool:
        """Past the duplicate window, a re-send would no longer be deduplicated."""
        return time.monotonic() - self.since > transport.duplicate_window


class NatsReceipt:
    """Settles one fetched JetStream message (see :class:`~eventcore.Receipt`)."""

    __slots__ = ("attempts", "context", "msg", "reason", "route", "transport")

    def __init__(
        self,
        transport: NatsTransport,
        route: Route,
        msg: Msg,
        attempts: int,
        context: contextvars.Context | None,
    ) -> None:
        self.transport = transport
        self.route = route
        self.msg = msg
        self.attempts = attempts
        #: the handlers run in it: the publisher's trace context, when it sent one
        self.context = context
        #: why it is refused for good (a DeadLetterReason value), when it is
        self.reason: str | None = None

    def settle(self, verdict: Verdict) -> None:
        """Queue the ack / nak / term for this message (sent on the transport's task)."""
        self.transport._settle(self, verdict)


class NatsSource:
    """Fetches one routed type's messages for this process (see :class:`~eventcore.Source`)."""

    def __init__(self, transport: NatsTransport, event_type: type) -> None:
        self._transport = transport
        self._event_type = event_type

    async def fetch(self, room: int) -> Sequence[tuple[Any, NatsReceipt]]:
        """Wait up to ``fetch_wait`` for messages; return at most *room* of them."""
        return await self._transport._fetch(self._event_type, room)


class NatsTransport:
    """Routes event types through NATS JetStream (see the module doc).

    :param url: the server(s), comma-separated; credentials in the URL are never
        logged or shown
    :param group: the consumer group: every process of one service uses the same
        group and shares the work; another service uses its own and gets a copy
    :param prefix: the first token of subjects and stream names
    :param partitions: for types with a ``key``: how many ordered partitions
    :param max_deliver: deliveries of one message before it becomes a dead letter
        (a delivery that crashed its process, or outlived ``ack_wait`` unseen)
    :param ack_wait: seconds JetStream waits for an ack before redelivering (held
        messages are kept alive with ``in_progress`` every half of it)
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
    :param connect_timeout: seconds the first connection may take at start
    :param fetch_wait: seconds one fetch waits for messages before it asks again
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
        if not isinstance(url, str) or not url:
            raise InvalidConfiguration(f"url must be a nats:// URL, got {type(url).__name__}")
        self._servers = [part.strip() for part in url.split(",")]
        self.group = _check_token("group", group)
        self.prefix = _check_token("prefix", prefix)
        for what, value in (
            ("partitions", partitions),
            ("max_deliver", max_deliver),
            ("max_ack_pending", max_ack_pending),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfiguration(f"{what} must be an int >= 1, got {value!r}")
        for what, number in (
            ("ack_wait", ack_wait),
            ("duplicate_window", duplicate_window),
            ("publish_timeout", publish_timeout),
            ("connect_timeout", connect_timeout),
            ("fetch_wait", fetch_wait),
        ):
            _check_positive(what, number)
        for what, limit in (
            ("max_msgs", max_msgs),
            ("max_bytes", max_bytes),
        ):
            _check_positive(what, limit, optional=True)
        if storage not in ("file", "memory"):
            raise InvalidConfiguration(f"storage must be 'file' or 'memory', got {storage!r}")
        if format not in ("json", "msgpack"):
            raise InvalidConfiguration(f"format must be 'json' or 'msgpack', got {format!r}")
        self.partitions = partitions
        self.max_deliver = max_deliver
        self.ack_wait = float(ack_wait)
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.max_ack_pending = max_ack_pending
        if isinstance(groups, str):
            raise InvalidConfiguration("groups must be a list of group names, not one string")
        self.groups = tuple(dict.fromkeys(_check_token("group", g) for g in (groups or (group,))))
        self.duplicate_window = float(duplicate_window)
        self.publish_timeout = float(publish_timeout)
        self.connect_timeout = float(connect_timeout)
        self.fetch_wait = float(fetch_wait)
        self._storage = StorageType.FILE if storage == "file" else StorageType.MEMORY
        self.replicas = replicas
        self._format = format
        self._max_size = max_size
        self._options = dict(options or {})
        self._bus: Dispatcher | None = None
        self._codec: Codec | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._routes: dict[type, Route] = {}
        self._reply_prefix = ""
        self._tokens = itertools.count()
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: publishes that did not complete, by the identity of their event
        self._unconfirmed: dict[int, _Sending] = {}
        self._held: dict[int, NatsReceipt] = {}
        self._settling: deque[tuple[NatsReceipt, Verdict]] = deque()
        self._flushing = asyncio.Lock()
        self._closing = False
        self._settle_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dead_letters_ready = False

    def __repr__(self) -> str:
        servers = ",".join(redact(server) for server in self._servers)
        return f"NatsTransport({servers!r}, group={self.group!r}, prefix={self.prefix!r})"

    # -- life ------------------------------------------------------------------------

    async def open(self, bus: Dispatcher) -> None:
        """Connect, then create or check the streams and consumers of the routed types
        known now (others on first use).

        :raises InvalidConfiguration: not on asyncio, or an existing stream or
            consumer does not match this transport's settings
        :raises TransportError: the server cannot be reached
        """
        require_asyncio("NATS")
        if self._nc is not None:
            raise InvalidConfiguration(
                f"{self!r} is already open for another dispatcher: give each its own transport"
            )
        self._settle_wanted = asyncio.Event()
        self._closing = False
        try:
            # the first connection is bounded; after it, the client reconnects forever
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=self._servers,
                    name=f"eventcore:{self.group}",
                    connect_timeout=min(2.0, self.connect_timeout),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    **self._options,
                ),
                self.connect_timeout,
            )
        except (Exception, asyncio.TimeoutError) as exc:
            raise TransportError(
                f"cannot connect to NATS at {', '.join(redact(s) for s in self._servers)}: "
                f"{type(exc).__name__}: {redact(str(exc))}"
            ) from None
        # the envelope and its header must fit the server's max_payload
        max_size = min(self._max_size, self._nc.max_payload - _HEADER_ROOM)
        self._bus = bus
        self._codec = Codec(
            bus.names,
            format=self._format,  # type: ignore[arg-type]  # checked in __init__
            max_size=max_size,
            keys=lambda t: bus.config(t).key,
        )
        try:
            await self._prepare(bus)
        except BaseException:
            await self.close()  # a failed open leaves nothing behind
            raise

    async def _prepare(self, bus: Dispatcher) -> None:
        """Start the ack listener and the transport's tasks; set up the known types."""
        assert self._nc is not None
        self._js = self._nc.jetstream(timeout=self.publish_timeout)
        self._reply_prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._reply_prefix + "*", cb=self._on_ack)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._settler(), name="eventcore-nats-settle"),
            loop.create_task(self._keep_alive(), name="eventcore-nats-in-progress"),
        ]
        subscribed = {sub.event_type for sub in bus.subscriptions()}
        for event_type in {*subscribed, *bus.configured_types()}:
            if bus.transport_of(event_type) is self:
                route = await self._route(event_type)
                if event_type in subscribed:
                    await self._subscribe(route)

    async def close(self) -> None:
        """Send every pending ack / nak, make sure the server has them, and close."""
        nc = self._nc
        if nc is None:
            return
        try:
            await self._give_back_unfetched()
            self._closing = True
            self._settle_wanted.set()
            settler = self._tasks[0] if self._tasks else None
            if settler is not None:  # it ends once everything settled went out
                await asyncio.wait({settler}, timeout=self.publish_timeout * 2)
            await self._flush_settled()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            for future in self._acks.values():
                future.cancel()
            self._acks.clear()
            self._held.clear()
            for route in self._routes.values():  # their figures stay for stats()
                route.stream_ready = False
                route.subscriptions = []
            self._dead_letters_ready = False
            self._nc = self._js = None  # from here on a disconnect is ours
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

    async def _give_back_unfetched(self) -> None:
        """Nak the messages that reached this process after its pumps stopped (a pull
        cancelled while its message was on the way waits in the subscription's queue),
        so that another process of the group gets them now, not after ``ack_wait``."""
        for route in self._routes.values():
            for sub in route.subscriptions:
                # nats-py keeps them in the subscription's pending queue (no public API)
                queue = getattr(getattr(sub, "_sub", None), "_pending_queue", None)
                while queue is not None and not queue.empty():
                    msg = queue.get_nowait()
                    if not msg.reply or JetStreamContext.is_status_msg(msg):
                        continue
                    try:
                        await msg.nak()
                        route.nacked += 1
                    except Exception as exc:
                        logger.debug("nak at close failed: %s", redact(str(exc)))

    async def _on_error(self, exc: Exception) -> None:
        if self._nc is None:  # not connected yet: open() reports it
            return
        logger.warning("NATS: %s: %s", type(exc).__name__, redact(str(exc)))

    async def _on_disconnected(self) -> None:
        if self._nc is None:  # closing
            return
        logger.warning("NATS: disconnected; reconnecting (publishes follow the overflow policy)")

    async def _on_reconnected(self) -> None:
        logger.info("NATS: reconnected")

    # -- streams and consumers -------------------------------------------------------

    def _require_open(self) -> tuple[Dispatcher, Codec, JetStreamContext]:
        if self._bus is None or self._codec is None or self._js is None:
            raise TransportError("the NATS transport is not open: start the dispatcher")
        return self._bus, self._codec, self._js

    async def _route(self, event_type: type) -> Route:
        """The route of *event_type*: its stream and the durable consumers of the
        declared groups created or checked."""
        route = self._routes.get(event_type)
        if route is not None and route.stream_ready:
            return route
        bus, codec, js = self._require_open()
        key = bus.config(event_type).key
        if route is None or (route.key is None) != (key is None):  # new, or re-keyed
            name = codec.names.resolve(event_type).name
            fresh = Route(event_type, name, self.prefix, key, self.partitions)
            if route is not None:
                fresh.keep_figures(route)
            route = self._routes[event_type] = fresh
        route.key = key
        async with route.lock:
            if not route.stream_ready:
                for group in self.groups:
                    await self._ensure_group(js, route, group)
                route.stream_ready = True
        return route

    async def _ensure_group(self, js: JetStreamContext, route: Route, group: str) -> None:
        """Create or check *group*'s stream of *route* and its durable consumers; the
        group's consumers already there must be exactly this layout's."""
        stream = route.stream(group)
        await ensure_stream(
            js, self._stream_config(stream, [f"{route.subject(group)}.*"], dead_letters=False)
        )
        wanted = self._consumers(route, group)
        layout = (
            f"key {'set' if route.key is not None else 'not set'}, partitions={route.partitions}"
        )
        await check_layout(js, stream, group, {durable for durable, _ in wanted}, layout)
        for durable, subject in wanted:
            await ensure_consumer(js, stream, self._consumer_config(route, durable, subject))

    def _consumers(self, route: Route, group: str) -> list[tuple[str, str]]:
        """The durable consumers of *group* on *route*, with their filter subjects."""
        subject = route.subject(group)
        if route.key is None:
            return [(group, f"{subject}.*")]
        return [(f"{group}-{p}", f"{subject}.{p}") for p in range(route.partitions)]

    def _stream_config(self, name: str, subjects: list[str], dead_letters: bool) -> StreamConfig:
        """What a stream of this transport looks like (the dead letters: no limits,
        kept until deleted; the types': work queues within ``max_msgs`` / ``max_bytes``)."""
        limited = not dead_letters
        return StreamConfig(
            name=name,
            subjects=subjects,
            retention=RetentionPolicy.LIMITS if dead_letters else RetentionPolicy.WORK_QUEUE,
            max_msgs=self.max_msgs if limited and self.max_msgs is not None else -1,
            max_bytes=self.max_bytes if limited and self.max_bytes is not None else -1,
            discard=DiscardPolicy.NEW,
            duplicate_window=self.duplicate_window,
            storage=self._storage,
            num_replicas=self.replicas,
        )

    async def _subscribe(self, route: Route) -> None:
        """Bind pull subscriptions to this group's durable consumers of *route*."""
        _, _, js = self._require_open()
        if route.subscriptions:
            return
        async with route.lock:
            if not route.subscriptions:
                if self.group not in self.groups:  # it consumes without publishing to it
                    await self._ensure_group(js, route, self.group)
                route.subscriptions = [
                    await js.pull_subscribe_bind(durable, route.stream(self.group))
                    for durable, _ in self._consumers(route, self.group)
                ]

    def _consumer_config(self, route: Route, durable: str, subject: str) -> ConsumerConfig:
        """A durable consumer of this transport on *route*, filtered on *subject*."""
        return ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # one more delivery than allowed: the last one only dead-letters
            max_deliver=self.max_deliver + 1,
            # a keyed partition: one message in flight across the service keeps the order
            max_ack_pending=1 if route.key is not None else self.max_ack_pending,
            filter_subject=subject,
            num_replicas=self.replicas,
        )

    # -- publishing ------------------------------------------------------------------

    async def send(self, event_type: type, event: Any) -> None:
        """Write *event* to its stream; return once JetStream acknowledged it.

        :raises QueueFull: the stream is at its limits, or the server is unreachable
            (the type's overflow policy decides what ``publish`` does)
        :raises PublishUnconfirmed: no acknowledgement within ``publish_timeout``
        :raises TransportError: JetStream refused the write
        """
        route = self._routes.get(event_type)
        if route is None or not route.stream_ready:
            route = await self._route(event_type)
        nc, codec = self._nc, self._codec
        assert nc is not None
        assert codec is not None
        if not nc.is_connected:
            raise QueueFull(
                f"NATS is unreachable (reconnecting): no room for {event_type.__qualname__}",
                event_type,
            )
        sending = self._unconfirmed.pop(id(event), None)
        if sending is None or sending.event is not event or sending.expired(self):
            sending = _Sending(event, new_event_id())
        try:
            await self._send_once(route, codec, sending)
        except BaseException:
            # refused, unconfirmed or cancelled: publishing this event object again
            # re-sends it under its id, and only to the groups that did not store it
            self._unconfirmed[id(event)] = sending
            while len(self._unconfirmed) > _REMEMBERED:
                del self._unconfirmed[next(iter(self._unconfirmed))]
            raise

    async def _send_once(self, route: Route, codec: Codec, sending: _Sending) -> None:
        event, event_type = sending.event, route.event_type
        key = None if route.key is None else route.key(event)
        data = codec.encode(  # raises EncodeError for a key that is not a JSON value
            event, event_type=event_type, key=key, id=sending.id, traceparent=current_traceparent()
        )
        partition = 0 if route.partitions == 1 else partition_of(key, route.partitions)
        for group in self.groups:  # usually one: the service's own group
            if group in sending.stored:
                continue
            reply = await self._request(
                f"{route.subject(group)}.{partition}",
                data,
                {"Nats-Msg-Id": sending.id},
                event_type,
            )
            error = reply.get("error")
            if error is not None:
                if error.get("err_code") in _GONE:  # the stream vanished or is restarting
                    route.stream_ready = False
                raise self._refused(route, group, error)
            sending.stored.add(group)

    def _refused(self, route: Route, group: str, error: dict[str, Any]) -> Exception:
        """The error for a write JetStream refused."""
        code = error.get("err_code")
        description = error.get("description")
        if code in _STREAM_FULL:
            return QueueFull(
                f"the NATS stream {route.stream(group)} is full ({description})", route.event_type
            )
        if code == _NO_RESPONDERS:  # JetStream is (re)starting: no room for now
            return QueueFull(
                f"JetStream does not answer for {route.stream(group)} (restarting?)",
                route.event_type,
            )
        return TransportError(
            f"JetStream refused a {route.name} message: {description} (err_code {code})"
        )

    async def _request(
        self, subject: str, data: bytes, headers: dict[str, str], event_type: type
    ) -> dict[str, Any]:
        """Publish with a reply subject; wait for JetStream's answer (pipelined: many
        publishes share one reply subscription, as nats-py's ``publish_async``)."""
        nc = self._nc
        assert nc is not None
        token = str(next(self._tokens))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[token] = future
        try:
            await nc.publish(subject, data, reply=self._reply_prefix + token, headers=headers)
            return await asyncio.wait_for(future, self.publish_timeout)
        except asyncio.TimeoutError:
            event_id = headers["Nats-Msg-Id"]
            raise PublishUnconfirmed(
                f"JetStream did not acknowledge a {event_type.__qualname__} within "
                f"{self.publish_timeout} s: it may or may not be stored. Publishing the same "
                f"event object again is safe (it is re-sent as {event_id}, deduplicated)",
                event_type,
                event_id,
            ) from None
        finally:
            self._acks.pop(token, None)

    async def _on_ack(self, msg: Msg) -> None:
        future = self._acks.get(msg.subject[len(self._reply_prefix) :])
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_result(
                {"error": {"err_code": _NO_RESPONDERS, "description": "no stream responded"}}
            )
            return
        data = msg.data
        if b'"error"' not in data:  # the common case: a PubAck, which needs no parsing
            future.set_result(_STORED)
            return
        try:
            future.set_result(json.loads(data))
        except ValueError:
            future.set_result({"error": {"description": "an unreadable acknowledgement"}})

    # -- consuming -------------------------------------------------------------------

    def source(self, event_type: type) -> NatsSource:
        """The source of *event_type*'s messages for this process's group."""
        return NatsSource(self, event_type)

    async def _fetch(self, event_type: type, room: int) -> list[tuple[Any, NatsReceipt]]:
        route = await self._route(event_type)
        if not route.subscriptions:
            await self._subscribe(route)
        try:
            if route.partitions == 1:
                messages = await self._pull(route.subscriptions[0], min(room, _MAX_BATCH))
            else:
                messages = await self._pull_partitions(route, room)
        except nats.js.errors.NotFoundError:  # the stream or consumer vanished
            route.stream_ready = False
            route.subscriptions = []
            raise
        return [fetched for msg in messages if (fetched := self._receive(route, msg)) is not None]

    async def _pull(self, subscription: Any, batch: int) -> list[Msg]:
        try:
            return list(await subscription.fetch(batch, timeout=self.fetch_wait))
        except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nothing came: ask again
            return []

    async def _pull_partitions(self, route: Route, room: int) -> list[Msg]:
        """One message from each of up to *room* partitions (each has at most one in
        flight), starting where the last fetch stopped. Returns soon after the first
        partition answers; the pulls still waiting are cancelled (a message that was
        on its way is picked up by that partition's next pull)."""
        count = min(room, route.partitions)
        start = route.next_partition
        route.next_partition = (start + count) % route.partitions
        chosen = [route.subscriptions[(start + i) % route.partitions] for i in range(count)]
        pulls = [asyncio.ensure_future(self._pull(sub, 1)) for sub in chosen]
        try:
            done, waiting = await asyncio.wait(pulls, return_when=asyncio.FIRST_COMPLETED)
            if waiting and any(not pull.exception() and pull.result() for pull in done):
                await asyncio.wait(waiting, timeout=_PARTITION_GRACE)
        finally:
            for pull in pulls:
                pull.cancel()
            outcomes = await asyncio.gather(*pulls, return_exceptions=True)
        messages = [msg for outcome in outcomes if isinstance(outcome, list) for msg in outcome]
        errors = [e for e in outcomes if isinstance(e, Exception)]
        if errors and not messages:
            raise errors[0]
        return messages

    def _receive(self, route: Route, msg: Msg) -> tuple[Any, NatsReceipt] | None:
        """Decode one message: the event and its receipt, or None if it was dead-lettered."""
        bus, codec, _ = self._require_open()
        delivered, pending = _delivery_figures(msg)
        route.pending_of[msg.subject] = pending
        route.pending = sum(route.pending_of.values())
        if delivered > 1:
            route.redelivered += 1
        receipt = NatsReceipt(self, route, msg, delivered, None)
        self._held[id(receipt)] = receipt
        if delivered > self.max_deliver:
            bus.report_dead_letter(
                DeadLetter(
                    self._peek(codec, msg),
                    DeadLetterReason.DELIVERY_LIMIT,
                    attempts=delivered - 1,
                )
            )
            self._settle(receipt, Verdict.REJECTED, DeadLetterReason.DELIVERY_LIMIT.value)
            return None
        try:
            envelope = codec.decode(msg.data)
            if not isinstance(envelope.event, route.event_type):
                raise TransportError(f"a {envelope.name} message on the stream of {route.name}")
        except (WireError, TransportError) as exc:
            bus.report_dead_letter(
                DeadLetter(bytes(msg.data), DeadLetterReason.UNDECODABLE, exc, attempts=delivered)
            )
            self._settle(receipt, Verdict.REJECTED, DeadLetterReason.UNDECODABLE.value)
            return None
        receipt.context = handler_context(envelope.traceparent)
        return envelope.event, receipt

    @staticmethod
    def _peek(codec: Codec, msg: Msg) -> Any:
        """The event of a message that will not be handled, or its bytes."""
        try:
            return codec.decode(msg.data).event
        except WireError:
            return bytes(msg.data)

    # -- settling --------------------------------------------------------------------

    def _settle(self, receipt: NatsReceipt, verdict: Verdict, reason: str | None = None) -> None:
        if self._held.pop(id(receipt), None) is None:
            return  # settled already, or the transport closed meanwhile
        receipt.reason = reason
        self._settling.append((receipt, verdict))
        self._settle_wanted.set()

    async def _settler(self) -> None:
        """Send the acks / naks / terms as receipts are settled; at close, end once
        everything settled went out."""
        while True:
            await self._settle_wanted.wait()
            await self._flush_settled()
            if self._closing and not self._settling:
                return

    async def _flush_settled(self) -> None:
        async with self._flushing:  # the settler and close() never interleave
            self._settle_wanted.clear()
            while self._settling:
                receipt, verdict = self._settling.popleft()  # what is left stays visible
                try:
                    await self._apply(receipt, verdict)
                except Exception as exc:  # JetStream redelivers what it never heard of
                    logger.warning(
                        "settling a %s message failed (%s): it will be redelivered",
                        receipt.route.name,
                        redact(str(exc)),
                    )

    async def _apply(self, receipt: NatsReceipt, verdict: Verdict) -> None:
        route, msg = receipt.route, receipt.msg
        if verdict is Verdict.HANDLED:
            await msg.ack()
            route.acked += 1
        elif verdict is Verdict.SHUTDOWN:
            await msg.nak()
            route.nacked += 1
        elif verdict is Verdict.FAILED:
            if await self._dead_letter(receipt, DeadLetterReason.HANDLER_FAILED.value):
                await msg.ack()
                route.acked += 1
            else:
                await msg.nak()
                route.nacked += 1
        else:
            await self._dead_letter(receipt, receipt.reason or DeadLetterReason.REJECTED.value)
            await msg.term()
            route.terminated += 1

    async def _dead_letter(self, receipt: NatsReceipt, reason: str) -> bool:
        """Write the message to the dead-letter stream; False if JetStream refused it."""
        _, _, js = self._require_open()
        route, msg = receipt.route, receipt.msg
        if not self._dead_letters_ready:
            name = f"{self.prefix}_dead_letters"
            await ensure_stream(
                js, self._stream_config(name, [f"{self.prefix}.dead.>"], dead_letters=True)
            )
            self._dead_letters_ready = True
        headers = {
            "Eventcore-Reason": reason,
            "Eventcore-Group": self.group,
            "Eventcore-Deliveries": str(receipt.attempts),
            "Nats-Msg-Id": f"{route.stream(self.group)}:{msg.metadata.sequence.stream}",
        }
        reply = await self._request(
            f"{self.prefix}.dead.{route.name}", msg.data, headers, route.event_type
        )
        if "error" in reply:
            logger.error(
                "the dead-letter stream refused a %s message: %s",
                route.name,
                reply["error"].get("description"),
            )
            return False
        route.dead_lettered += 1
        return True

    async def _keep_alive(self) -> None:
        """Every half ``ack_wait``: ``in_progress`` for each message held here."""
        while True:
            await asyncio.sleep(self.ack_wait / 2)
            for receipt in list(self._held.values()):
                try:
                    await receipt.msg.in_progress()
                except Exception as exc:
                    logger.debug("in_progress failed: %s", redact(str(exc)))

    # -- observing -------------------------------------------------------------------

    def stream_of(self, name: str, group: str | None = None) -> str:
        """The stream that holds the events named *name* for *group* (default: this
        transport's group), e.g. to inspect it with the ``nats`` CLI."""
        return stream_name(self.prefix, group or self.group, name)

    def broker_stats(self, event_type: type) -> BrokerStats:
        """The type's figures on JetStream as seen by this process."""
        route = self._routes.get(event_type)
        return BrokerStats() if route is None else route.stats()


def _delivery_figures(msg: Msg) -> tuple[int, int]:
    """(deliveries, pending) of a JetStream message, read from its ack subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>``, or
    the longer form with domain and account); nats-py's ``metadata`` also builds a
    datetime per message, which costs more than the rest of the receipt."""
    reply = msg.reply or ""
    tokens = reply.split(".")
    try:
        if len(tokens) == 9:
            return int(tokens[4]), int(tokens[8])
        if len(tokens) >= 11:
            return int(tokens[6]), int(tokens[10])
    except ValueError:
        pass
    metadata = msg.metadata
    return metadata.num_delivered, metadata.num_pending
