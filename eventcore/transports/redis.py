"""Redis Streams: route event types through consumer groups (``pip install "eventcore[redis]"``).

::

    from eventcore.transports.redis import RedisTransport

    bus = Dispatcher(transport=RedisTransport("redis://127.0.0.1:6379/0", group="billing"))

The mapping (see ``docs/TRANSPORTS.md``):

* one stream per event type, ``{prefix}:{name}`` (a keyed type with
  ``partitions=n`` also has ``{prefix}:{name}:1`` ... ``:{n-1}``, chosen by a
  hash of the key); one consumer group per service (``group``); one consumer
  per process and transport (host, pid and a random suffix: ``consumer``);
* publish: one Lua script per event (``XLEN``, and at the length limit a trim
  below what every group still needs, then ``XADD``), the concurrent publishes
  of one event-loop tick in one pipeline; ``send`` returns once Redis answered;
  a stream at ``max_len`` raises :class:`~eventcore.QueueFull` (the type's
  overflow policy decides);
* consume: ``XREADGROUP`` at most the room the local queue has, own pending
  entries first (``0``), then new ones (``>``); entries idle past
  ``claim_idle`` in crashed consumers are claimed (``XAUTOCLAIM``) by the next
  fetch that has room; an entry delivered more than ``max_deliver`` times goes
  to the dead-letter stream ``{prefix}:dead:{name}`` in one script with its
  ``XACK``;
* settle: ``XACK`` in batches on the transport's own task (HANDLED, FAILED),
  FAILED and REJECTED also write the entry to the dead-letter stream in the same
  script; SHUTDOWN leaves the entry pending (this consumer re-reads it when it
  starts again, another one claims it after ``claim_idle``).

A consumer group that vanishes (Redis restarted without persistence, the key
deleted) raises :class:`GroupVanished` on every fetch, loudly logged by the
dispatcher; it is recreated (from ``0``, never ``$``) only with ``recreate_group=True``.

This module holds the transport (its life, publishing, acks, the janitor, figures);
``_redis_source`` the consuming side, ``_redis_scripts`` the Lua scripts and
``_redis_client`` the redis-py import and reply helpers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio

from .._errors import InvalidConfiguration, QueueFull
from .._transport import BrokerStats, Verdict
from . import _redis_scripts as scripts
from ._kit.common import partition_of, redact, require_asyncio
from ._kit.tracecontext import current_traceparent
from ._redis_client import CONNECTION_ERRORS, NoScriptError, aioredis, text
from ._redis_source import GroupVanished, Receipt, RedisSource

if TYPE_CHECKING:
    from .._dispatcher import Dispatcher
    from .._wire.codec import Codec

logger = logging.getLogger("eventcore.redis")

__all__ = ["GroupVanished", "RedisTransport"]

#: the socket timeout of a client built from a URL: above the block time
_SOCKET_TIMEOUT = 15.0
#: the most publishes in one pipeline
_MAX_BATCH = 1024
#: how long publishes and acks retry a lost connection before giving up (s)
_RECONNECT_FOR = 15.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0
#: how often the janitor refreshes the group figures and trims acknowledged entries (s)
_JANITOR_EVERY = 2.0
#: consumers idle this long (s) with nothing pending are deleted, every this many rounds
_FORGET_IDLE, _FORGET_EVERY = 3600.0, 15
#: dead-letter streams keep about this many entries
_DEAD_MAX_LEN = 100_000


@dataclass
class _Counters:
    redelivered: int = 0
    acked: int = 0
    nacked: int = 0
    terminated: int = 0
    dead_lettered: int = 0
    pending: int | None = None


@dataclass
class _Batch:
    """The publishes of one tick: one pipeline, one answer each."""

    #: (stream, dedup key, message); None for a publish cancelled before sending
    items: list[tuple[str, str | None, bytes] | None] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: whether the pipeline went out (a publish cannot withdraw from it any more)
    sent: bool = False


class RedisTransport:
    """Routes event types through Redis Streams consumer groups (see the module doc).

    :param url: ``redis://`` or ``rediss://`` (TLS), with ``user:password@`` for ACLs;
        never logged or shown in reprs with its credentials
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
        seconds (a retry after a lost connection); None: off
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
        format: Literal["json", "msgpack"] = "json",
        max_size: int = 1024 * 1024,
        recreate_group: bool = False,
        client: aioredis.Redis | None = None,
    ) -> None:
        for label, value in (("group", group), ("prefix", prefix)):
            if not isinstance(value, str) or not value or any(c.isspace() for c in value):
                raise InvalidConfiguration(f"{label} must be a non-empty word, got {value!r}")
        for label, number in (("partitions", partitions), ("max_deliver", max_deliver)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise InvalidConfiguration(f"{label} must be an int >= 1, got {number!r}")
        if max_len is not None and (
            isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1
        ):
            raise InvalidConfiguration(f"max_len must be an int >= 1 or None, got {max_len!r}")
        for label, seconds in (("claim_idle", claim_idle), ("dedup", dedup)):
            if seconds is not None and (
                isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0
            ):
                raise InvalidConfiguration(f"{label} must be a number of seconds > 0")
        if format not in ("json", "msgpack"):
            raise InvalidConfiguration(f"format must be 'json' or 'msgpack', got {format!r}")
        self.url = url
        self.group = group
        self.prefix = prefix
        self.partitions = partitions
        self.max_deliver = max_deliver
        self.claim_idle = float(claim_idle)
        self.max_len = max_len
        self.dedup = dedup
        self.format: Literal["json", "msgpack"] = format
        self.max_size = max_size
        self.recreate_group = recreate_group
        #: this process's consumer name in every group (reported in stats)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._own_client = client is None
        self._given_client = client
        self._redis: Any = None
        self._bus: Dispatcher | None = None
        self._codec: Codec | None = None
        self._shas: dict[str, str] = {}
        self._batch: _Batch | None = None
        #: each type's stream name, and the names' revision it was made at
        self._bases: dict[type, tuple[int, str]] = {}
        #: stream names encoded once
        self._stream_names: dict[str, bytes] = {}
        #: the pipeline of publishes on its way to Redis, if one is
        self._flying: asyncio.Event | None = None
        self._counters: dict[type, _Counters] = defaultdict(_Counters)
        #: (stream, entry id) fetched and not yet acknowledged on Redis -> when it was
        #: fetched or last kept (its idle time on Redis reset, so nobody claims it)
        self._in_flight: dict[tuple[str, bytes], float] = {}
        #: settled receipts whose XACK (and dead letter) is not sent yet
        self._to_ack: list[tuple[Receipt, Verdict, str]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._sources: dict[type, RedisSource] = {}
        self._trace: Any = None
        self._closing = False
        self._rounds = 0

    def __repr__(self) -> str:
        return (
            f"RedisTransport({redact(self.url)!r}, group={self.group!r}, "
            f"prefix={self.prefix!r}, consumer={self.consumer!r})"
        )

    # -- life --------------------------------------------------------------------------

    async def open(self, bus: Dispatcher) -> None:
        """Connect, load the scripts and start the ack/janitor task (asyncio only).

        :raises InvalidConfiguration: not on asyncio, or a client that decodes responses
        """
        require_asyncio("Redis")
        from .._wire.codec import Codec

        if self._redis is not None and self._bus is not bus:
            raise InvalidConfiguration(
                f"{self!r} is open for another dispatcher: give each dispatcher "
                "a transport of its own"
            )

        self._bus = bus
        self._codec = Codec.for_dispatcher(bus, format=self.format, max_size=self.max_size)
        if self._given_client is not None:
            self._redis = self._given_client
            if self._redis.get_connection_kwargs().get("decode_responses"):
                raise InvalidConfiguration(
                    "the Redis transport needs a client with decode_responses=False "
                    "(messages are bytes)"
                )
        else:
            self._redis = aioredis.Redis.from_url(
                self.url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=5.0,
                health_check_interval=10,
                client_name=f"eventcore-{self.group}",
            )
        try:
            await self._load_scripts()
        except Exception as exc:
            if self._own_client:
                await self._redis.aclose()
            self._redis = None
            raise ConnectionError(
                f"cannot reach Redis at {redact(self.url)}: {type(exc).__name__}: "
                f"{redact(str(exc))}"
            ) from None
        logger.info("%r: connected as consumer %s", self, self.consumer)
        self._wake = asyncio.Event()
        # The transport's life is open() ... close(), not one `async with` (open may
        # run in a pump's or a publisher's task, close in the dispatcher's): its one
        # task is owned by the transport, and close() ends it and waits for it.
        self._task = asyncio.get_running_loop().create_task(
            self._settler(), name=f"eventcore-redis-acks-{self.group}"
        )

    async def close(self) -> None:
        """Stop the ack task, send the acks still queued, close the connections."""
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            if self._wake is not None:
                self._wake.set()
            with anyio.move_on_after(_RECONNECT_FOR):  # it sends what is queued, then ends
                await asyncio.shield(task)
            if not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            self._closing = False
        with anyio.move_on_after(_RECONNECT_FOR) as scope:
            while self._to_ack and self._redis is not None:
                if not await self._flush_acks():
                    await anyio.sleep(_BACKOFF_FIRST)
        if scope.cancelled_caught:
            logger.warning(
                "%d acknowledgement(s) could not be sent before closing: those entries "
                "stay pending and will be delivered again",
                len(self._to_ack),
            )
        self._to_ack.clear()
        self._in_flight.clear()
        for source in self._sources.values():
            if source.leased and self._redis is not None:
                try:
                    await source.release()
                except Exception as exc:
                    logger.warning("releasing the leases of %r failed: %s", source, exc)
        self._sources.clear()
        if self._redis is not None and self._own_client:
            await self._redis.aclose()
        self._redis = None

    async def _load_scripts(self) -> None:
        for name, lua in scripts.ALL.items():
            self._shas[name] = await self._redis.script_load(lua)

    # -- names -------------------------------------------------------------------------

    def _name(self, event_type: type) -> str:
        assert self._bus is not None, "the transport is not open"
        return self._bus.names.resolve(event_type).name

    def stream_of(self, event_type: type, partition: int = 0) -> str:
        """The stream of *event_type*'s partition *partition*."""
        assert self._bus is not None, "the transport is not open"
        revision = self._bus.names.revision
        known = self._bases.get(event_type)
        if known is None or known[0] != revision:
            known = self._bases[event_type] = (revision, f"{self.prefix}:{self._name(event_type)}")
        base = known[1]
        return base if partition == 0 else f"{base}:{partition}"

    def streams_of(self, event_type: type) -> list[str]:
        """Every stream *event_type*'s events may be on (all its partitions)."""
        return [self.stream_of(event_type, p) for p in range(self.partitions)]

    def dead_stream_of(self, event_type: type) -> str:
        """The dead-letter stream of *event_type*."""
        return f"{self.prefix}:dead:{self._name(event_type)}"

    # -- publishing --------------------------------------------------------------------

    async def send(self, event_type: type, event: Any) -> None:
        """Append *event* to its stream; return once Redis acknowledged the XADD.

        The publishes of one event-loop tick go out in one pipeline. Once its
        message has joined a pipeline a publish is not cancelled before Redis
        answered (it took effect, so it returns).

        :raises QueueFull: the stream holds ``max_len`` unacknowledged entries
        :raises WireError: the event cannot be encoded, or is too large
        """
        codec, bus = self._codec, self._bus
        assert codec is not None, "the transport is not open"
        assert bus is not None
        key_of = bus.config(event_type).key
        key = None if key_of is None else key_of(event)
        traceparent = current_traceparent()
        event_id = None
        if self.dedup is not None:
            from .._wire.ids import new_event_id

            event_id = new_event_id()
        data = codec.encode(
            event, event_type=event_type, key=key, traceparent=traceparent, id=event_id
        )
        stream = self.stream_of(
            event_type, 0 if key is None else partition_of(key, self.partitions)
        )
        dedup_key = None if event_id is None else f"{self.prefix}:dedup:{event_id}"
        batch = self._batch
        leader = batch is None or len(batch.items) >= _MAX_BATCH
        if batch is None or leader:
            batch = self._batch = _Batch()
        index = len(batch.items)
        batch.items.append((stream, dedup_key, data))
        if leader:
            with anyio.CancelScope(shield=True):  # the others wait for this pipeline
                await asyncio.sleep(0)  # the other publishes of this tick join the batch
                while self._flying is not None:  # one pipeline at a time: this one grows
                    await self._flying.wait()
                if self._batch is batch:
                    self._batch = None
                self._flying = batch.done
                try:
                    await self._publish(batch)
                finally:
                    if self._flying is batch.done:
                        self._flying = None
        else:
            try:
                await batch.done.wait()
            except asyncio.CancelledError:
                if not batch.sent:  # cancelled before it went out: no effect
                    batch.items[index] = None
                    raise
                with anyio.CancelScope(shield=True):  # it took effect: it returns
                    await batch.done.wait()
        result = batch.results[index]
        if result == 0:
            raise QueueFull(
                f"the Redis stream {stream} holds max_len={self.max_len} entries that its "
                f"consumer groups have not acknowledged: its consumers are not keeping up",
                event_type,
            )
        if isinstance(result, BaseException):
            raise result

    async def _publish(self, batch: _Batch) -> None:
        """Run *batch* as one pipeline, retrying a lost connection; answer every item."""
        # bytes throughout: redis-py packs them as they are (this runs per publish)
        sha = self._shas["send"].encode()
        limit = str(self.max_len or 0).encode()
        ttl = str(int((self.dedup or 0) * 1000)).encode()
        names = self._stream_names
        batch.sent = True
        todo = [i for i, item in enumerate(batch.items) if item is not None]
        tried: set[int] = set()  #: found the stream full once (and trimmed it)
        batch.results = [None] * len(batch.items)
        pause, deadline = _BACKOFF_FIRST, time.monotonic() + _RECONNECT_FOR
        try:
            while todo:
                pipe = self._redis.pipeline(transaction=False)
                for i in todo:
                    item = batch.items[i]
                    assert item is not None
                    stream, dedup_key, data = item
                    if dedup_key is None:
                        name = names.get(stream) or names.setdefault(stream, stream.encode())
                        pipe.execute_command(b"EVALSHA", sha, b"1", name, limit, data)
                    else:
                        pipe.execute_command(
                            b"EVALSHA", sha, b"2", stream, dedup_key, limit, data, ttl
                        )
                try:
                    answers = await pipe.execute(raise_on_error=False)
                except CONNECTION_ERRORS as exc:
                    if time.monotonic() + pause > deadline:
                        raise ConnectionError(
                            f"Redis at {redact(self.url)} did not answer for "
                            f"{_RECONNECT_FOR} s: {type(exc).__name__}"
                        ) from None
                    logger.warning("publishing to Redis failed (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _BACKOFF_MAX)
                    continue
                again, full = [], []
                for i, answer in zip(todo, answers, strict=True):
                    if isinstance(answer, NoScriptError):
                        again.append(i)  # Redis restarted: the script did not run
                    elif answer == 0 and i not in tried:
                        full.append(i)
                    else:
                        batch.results[i] = answer
                if again:
                    await self._load_scripts()
                    sha = self._shas["send"].encode()
                if full:  # at max_len: trim what every group acknowledged, try once more
                    streams = {item[0] for i in full if (item := batch.items[i]) is not None}
                    for stream in streams:
                        await self._redis.evalsha(self._shas["trim"], 1, stream, limit)
                    tried.update(full)
                todo = sorted(again + full)
        except BaseException as exc:
            error: BaseException = exc
            if not isinstance(exc, Exception):  # the sending task was cancelled
                error = ConnectionError(
                    "the publish was cut off while Redis had it: it may or may not be there"
                )
            for i in todo:
                batch.results[i] = error
            raise
        finally:
            batch.done.set()

    # -- consuming ---------------------------------------------------------------------

    def source(self, event_type: type) -> RedisSource:
        """This process's consumer of *event_type* in the transport's group."""
        source = RedisSource(self, event_type)
        self._sources[event_type] = source
        return source

    def _settle(self, receipt: Receipt, verdict: Verdict) -> None:
        counters = self._counters[receipt.source.event_type]
        if verdict is Verdict.SHUTDOWN:
            counters.nacked += 1  # left pending: re-read on restart, or claimed
            self._in_flight.pop((receipt.stream, receipt.entry), None)
            return
        if verdict is Verdict.HANDLED:
            why = ""
        else:
            why = "handler_failed" if verdict is Verdict.FAILED else "rejected"
        self._to_ack.append((receipt, verdict, why))
        if self._wake is not None:
            self._wake.set()

    def _dead(self, receipt: Receipt, why: str) -> None:
        """Dead-letter *receipt*'s entry on Redis (in one script with its XACK)."""
        self._to_ack.append((receipt, Verdict.REJECTED, why))
        if self._wake is not None:
            self._wake.set()

    async def _settler(self) -> None:
        """Send the queued XACKs in batches; now and then refresh figures and trim."""
        assert self._wake is not None
        pause = _BACKOFF_FIRST
        every = min(_JANITOR_EVERY, self.claim_idle / 3)  # leases renewed well in time
        janitor_at = time.monotonic() + every
        while True:
            if not self._to_ack:
                if self._closing:
                    return
                with anyio.move_on_after(max(0.0, janitor_at - time.monotonic())):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if self._to_ack:
                    if await self._flush_acks():
                        pause = _BACKOFF_FIRST
                    else:
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, _BACKOFF_MAX)
                if time.monotonic() >= janitor_at and not self._closing:
                    janitor_at = time.monotonic() + every
                    try:
                        await self._janitor()
                    except NoScriptError:
                        await self._load_scripts()
            except Exception as exc:
                logger.warning("the Redis ack/janitor task failed (%s); retrying", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _BACKOFF_MAX)

    async def _flush_acks(self) -> bool:
        """Send every queued settlement in one pipeline; False if Redis did not answer."""
        todo, self._to_ack = self._to_ack, []
        plain: dict[str, list[bytes]] = defaultdict(list)
        pipe = self._redis.pipeline(transaction=False)
        dead: list[tuple[Receipt, str]] = []
        for receipt, _, why in todo:
            if why:
                dead.append((receipt, why))
            else:
                plain[receipt.stream].append(receipt.entry)
        for stream, entries in plain.items():
            pipe.xack(stream, self.group, *entries)
        for receipt, why in dead:
            event_type = receipt.source.event_type
            pipe.execute_command(
                "EVALSHA",
                self._shas["dead"],
                2,
                receipt.stream,
                self.dead_stream_of(event_type),
                self.group,
                receipt.entry,
                _DEAD_MAX_LEN,
                "m",
                receipt.data,
                "reason",
                why,
                "stream",
                receipt.stream,
                "id",
                receipt.entry,
                "group",
                self.group,
                "consumer",
                self.consumer,
                "deliveries",
                receipt.deliveries,
            )
        try:
            answers = await pipe.execute(raise_on_error=False)
        except CONNECTION_ERRORS as exc:
            logger.warning("acknowledging on Redis failed (%s); retrying", type(exc).__name__)
            self._to_ack[:0] = todo
            return False
        except BaseException:
            self._to_ack[:0] = todo  # cancelled: sent again later (XACK is idempotent)
            raise
        retry: list[tuple[Receipt, Verdict, str]] = []
        answers_dead = answers[len(plain) :]
        for answer, (receipt, why) in zip(answers_dead, dead, strict=True):
            if isinstance(answer, NoScriptError):
                retry.append((receipt, Verdict.REJECTED, why))
                continue
            counters = self._counters[receipt.source.event_type]
            if isinstance(answer, BaseException):
                logger.error(
                    "dead-lettering %s %s failed: %s", receipt.stream, receipt.entry, answer
                )
            else:
                counters.dead_lettered += 1
                if why == "handler_failed":
                    counters.acked += 1
                else:
                    counters.terminated += 1
            self._in_flight.pop((receipt.stream, receipt.entry), None)
        for answer, (stream, entries) in zip(answers, plain.items(), strict=False):
            if isinstance(answer, BaseException):
                logger.error("XACK on %s failed: %s", stream, answer)
            for entry in entries:
                self._in_flight.pop((stream, entry), None)
        for receipt, verdict, why in todo:
            if not why and verdict is not Verdict.SHUTDOWN:
                self._counters[receipt.source.event_type].acked += 1
        if retry:
            await self._load_scripts()
            self._to_ack[:0] = retry
        return True

    async def _janitor(self) -> None:
        """Keep the entries being handled here, and the partition leases of keyed
        types; refresh each consumed type's group lag; trim what every group
        acknowledged."""
        await self._keep_in_flight()
        for event_type, source in list(self._sources.items()):
            if not source.ready:
                continue
            if source.leased:
                await source.rebalance()
            lag = 0
            self._rounds += 1
            for stream in source.streams:
                if self._rounds % _FORGET_EVERY == 0:
                    await self._forget_consumers(stream)
                await self._redis.evalsha(self._shas["trim"], 1, stream, 0)
                groups = await self._redis.xinfo_groups(stream)
                for info in groups:
                    if text(info.get("name")) == self.group:
                        lag += int(info.get("lag") or 0) + int(info.get("pending") or 0)
            self._counters[event_type].pending = lag

    async def _keep_in_flight(self) -> None:
        """Reset the idle time of entries handled here for a while (``XCLAIM ... JUSTID``
        to this consumer, which leaves the delivery count alone): a live consumer's
        slow handler is not mistaken for a crash by the others' ``claim_idle``."""
        now = time.monotonic()
        old: dict[str, list[bytes]] = defaultdict(list)
        for (stream, entry), since in self._in_flight.items():
            if now - since >= self.claim_idle / 3:
                old[stream].append(entry)
        for stream, entries in old.items():
            await self._redis.xclaim(stream, self.group, self.consumer, 0, entries, justid=True)
            for entry in entries:
                if (stream, entry) in self._in_flight:
                    self._in_flight[(stream, entry)] = now

    async def _forget_consumers(self, stream: str) -> None:
        """Delete the group's consumers that hold nothing and were idle for long (the
        names of processes gone): never one with pending entries (they would be lost)."""
        idle = max(_FORGET_IDLE, 10 * self.claim_idle) * 1000
        for info in await self._redis.xinfo_consumers(stream, self.group):
            name = text(info.get("name"))
            if name != self.consumer and not info.get("pending") and info.get("idle", 0) > idle:
                await self._redis.xgroup_delconsumer(stream, self.group, name)

    # -- figures -----------------------------------------------------------------------

    def broker_stats(self, event_type: type) -> BrokerStats:
        """*event_type*'s figures: its group's backlog on Redis (not delivered yet,
        or delivered and not acknowledged; refreshed every few seconds) and counters."""
        c = self._counters.get(event_type) or _Counters()
        return BrokerStats(
            pending=c.pending,
            redelivered=c.redelivered,
            acked=c.acked,
            nacked=c.nacked,
            terminated=c.terminated,
            dead_lettered=c.dead_lettered,
            consumer=self.consumer,
        )
