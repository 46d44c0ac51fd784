"""Settling on Redis (the ack logic of the Redis transport, all of it here), the
keep-alive of held entries, and the janitor.

* handled -> ``XACK``; failed / rejected -> the entry is written to the
  dead-letter stream and acknowledged in one script (``DEAD``); shutdown ->
  left pending (this consumer re-reads it at restart, another one claims it
  after ``claim_idle``). Acks go out in one pipeline per settler round.
* keep-alive: ``XCLAIM ... JUSTID`` to this consumer resets the idle time of an
  entry handled here for a while (its delivery count stays), so a slow handler is
  not taken for a crash by the others' ``claim_idle``.
* janitor (every few seconds): the leases of keyed types, each consumed type's
  group lag, trimming what every group acknowledged, forgetting long idle
  consumers that hold nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Hashable
from typing import TYPE_CHECKING

import anyio

from ..._transport import Verdict
from .._kit import Settlement
from .client import NoScriptError, text
from .settings import Session

if TYPE_CHECKING:
    from .consume import RedisReceipt, RedisSource

logger = logging.getLogger("eventcore.redis")

#: dead-letter streams keep about this many entries
_DEAD_MAX_LEN = 100_000
#: consumers idle this long (s) with nothing pending are deleted, every this many rounds
_FORGET_IDLE, _FORGET_EVERY = 3600.0, 15
#: how long one round of acks may wait for Redis before it is tried again (s)
STALLED = 15.0
#: how often the janitor runs (s)
JANITOR_EVERY = 2.0


class Settling:
    """Sends a batch of verdicts and refreshes held entries (the settler's and the
    keep-alive's work for Redis)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    async def apply(self, batch: list[Settlement[RedisReceipt]]) -> None:
        """Send the verdicts of *batch* in one pipeline (the settler's ``apply``)."""
        session = self.session
        s, ledger = session.settings, session.ledger
        plain: dict[str, list[bytes]] = defaultdict(list)
        dead: list[Settlement[RedisReceipt]] = []
        for settlement in batch:
            if settlement.verdict is Verdict.HANDLED:
                plain[settlement.receipt.stream].append(settlement.receipt.entry)
            else:
                dead.append(settlement)
        if not dead and len(plain) == 1:  # the common case: one XACK, no pipeline
            [(stream, entries)] = plain.items()
            with anyio.fail_after(STALLED):
                await session.redis.xack(stream, s.group, *entries)
            for entry in entries:
                ledger.done((stream, entry))
            for settlement in batch:
                settlement.receipt.counters.acked += 1
            return
        pipe = session.redis.pipeline(transaction=False)
        for stream, entries in plain.items():
            pipe.xack(stream, s.group, *entries)
        for _, receipt, _, why in dead:
            pipe.execute_command(
                "EVALSHA",
                session.shas["dead"],
                2,
                receipt.stream,
                session.dead_stream(receipt.event_type),
                s.group,
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
                s.group,
                "consumer",
                session.consumer,
                "deliveries",
                receipt.deliveries,
            )
        with anyio.fail_after(STALLED):  # a lost connection or a stall: put back
            answers = await pipe.execute(raise_on_error=False)
        for answer, (stream, entries) in zip(answers, plain.items(), strict=False):
            if isinstance(answer, BaseException):
                logger.error("XACK on %s failed: %s", stream, answer)
            for entry in entries:
                ledger.done((stream, entry))
        for settlement in batch:
            if settlement.verdict is Verdict.HANDLED:
                settlement.receipt.counters.acked += 1
        retry = []
        for answer, settlement in zip(answers[len(plain) :], dead, strict=True):
            receipt, why = settlement.receipt, settlement.note
            if isinstance(answer, NoScriptError):
                retry.append(settlement)
                continue
            if isinstance(answer, BaseException):
                logger.error(
                    "dead-lettering %s %s failed: %s", receipt.stream, receipt.entry, answer
                )
            else:
                receipt.counters.dead_lettered += 1
                if why == "handler_failed":
                    receipt.counters.acked += 1
                else:
                    receipt.counters.terminated += 1
            ledger.done(settlement.key)
        if retry:  # Redis restarted and lost the scripts: again, once they are back
            await session.load_scripts()
            ledger.put_back(retry)

    async def refresh(self, stale: list[tuple[Hashable, RedisReceipt]]) -> None:
        """Reset the idle time of entries held here for a while (the keep-alive's
        ``refresh``): ``XCLAIM ... JUSTID`` to this consumer."""
        session = self.session
        by_stream: dict[str, list[bytes]] = defaultdict(list)
        for _, receipt in stale:
            by_stream[receipt.stream].append(receipt.entry)
        for stream, entries in by_stream.items():
            await session.redis.xclaim(
                stream, session.settings.group, session.consumer, 0, entries, justid=True
            )


class Janitor:
    """Leases, figures and trimming, every ``JANITOR_EVERY`` seconds (a crew job)."""

    def __init__(self, session: Session, sources: dict[type, RedisSource]) -> None:
        self.session = session
        self.sources = sources
        self.every = min(JANITOR_EVERY, session.settings.claim_idle / 3)
        self._rounds = 0

    async def run(self) -> None:
        """Run a round every ``every`` seconds; a failed round is logged."""
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.round()
            except NoScriptError:
                await self.session.load_scripts()
            except Exception as exc:
                logger.warning("the Redis janitor failed (%s); retrying", exc)

    async def round(self) -> None:
        """Keep the partition leases of keyed types; refresh each consumed type's
        group lag; trim what every group acknowledged."""
        session = self.session
        group = session.settings.group
        self._rounds += 1
        for event_type, source in list(self.sources.items()):
            if not source.ready:
                continue
            await source.rebalance()
            lag = 0
            for stream in source.streams:
                if self._rounds % _FORGET_EVERY == 0:
                    await forget_consumers(session, stream)
                await session.evalsha("trim", [stream], 0)
                for info in await session.redis.xinfo_groups(stream):
                    if text(info.get("name")) == group:
                        lag += int(info.get("lag") or 0) + int(info.get("pending") or 0)
            session.counters[event_type].pending = lag


async def forget_consumers(session: Session, stream: str) -> None:
    """Delete the group's consumers that hold nothing and were idle for long (the
    names of processes gone): never one with pending entries (they would be lost)."""
    s = session.settings
    idle = max(_FORGET_IDLE, 10 * s.claim_idle) * 1000
    for info in await session.redis.xinfo_consumers(stream, s.group):
        name = text(info.get("name"))
        if name != session.consumer and not info.get("pending") and info.get("idle", 0) > idle:
            await session.redis.xgroup_delconsumer(stream, s.group, name)
