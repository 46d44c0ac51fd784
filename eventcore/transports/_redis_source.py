"""The consuming side of the Redis transport: one source per routed type (claimed
entries, own pending ones, new ones; the leases of keyed types) and its receipts."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._deadletters import DeadLetter, DeadLetterReason
from .._errors import EventcoreError
from .._transport import Verdict
from .._wire.errors import DecodeError, WireError
from ._kit.tracecontext import handler_context
from ._redis_client import CONNECTION_ERRORS, ResponseError, id_order, message, replies

if TYPE_CHECKING:
    from .redis import RedisTransport

logger = logging.getLogger("eventcore.redis")

#: how long one XREADGROUP blocks on the server (ms); fetch loops until it has entries
BLOCK_MS = 1000


class GroupVanished(EventcoreError, RuntimeError):
    """The consumer group of a stream is gone (Redis restarted without persistence,
    or the key was deleted): events may have been lost, and it is not recreated
    unless the transport was made with ``recreate_group=True``."""


class Receipt:
    """One fetched entry; ``settle`` queues its XACK (and dead letter) on the transport."""

    __slots__ = ("context", "data", "deliveries", "entry", "source", "stream")

    def __init__(
        self,
        source: RedisSource,
        stream: str,
        entry: bytes,
        data: bytes,
        deliveries: int,
        context: contextvars.Context | None,
    ) -> None:
        self.source = source
        self.stream = stream
        self.entry = entry
        self.data = data
        self.deliveries = deliveries
        self.context = context

    def settle(self, verdict: Verdict) -> None:
        """Queue the entry's XACK (HANDLED, FAILED), its dead letter (FAILED,
        REJECTED), or leave it pending (SHUTDOWN)."""
        self.source.transport._settle(self, verdict)


class RedisSource:
    """One routed type's entries for this consumer: claimed, own pending, then new."""

    def __init__(self, transport: RedisTransport, event_type: type) -> None:
        self.transport = transport
        self.event_type = event_type
        self.streams = transport.streams_of(event_type)
        self.ready = False
        #: the streams whose own pending entries are still to be re-read, and where
        self.pending: list[str] = []
        self.cursor = b"0"
        self.claim_at = 0.0
        #: where XAUTOCLAIM's scan of each stream's pending entries goes on
        self.claim_cursors: dict[str, bytes] = {}
        self.turn = 0
        bus = transport._bus
        #: keyed: each stream is read by one consumer of the group at a time (a lease)
        self.leased = bus is not None and bus.config(event_type).key is not None
        #: the streams whose lease this consumer holds (keyed types)
        self.owned: list[str] = []
        #: owned streams being given up: not read any more, released once settled
        self.leaving: list[str] = []

    def readable(self) -> list[str]:
        """The streams this consumer reads now."""
        return self.owned if self.leased else self.streams

    def _lease(self, stream: str) -> str:
        return f"{self.transport.prefix}:lease:{self.transport.group}:{stream}"

    async def rebalance(self) -> None:
        """Keep this consumer's fair share of the keyed type's stream leases.

        Live consumers announce themselves in a sorted set; each holds at most
        ``ceil(streams / consumers)`` leases, renewed here, taken when free (with
        every entry still pending in the stream, so that they are handled first, in
        order) and given up when the share shrinks, once nothing read from the
        stream is in flight.
        """
        transport = self.transport
        redis, me = transport._redis, transport.consumer
        ms = int(transport.claim_idle * 1000)
        members = f"{transport.prefix}:members:{transport.group}:{self.streams[0]}"
        now = int(time.time() * 1000)
        pipe = redis.pipeline(transaction=False)
        pipe.zadd(members, {me: now})
        pipe.zremrangebyscore(members, "-inf", now - ms)
        pipe.zcard(members)
        pipe.pexpire(members, ms * 4)
        _, _, alive, _ = await pipe.execute()
        share = -(-len(self.streams) // max(1, int(alive)))
        for stream in list(self.owned) + list(self.leaving):
            if not await redis.evalsha(transport._shas["renew"], 1, self._lease(stream), me, ms):
                logger.warning("lost the lease of %s (this process was too slow)", stream)
                for held in (self.owned, self.leaving):
                    if stream in held:
                        held.remove(stream)
        for stream in list(self.leaving):
            if not any(s == stream for s, _ in transport._in_flight):
                await redis.evalsha(transport._shas["release"], 1, self._lease(stream), me)
                self.leaving.remove(stream)
        while len(self.owned) > share:
            self.leaving.append(self.owned.pop())
        for stream in self.streams:
            if len(self.owned) >= share:
                break
            if stream in self.owned or stream in self.leaving:
                continue
            if await redis.set(self._lease(stream), me, nx=True, px=ms):
                # everything still pending there becomes this consumer's, read first
                start: Any = "0-0"
                while True:
                    reply = await redis.xautoclaim(
                        stream, transport.group, me, 0, start, count=1000
                    )
                    start = reply[0]
                    if start in (b"0-0", "0-0"):
                        break
                self.owned.append(stream)
                if stream not in self.pending:
                    self.pending.append(stream)

    async def release(self) -> None:
        """Give up every lease (at close: the other consumers take over at once)."""
        for stream in self.owned + self.leaving:
            await self.transport._redis.evalsha(
                self.transport._shas["release"], 1, self._lease(stream), self.transport.consumer
            )
        self.owned.clear()
        self.leaving.clear()

    def __repr__(self) -> str:
        return f"<Redis source {self.streams[0]} group={self.transport.group!r}>"

    async def _create_groups(self, *, again: bool = False) -> None:
        redis, group = self.transport._redis, self.transport.group
        for stream in self.streams:
            try:
                await redis.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            else:
                if again:
                    logger.warning(
                        "recreated the consumer group %r of %s from its start (0): events "
                        "already handled may be handled again",
                        group,
                        stream,
                    )
        self.pending, self.cursor = list(self.streams), b"0"
        self.ready = True
        if self.leased:
            self.pending = []  # re-read where a lease is held (taking one claims all)
            await self.rebalance()

    def _vanished(self, exc: ResponseError) -> bool:
        return "NOGROUP" in str(exc)

    async def fetch(self, room: int) -> Sequence[tuple[Any, Receipt]]:
        """Wait for entries and return at most *room* of them: entries claimed from
        dead consumers, then this consumer's own pending ones, then new ones.

        :raises GroupVanished: the group is gone and ``recreate_group`` is off
        """
        transport = self.transport
        if transport._redis is None:
            raise ConnectionError("the Redis transport is closed")
        if not self.ready:
            await self._create_groups()
        while True:
            try:
                found = await self._read(room)
            except CONNECTION_ERRORS:
                # a read may have reached Redis and its reply been lost: those entries
                # are pending here, unseen; read this consumer's pending entries first
                self.pending, self.cursor = list(self.readable()), b"0"
                raise
            except ResponseError as exc:
                if not self._vanished(exc):
                    raise
                if not transport.recreate_group:
                    raise GroupVanished(
                        f"the consumer group {transport.group!r} of {self.streams} is gone "
                        "(Redis restarted without persistence, or the key was deleted): "
                        "events may have been lost. It is not recreated by itself (at $ it "
                        "would skip events); recreate it from 0 with XGROUP CREATE <stream> "
                        f"{transport.group} 0 MKSTREAM, or pass recreate_group=True"
                    ) from None
                logger.error(
                    "the consumer group %r of %s vanished (Redis restarted without "
                    "persistence, or the key was deleted): recreating it from 0",
                    transport.group,
                    self.streams,
                )
                await self._create_groups(again=True)
                continue
            try:
                batch = self._decode(found)
            except BaseException:
                # not handed over: read them again from this consumer's pending entries
                for stream, entry, _, _ in found:
                    transport._in_flight.pop((stream, entry), None)
                self.pending, self.cursor = list(self.readable()), b"0"
                raise
            if batch:
                return batch

    async def _read(self, room: int) -> list[tuple[str, bytes, bytes | None, int]]:
        """(stream, entry id, message or None if deleted, deliveries), at most *room*."""
        transport = self.transport
        redis, group, me = transport._redis, transport.group, transport.consumer
        now = time.monotonic()
        if not self.leased and now >= self.claim_at:
            self.claim_at = now + transport.claim_idle / 2
            claimed = await self._claim(room)
            if claimed:
                return claimed
        while self.pending and self.leased and self.pending[0] not in self.owned:
            self.pending.pop(0)
            self.cursor = b"0"
        if self.pending:  # own pending entries first: left by a crash or a shutdown
            stream = self.pending[0]
            reply = await redis.xreadgroup(group, me, {stream: self.cursor}, count=room)
            found = []
            entries = [e for _, es in replies(reply) for e in es]
            for entry, fields in entries:
                self.cursor = entry
                if (stream, entry) not in transport._in_flight:
                    found.append((stream, entry, message(fields)))
            if not entries:  # this stream's pending entries are done: the next one
                self.pending.pop(0)
                self.cursor = b"0"
            if found:
                return await self._with_deliveries(found)
            if self.pending:
                return []
        streams = self._turn(room)
        if not streams:  # a keyed type whose streams other consumers hold
            await asyncio.sleep(BLOCK_MS / 1000)
            return []
        count = max(1, room // len(streams))
        reply = await redis.xreadgroup(
            group, me, dict.fromkeys(streams, ">"), count=count, block=BLOCK_MS
        )
        return [
            (stream, entry, message(fields), 1)
            for stream, entries in replies(reply)
            for entry, fields in entries
        ]

    def _turn(self, room: int) -> list[str]:
        """The streams to read this time: all readable ones, or *room* in turn."""
        streams = self.readable()
        if room >= len(streams):
            return list(streams)
        self.turn = (self.turn + room) % len(streams)
        return [streams[(self.turn + i) % len(streams)] for i in range(room)]

    async def _claim(self, room: int) -> list[tuple[str, bytes, bytes | None, int]]:
        """Claim entries idle past ``claim_idle`` in other consumers (crashed ones)."""
        transport = self.transport
        idle = int(transport.claim_idle * 1000)
        found: list[tuple[str, bytes, bytes | None]] = []
        for stream in self.streams:
            left = room - len(found)
            if left <= 0:
                break
            reply = await transport._redis.xautoclaim(
                stream,
                transport.group,
                transport.consumer,
                idle,
                self.claim_cursors.get(stream, b"0-0"),
                count=left,
            )
            self.claim_cursors[stream] = reply[0]  # where the next scan goes on
            for entry, fields in reply[1]:
                if (stream, entry) not in transport._in_flight:
                    found.append((stream, entry, message(fields)))
        if found:
            logger.info("claimed %d idle entries of %s", len(found), self.streams[0])
            return await self._with_deliveries(found)
        return []

    async def _with_deliveries(
        self, found: list[tuple[str, bytes, bytes | None]]
    ) -> list[tuple[str, bytes, bytes | None, int]]:
        """*found* with each entry's delivery count (XPENDING)."""
        transport = self.transport
        counts: dict[tuple[str, bytes], int] = {}
        by_stream: dict[str, list[bytes]] = defaultdict(list)
        for stream, entry, _ in found:
            by_stream[stream].append(entry)
        for stream, entries in by_stream.items():
            rows = await transport._redis.xpending_range(
                stream,
                transport.group,
                min=min(entries, key=id_order),
                max=max(entries, key=id_order),
                count=len(entries) + 64,
                consumername=transport.consumer,
            )
            for row in rows:
                counts[(stream, row["message_id"])] = int(row["times_delivered"])
        return [(s, e, data, counts.get((s, e), 1)) for s, e, data in found]

    def _decode(
        self, found: list[tuple[str, bytes, bytes | None, int]]
    ) -> list[tuple[Any, Receipt]]:
        transport = self.transport
        codec, bus = transport._codec, transport._bus
        assert codec is not None
        assert bus is not None
        counters = transport._counters[self.event_type]
        batch: list[tuple[Any, Receipt]] = []
        for stream, entry, data, deliveries in found:
            transport._in_flight[(stream, entry)] = time.monotonic()
            receipt = Receipt(self, stream, entry, data or b"", deliveries, None)
            if deliveries > 1:
                counters.redelivered += 1
            if data is None:  # deleted while pending: nothing to handle
                transport._settle(receipt, Verdict.HANDLED)
                continue
            if deliveries > transport.max_deliver:
                try:
                    undelivered: Any = codec.decode(data).event
                except WireError:
                    undelivered = data
                bus.report_dead_letter(
                    DeadLetter(undelivered, DeadLetterReason.DELIVERY_LIMIT, attempts=deliveries)
                )
                transport._dead(receipt, "delivery_limit")
                continue
            try:
                envelope = codec.decode(data)
                event = envelope.event
                if not isinstance(event, self.event_type):
                    raise DecodeError(
                        f"a {envelope.name} message on the stream of "
                        f"{self.event_type.__qualname__} ({stream})",
                        name=envelope.name,
                        event_id=envelope.id,
                    )
            except WireError as exc:
                logger.error("undecodable entry %s %s: %s", stream, entry, exc)
                bus.report_dead_letter(DeadLetter(data, DeadLetterReason.UNDECODABLE, exc))
                transport._dead(receipt, f"undecodable: {exc.reason.value}")
                continue
            receipt.context = handler_context(envelope.traceparent)
            batch.append((event, receipt))
        return batch
