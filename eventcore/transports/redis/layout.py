"""How routed types lie on Redis: consumer groups on the streams (created from
``0``, never ``$``, so nothing published before is skipped) and, for keyed types,
the leases that let one consumer of the group read a stream at a time.

Keys: ``{prefix}:{name}[:{partition}]`` (the streams), ``{prefix}:dead:{name}``
(dead letters), ``{prefix}:lease:{group}:{stream}`` and
``{prefix}:members:{group}:{stream}`` (keyed types), ``{prefix}:dedup:{id}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from .client import ResponseError
from .settings import Session

logger = logging.getLogger("eventcore.redis")


async def create_groups(
    session: Session, streams: Iterable[str], groups: Iterable[str], *, again: bool = False
) -> None:
    """Create each of *groups* on each of *streams* (and the streams), from ``0``;
    a group that exists is left as it is."""
    for stream in streams:
        for group in groups:
            try:
                await session.redis.xgroup_create(stream, group, id="0", mkstream=True)
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


class Leases:
    """This consumer's share of a keyed type's streams: each stream is read by one
    consumer of the group at a time, so each key's events are handled in order."""

    def __init__(self, session: Session, streams: list[str]) -> None:
        self.session = session
        self.streams = streams
        #: the streams whose lease this consumer holds
        self.owned: list[str] = []
        #: owned streams being given up: not read any more, released once settled
        self.leaving: list[str] = []

    def _key(self, stream: str) -> str:
        s = self.session.settings
        return f"{s.prefix}:lease:{s.group}:{stream}"

    async def rebalance(self) -> list[str]:
        """Keep this consumer's fair share of the leases; the streams taken now.

        Live consumers announce themselves in a sorted set; each holds at most
        ``ceil(streams / consumers)`` leases, renewed here, taken when free (with
        every entry still pending in the stream, so that they are handled first, in
        order) and given up when the share shrinks, once nothing read from the
        stream is in flight.
        """
        session = self.session
        s, redis, me = session.settings, session.redis, session.consumer
        ms = int(s.claim_idle * 1000)
        members = f"{s.prefix}:members:{s.group}:{self.streams[0]}"
        now = int(time.time() * 1000)
        pipe = redis.pipeline(transaction=False)
        pipe.zadd(members, {me: now})
        pipe.zremrangebyscore(members, "-inf", now - ms)
        pipe.zcard(members)
        pipe.pexpire(members, ms * 4)
        _, _, alive, _ = await pipe.execute()
        share = -(-len(self.streams) // max(1, int(alive)))
        for stream in list(self.owned) + list(self.leaving):
            if not await session.evalsha("renew", [self._key(stream)], me, ms):
                logger.warning("lost the lease of %s (this process was too slow)", stream)
                for held in (self.owned, self.leaving):
                    if stream in held:
                        held.remove(stream)
        in_flight = {key[0] for key in session.ledger.held() if isinstance(key, tuple)}
        for stream in list(self.leaving):
            if stream not in in_flight:
                await session.evalsha("release", [self._key(stream)], me)
                self.leaving.remove(stream)
        while len(self.owned) > share:
            self.leaving.append(self.owned.pop())
        taken = []
        for stream in self.streams:
            if len(self.owned) >= share:
                break
            if stream in self.owned or stream in self.leaving:
                continue
            if await redis.set(self._key(stream), me, nx=True, px=ms):
                # everything still pending there becomes this consumer's, read first
                start: Any = "0-0"
                while True:
                    reply = await redis.xautoclaim(stream, s.group, me, 0, start, count=1000)
                    start = reply[0]
                    if start in (b"0-0", "0-0"):
                        break
                self.owned.append(stream)
                taken.append(stream)
        return taken

    async def release(self) -> None:
        """Give up every lease (at close: the other consumers take over at once)."""
        for stream in self.owned + self.leaving:
            await self.session.evalsha("release", [self._key(stream)], self.session.consumer)
        self.owned.clear()
        self.leaving.clear()
