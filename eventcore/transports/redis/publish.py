"""The publishing side of the Redis transport: one Lua script per event (``XLEN``,
and at the length limit a trim below what every group still needs, then
``XADD``), the concurrent publishes of one event-loop tick in one pipeline.

Each publish is bounded by its deadline (``send(..., deadline=)``) and by
``_RECONNECT_FOR`` of retries of a lost connection. A publish that certainly did
not reach Redis (no connection, its deadline passed before its pipeline left)
raises :class:`~eventcore.QueueFull`, so the type's overflow policy applies; one
whose pipeline left and got no answer raises :class:`~eventcore.PublishUnconfirmed`
(with ``dedup`` on, publishing the same event object again is deduplicated: it
keeps its event id). A publisher that names ``groups`` creates those consumer
groups on a stream before its first write there, so a group whose processes
start later still gets everything published for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._kit import (
    RetryIds,
    answer_wait,
    partition_of,
    redact,
    refused_send,
    remaining,
    unconfirmed,
)
from .._kit.tracecontext import current_traceparent
from .client import CONNECTION_ERRORS, NoScriptError, ResponseError
from .layout import create_groups
from .settings import Session

logger = logging.getLogger("eventcore.redis")

#: the most publishes in one pipeline
_MAX_BATCH = 1024
#: how long publishes retry a lost connection before giving up (s)
RECONNECT_FOR = 15.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0


@dataclass
class Item:
    """One publish in a batch."""

    event_type: type
    event_id: str
    stream: str
    dedup_key: str | None
    data: bytes
    deadline: float | None
    #: a pipeline carrying it left and brought no answer for it (its outcome is unknown)
    tried: bool = False


@dataclass
class Batch:
    """The publishes of one tick: one pipeline, one answer each."""

    #: None for a publish withdrawn before its pipeline left
    items: list[Item | None] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: whether the pipeline went out (a publish cannot withdraw from it any more)
    sent: bool = False


class Publisher:
    """Writes routed events to their streams (see the module doc)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        s = session.settings
        self.retries = RetryIds(s.dedup or 0.0)
        self._batch: Batch | None = None
        #: the pipeline of publishes on its way to Redis, if one is
        self._flying: asyncio.Event | None = None
        #: streams where the named groups exist (created once per run)
        self._grouped: set[str] = set()
        self._names: dict[str, bytes] = {}

    async def send(
        self, event_type: type, event: Any, *, deadline: float | None, principal: Any
    ) -> None:
        """Append *event* to its stream; return once Redis answered (see the module doc)."""
        session, s = self.session, self.session.settings
        key_of = session.bus.config(event_type).key
        key = None if key_of is None else key_of(event)
        attempt = self.retries.attempt(event)
        data = session.codec.encode(
            event,
            event_type=event_type,
            key=key,
            id=attempt.id,
            principal=principal,
            traceparent=current_traceparent(),
        )
        stream = session.stream(event_type, 0 if key is None else partition_of(key, s.partitions))
        if s.groups and stream not in self._grouped:
            await create_groups(session, [stream], s.groups)
            self._grouped.add(stream)
        dedup_key = None if s.dedup is None else f"{s.prefix}:dedup:{attempt.id}"
        item = Item(event_type, attempt.id, stream, dedup_key, data, deadline)
        try:
            await self._join(item)
        except BaseException:
            if s.dedup is not None:
                self.retries.failed(attempt)  # a retry of this object keeps its id
            raise

    async def _join(self, item: Item) -> None:
        batch = self._batch
        leader = batch is None or len(batch.items) >= _MAX_BATCH
        if batch is None or leader:
            batch = self._batch = Batch()
        index = len(batch.items)
        batch.items.append(item)
        if leader:
            with anyio.CancelScope(shield=True):  # the others wait for this pipeline
                await asyncio.sleep(0)  # the other publishes of this tick join the batch
                # one pipeline at a time (this one grows meanwhile), but not past the
                # deadlines of all its publishes: a stalled pipeline ahead holds them
                while self._flying is not None and not _overdue(batch):
                    with anyio.move_on_after(remaining(_latest_deadline(batch.items))):
                        await self._flying.wait()
                if self._batch is batch:
                    self._batch = None
                if self._flying is not None:  # all overdue: none of them left
                    self._refuse(batch)
                else:
                    self._flying = batch.done
                    try:
                        await self._publish(batch)
                    finally:
                        if self._flying is batch.done:
                            self._flying = None
        else:
            try:
                with anyio.fail_after(remaining(item.deadline)):
                    await batch.done.wait()
            except (asyncio.CancelledError, TimeoutError) as exc:
                if not batch.sent:  # withdrawn before it went out: no effect
                    batch.items[index] = None
                    if isinstance(exc, TimeoutError):
                        raise refused_send(
                            item.event_type, "Redis did not take it before its deadline"
                        ) from None
                    raise
                if isinstance(exc, TimeoutError):
                    raise unconfirmed(
                        item.event_type,
                        item.event_id,
                        "Redis",
                        deduplicated=self.session.settings.dedup is not None,
                    ) from None
                with anyio.CancelScope(shield=True):  # it took effect: it returns
                    await batch.done.wait()
        result = batch.results[index]
        if result == 0:
            raise refused_send(
                item.event_type,
                f"the Redis stream {item.stream} holds max_len="
                f"{self.session.settings.max_len} entries that its consumer groups have not "
                "acknowledged: its consumers are not keeping up",
            )
        if isinstance(result, BaseException):
            raise result

    async def _publish(self, batch: Batch) -> None:
        """Run *batch* as one pipeline, retrying a lost connection; answer every item."""
        session = self.session
        redis, s = session.redis, session.settings
        # bytes throughout: redis-py packs them as they are (this runs per publish)
        limit = str(s.max_len or 0).encode()
        ttl = str(int((s.dedup or 0) * 1000)).encode()
        names = self._names
        batch.sent = True
        todo = [i for i, item in enumerate(batch.items) if item is not None]
        tried: set[int] = set()  #: found the stream full once (and trimmed it)
        batch.results = [None] * len(batch.items)
        pause, give_up = _BACKOFF_FIRST, time.monotonic() + RECONNECT_FOR
        try:
            while todo:
                todo = self._expire(batch, todo)
                if not todo:
                    break
                sha = session.shas["send"].encode()
                commands: list[tuple[Any, ...]] = []
                for i in todo:
                    item = batch.items[i]
                    assert item is not None
                    item.tried = True
                    if item.dedup_key is None:
                        name = names.get(item.stream) or names.setdefault(
                            item.stream, item.stream.encode()
                        )
                        commands.append((b"EVALSHA", sha, b"1", name, limit, item.data))
                    else:
                        key = item.dedup_key
                        commands.append(
                            (b"EVALSHA", sha, b"2", item.stream, key, limit, item.data, ttl)
                        )
                try:
                    with anyio.fail_after(self._bound(batch, todo) or RECONNECT_FOR):
                        answers = await _run(redis, commands)
                except (TimeoutError, *CONNECTION_ERRORS) as exc:
                    if time.monotonic() + pause > give_up:
                        raise ConnectionError(type(exc).__name__) from None
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
                for i in again + full:  # answered: not stored, so not in doubt either
                    item = batch.items[i]
                    assert item is not None
                    item.tried = False
                if again:
                    await session.load_scripts()
                if full:  # at max_len: trim what every group acknowledged, try once more
                    for stream in {item.stream for i in full if (item := batch.items[i])}:
                        await session.evalsha("trim", [stream], limit)
                    tried.update(full)
                todo = sorted(again + full)
        except BaseException as exc:
            for i in todo:
                item = batch.items[i]
                assert item is not None
                batch.results[i] = self._failed(item, exc)
            if isinstance(exc, Exception):
                return
            raise
        finally:
            batch.done.set()

    def _refuse(self, batch: Batch) -> None:
        """Answer every publish of *batch*, which never left, as refused."""
        batch.results = [
            None if item is None else self._failed(item, TimeoutError()) for item in batch.items
        ]
        batch.done.set()

    @staticmethod
    def _bound(batch: Batch, todo: list[int]) -> float | None:
        """How long one pipeline may take: until the latest deadline among *todo*, at
        least ``ANSWER_FLOOR`` (None when one of them has none: ``RECONNECT_FOR``)."""
        latest = _latest_deadline(batch.items[i] for i in todo)
        return None if latest is None else answer_wait(RECONNECT_FOR, latest)

    def _expire(self, batch: Batch, todo: list[int]) -> list[int]:
        """*todo* without the items whose deadline passed (answered now)."""
        now = anyio.current_time()
        left = []
        for i in todo:
            item = batch.items[i]
            assert item is not None
            if item.deadline is not None and item.deadline <= now:
                batch.results[i] = self._failed(item, TimeoutError())
            else:
                left.append(i)
        return left

    def _failed(self, item: Item, exc: BaseException) -> BaseException:
        """The error of an item whose pipeline failed with *exc*: unknown outcome if
        a pipeline carrying it left, no room (nothing stored) if none did."""
        lost = not isinstance(exc, Exception) or isinstance(
            exc, (TimeoutError, ConnectionError, *CONNECTION_ERRORS)
        )
        if not lost:
            return exc
        if item.tried:
            return unconfirmed(
                item.event_type,
                item.event_id,
                "Redis",
                deduplicated=self.session.settings.dedup is not None,
            )
        return refused_send(
            item.event_type,
            f"Redis at {redact(self.session.settings.url)} did not answer "
            f"({type(exc).__name__}) before its deadline",
        )


def _latest_deadline(items: Iterable[Item | None]) -> float | None:
    """The last deadline among *items* (None when one has none, or there are none)."""
    deadlines = [item.deadline for item in items if item is not None]
    if not deadlines or None in deadlines:
        return None
    return max(d for d in deadlines if d is not None)


def _overdue(batch: Batch) -> bool:
    """Whether the deadline of every publish in *batch* passed."""
    latest = _latest_deadline(batch.items)
    return latest is not None and latest <= anyio.current_time()


async def _run(redis: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """The answers of *commands*: one command on its own (the sequential publisher's
    case: a pipeline costs redis-py more than the command), more in one pipeline;
    an error answer is returned, not raised."""
    if len(commands) == 1:
        try:
            return [await redis.execute_command(*commands[0])]
        except ResponseError as exc:
            return [exc]
    pipe = redis.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    answers: list[Any] = await pipe.execute(raise_on_error=False)
    return answers
