"""The consuming side of the Redis transport: one source per routed type (entries
claimed from crashed consumers, this consumer's own pending ones, then new ones;
the leases of keyed types) and its receipts."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import anyio

from ..._deadletters import DeadLetter, DeadLetterReason
from ..._errors import EventcoreError, TransportError
from ..._transport import Verdict
from ..._wire.errors import DecodeError, WireError
from .._kit.tracecontext import handler_context
from .client import CONNECTION_ERRORS, ResponseError, id_order, message, replies
from .layout import Leases, create_groups
from .settings import Counters, Session

logger = logging.getLogger("eventcore.redis")

#: how long one XREADGROUP blocks on the server (ms); fetch loops until it has entries
BLOCK_MS = 1000
#: how long one read may wait for Redis before it counts as a lost connection (s)
STALLED = 15.0


class GroupVanished(EventcoreError, RuntimeError):
    """The consumer group of a stream is gone (Redis restarted without persistence,
    or the key was deleted): events may have been lost, and it is not recreated
    unless the transport was made with ``recreate_group=True``."""


class RedisReceipt:
    """One fetched entry; ``settle`` queues its XACK (and dead letter) for the settler."""

    __slots__ = (
        "context",
        "counters",
        "data",
        "deliveries",
        "entry",
        "event_type",
        "ledger",
        "stream",
    )

    def __init__(
        self,
        session: Session,
        event_type: type,
        stream: str,
        entry: bytes,
        data: bytes,
        deliveries: int,
    ) -> None:
        self.ledger = session.ledger
        self.counters = session.counters[event_type]
        self.event_type = event_type
        self.stream = stream
        self.entry = entry
        self.data = data
        self.deliveries = deliveries
        self.context: contextvars.Context | None = None

    def settle(self, verdict: Verdict) -> None:
        """Queue the entry's XACK (HANDLED, FAILED), its dead letter (FAILED,
        REJECTED), or leave it pending (SHUTDOWN: re-read at restart, or claimed)."""
        if verdict is Verdict.SHUTDOWN:
            if self.ledger.holds((self.stream, self.entry)):
                self.counters.nacked += 1
            self.ledger.drop((self.stream, self.entry))
            return
        note = (
            ""
            if verdict is Verdict.HANDLED
            else "handler_failed"
            if verdict is Verdict.FAILED
            else "rejected"
        )
        self.ledger.settle((self.stream, self.entry), verdict, note)

    def reject(self, why: str) -> None:
        """Dead-letter the entry on Redis (in one script with its XACK)."""
        self.ledger.settle((self.stream, self.entry), Verdict.REJECTED, why)


class RedisSource:
    """One routed type's entries for this consumer: claimed, own pending, then new."""

    def __init__(self, session: Session, event_type: type) -> None:
        self.session = session
        self.event_type = event_type
        self.streams = session.streams(event_type)
        self.ready = False
        #: the streams whose own pending entries are still to be re-read, and where
        self.pending: list[str] = []
        self.cursor = b"0"
        self.claim_at = 0.0
        #: where XAUTOCLAIM's scan of each stream's pending entries goes on
        self.claim_cursors: dict[str, bytes] = {}
        self.turn = 0
        keyed = session.bus.config(event_type).key is not None
        #: keyed: each stream is read by one consumer of the group at a time (a lease)
        self.leases = Leases(session, self.streams) if keyed else None

    def readable(self) -> list[str]:
        """The streams this consumer reads now."""
        return self.streams if self.leases is None else self.leases.owned

    async def rebalance(self) -> None:
        """Keep this consumer's share of a keyed type's leases (see :class:`Leases`);
        what it takes is read from its pending entries first."""
        if self.leases is None:
            return
        for stream in await self.leases.rebalance():
            if stream not in self.pending:
                self.pending.append(stream)

    def __repr__(self) -> str:
        return f"<Redis source {self.streams[0]} group={self.session.settings.group!r}>"

    async def _create_groups(self, *, again: bool = False) -> None:
        await create_groups(self.session, self.streams, [self.session.settings.group], again=again)
        self.pending, self.cursor = list(self.streams), b"0"
        self.ready = True
        if self.leases is not None:
            self.pending = []  # re-read where a lease is held (taking one claims all)
            await self.rebalance()

    async def fetch(self, room: int) -> Sequence[tuple[Any, RedisReceipt]]:
        """Wait for entries and return at most *room* of them: entries claimed from
        dead consumers, then this consumer's own pending ones, then new ones.

        :raises GroupVanished: the group is gone and ``recreate_group`` is off
        """
        session = self.session
        if session.redis is None:
            raise TransportError("the Redis transport is closed")
        if not self.ready:
            await self._create_groups()
        while True:
            try:
                with anyio.fail_after(STALLED):
                    found = await self._read(room)
            except (TimeoutError, *CONNECTION_ERRORS):
                # a read may have reached Redis and its reply been lost: those entries
                # are pending here, unseen; read this consumer's pending entries first
                self.pending, self.cursor = list(self.readable()), b"0"
                raise
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                group = session.settings.group
                if not session.settings.recreate_group:
                    raise GroupVanished(
                        f"the consumer group {group!r} of {self.streams} is gone "
                        "(Redis restarted without persistence, or the key was deleted): "
                        "events may have been lost. It is not recreated by itself (at $ it "
                        "would skip events); recreate it from 0 with XGROUP CREATE <stream> "
                        f"{group} 0 MKSTREAM, or pass recreate_group=True"
                    ) from None
                logger.error(
                    "the consumer group %r of %s vanished (Redis restarted without "
                    "persistence, or the key was deleted): recreating it from 0",
                    group,
                    self.streams,
                )
                await self._create_groups(again=True)
                continue
            try:
                batch = self._decode(found)
            except BaseException:
                # not handed over: read them again from this consumer's pending entries
                for stream, entry, _, _ in found:
                    session.ledger.drop((stream, entry))
                self.pending, self.cursor = list(self.readable()), b"0"
                raise
            if batch:
                return batch

    async def _read(self, room: int) -> list[tuple[str, bytes, bytes | None, int]]:
        """(stream, entry id, message or None if deleted, deliveries), at most *room*."""
        session = self.session
        redis, group, me = session.redis, session.settings.group, session.consumer
        ledger = session.ledger
        now = time.monotonic()
        if self.leases is None and now >= self.claim_at:
            self.claim_at = now + session.settings.claim_idle / 2
            claimed = await self._claim(room)
            if claimed:
                return claimed
        while (
            self.pending and self.leases is not None and self.pending[0] not in self.leases.owned
        ):
            self.pending.pop(0)
            self.cursor = b"0"
        if self.pending:  # own pending entries first: left by a crash or a shutdown
            stream = self.pending[0]
            reply = await redis.xreadgroup(group, me, {stream: self.cursor}, count=room)
            found = []
            entries = [e for _, es in replies(reply) for e in es]
            for entry, fields in entries:
                self.cursor = entry
                if not ledger.holds((stream, entry)):
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
        session = self.session
        idle = int(session.settings.claim_idle * 1000)
        found: list[tuple[str, bytes, bytes | None]] = []
        for stream in self.streams:
            left = room - len(found)
            if left <= 0:
                break
            reply = await session.redis.xautoclaim(
                stream,
                session.settings.group,
                session.consumer,
                idle,
                self.claim_cursors.get(stream, b"0-0"),
                count=left,
            )
            self.claim_cursors[stream] = reply[0]  # where the next scan goes on
            for entry, fields in reply[1]:
                if not session.ledger.holds((stream, entry)):
                    found.append((stream, entry, message(fields)))
        if found:
            logger.info("claimed %d idle entries of %s", len(found), self.streams[0])
            return await self._with_deliveries(found)
        return []

    async def _with_deliveries(
        self, found: list[tuple[str, bytes, bytes | None]]
    ) -> list[tuple[str, bytes, bytes | None, int]]:
        """*found* with each entry's delivery count (XPENDING)."""
        session = self.session
        counts: dict[tuple[str, bytes], int] = {}
        by_stream: dict[str, list[bytes]] = defaultdict(list)
        for stream, entry, _ in found:
            by_stream[stream].append(entry)
        for stream, entries in by_stream.items():
            rows = await session.redis.xpending_range(
                stream,
                session.settings.group,
                min=min(entries, key=id_order),
                max=max(entries, key=id_order),
                count=len(entries) + 64,
                consumername=session.consumer,
            )
            for row in rows:
                counts[(stream, row["message_id"])] = int(row["times_delivered"])
        return [(s, e, data, counts.get((s, e), 1)) for s, e, data in found]

    def _decode(
        self, found: list[tuple[str, bytes, bytes | None, int]]
    ) -> list[tuple[Any, RedisReceipt]]:
        session = self.session
        codec, bus, ledger = session.codec, session.bus, session.ledger
        counters: Counters = session.counters[self.event_type]
        max_deliver = session.settings.max_deliver
        batch: list[tuple[Any, RedisReceipt]] = []
        for stream, entry, data, deliveries in found:
            receipt = RedisReceipt(
                session, self.event_type, stream, entry, data or b"", deliveries
            )
            ledger.hold((stream, entry), receipt)
            if deliveries > 1:
                counters.redelivered += 1
            if data is None:  # deleted while pending: nothing to handle
                receipt.settle(Verdict.HANDLED)
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
                bus.report_dead_letter(
                    DeadLetter(data, DeadLetterReason.UNDECODABLE, exc, attempts=deliveries)
                )
                receipt.reject(f"undecodable: {exc.reason.value}")
                continue
            if deliveries > max_deliver:  # this delivery only dead-letters it
                bus.report_dead_letter(
                    DeadLetter(event, DeadLetterReason.DELIVERY_LIMIT, attempts=deliveries - 1)
                )
                receipt.reject("delivery_limit")
                continue
            receipt.context = handler_context(envelope.traceparent, envelope.id)
            batch.append((event, receipt))
        return batch
