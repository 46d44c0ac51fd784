"""The inbox: an idempotent handler's effects commit with an (event id, handler) row,
so a redelivered event whose row exists is acknowledged without running it again."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, TypeVar, overload

from .._errors import InvalidConfiguration, InvalidHandler
from .._wire.ids import current_event_id, track_event_ids
from ._connections import Run, asyncpg_run, driver_run, map_error, sqlalchemy_run
from ._errors import NoEventId
from ._local import event_id_of
from ._schema import DEFAULT_TABLES, Tables
from ._stats import InboxStats

E = TypeVar("E")
R = TypeVar("R")


class Inbox:
    """Make handlers idempotent with a table of handled (event id, handler) pairs::

        inbox = Inbox(async_sessionmaker(engine))      # or an asyncpg Pool

        @bus.on(OrderPlaced)
        @inbox.idempotent
        async def charge(event: OrderPlaced, session: AsyncSession) -> None:
            session.add(Charge(order_id=event.order_id, amount=event.total))

    Each call opens a session, begins a transaction, inserts the inbox row and runs
    the handler; both commit together, or neither does. An event whose row is there
    already (a redelivery after a crash before the acknowledgement) returns at once.
    The event's id comes from the broker's envelope, or from the outbox relay for
    in-memory types; an event from elsewhere raises :class:`NoEventId`.

    :param sessions: an SQLAlchemy ``async_sessionmaker`` (the handler gets an
        ``AsyncSession``) or an asyncpg ``Pool`` (the handler gets a ``Connection``)
    :param tables: the table names
    :param retention: how long rows are kept; longer than the broker may redeliver
        (NATS: ``max_deliver`` x ``ack_wait``, plus the time a consumer may be down)
    :param expire_every: seconds between removals of expired rows (done by a handler
        call, after its commit)
    """

    def __init__(
        self,
        sessions: Any,
        *,
        tables: Tables = DEFAULT_TABLES,
        retention: timedelta = timedelta(days=7),
        expire_every: float = 60.0,
    ) -> None:
        if not isinstance(retention, timedelta) or retention <= timedelta(0):
            raise InvalidConfiguration(
                f"retention must be a positive timedelta, got {retention!r}"
            )
        self._open = _opener(sessions)
        self.tables = tables
        self.retention = retention
        self.expire_every = float(expire_every)
        self._expired_at = time.monotonic()
        self._claim = (
            f"INSERT INTO {tables.inbox} (event_id, handler) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        )
        self._expire = (
            f"DELETE FROM {tables.inbox} "
            "WHERE handled_at < clock_timestamp() - CAST($1 AS interval) RETURNING 1"
        )
        self._handled = self._duplicates = self._failed = self._expired_count = 0
        track_event_ids()

    def stats(self) -> InboxStats:
        """The inbox's figures in this process."""
        return InboxStats(self._handled, self._duplicates, self._failed, self._expired_count)

    @overload
    def idempotent(
        self, handler: Callable[[E, Any], Awaitable[R]], *, name: str | None = None
    ) -> Callable[[E], Awaitable[R | None]]: ...

    @overload
    def idempotent(
        self, handler: None = None, *, name: str | None = None
    ) -> Callable[[Callable[[E, Any], Awaitable[R]]], Callable[[E], Awaitable[R | None]]]: ...

    def idempotent(
        self, handler: Callable[[E, Any], Awaitable[R]] | None = None, *, name: str | None = None
    ) -> Any:
        """Wrap ``handler(event, session)`` into ``handler(event)`` that runs at most
        once per event id (see the class doc; a duplicate returns None); usable as
        ``@inbox.idempotent`` or ``@inbox.idempotent(name="billing.charge")``.

        :param name: the handler's name in the inbox rows (default: its module and
            qualified name); keep it when renaming the function
        """
        if handler is None:
            return functools.partial(self.idempotent, name=name)
        if not callable(handler):
            raise InvalidHandler(
                f"an idempotent handler must be an async callable, got {handler!r}"
            )
        label = name or f"{handler.__module__}.{getattr(handler, '__qualname__', handler)}"

        @functools.wraps(handler)
        async def idempotent(event: E) -> R | None:
            return await self._handle(handler, label, event)

        return idempotent

    async def _handle(
        self, handler: Callable[[E, Any], Awaitable[R]], label: str, event: E
    ) -> R | None:
        event_id = event_id_of(event) or current_event_id()
        if event_id is None:
            raise NoEventId(
                f"the idempotent handler {label} got a {type(event).__qualname__} without a "
                "durable event id: publish it through an Outbox (in memory) or route it "
                "through a broker transport"
            )
        try:
            async with self._open() as (session, run):
                if not await run(self._claim, (event_id, label)):
                    self._duplicates += 1
                    return None
                try:
                    result = await handler(event, session)
                except Exception:
                    self._failed += 1
                    raise
        except Exception as exc:
            mapped = map_error(exc, self.tables.inbox)
            if mapped is exc:
                raise
            raise mapped from exc
        self._handled += 1
        if time.monotonic() - self._expired_at >= self.expire_every:
            await self.expire()
        return result

    async def expire(self) -> int:
        """Remove the rows older than the retention now. :return: how many"""
        self._expired_at = time.monotonic()
        async with self._open() as (_, run):
            rows = await run(self._expire, (self.retention,))
        self._expired_count += len(rows)
        return len(rows)


def _opener(sessions: Any) -> Callable[[], AbstractAsyncContextManager[tuple[Any, Run]]]:
    """A way to open (session, run) in a transaction that commits on a clean exit."""
    from contextlib import asynccontextmanager

    module = type(sessions).__module__.partition(".")[0]
    if module == "asyncpg" and hasattr(sessions, "acquire"):

        @asynccontextmanager
        async def pooled() -> Any:
            async with sessions.acquire() as conn, conn.transaction():
                yield conn, asyncpg_run(conn)

        return pooled
    if module == "sqlalchemy" and callable(sessions):

        @asynccontextmanager
        async def session_scope() -> Any:
            async with sessions() as session, session.begin():
                conn = await session.connection()
                if conn.dialect.paramstyle == "numeric_dollar":  # asyncpg
                    yield session, driver_run(conn)
                else:
                    yield session, sqlalchemy_run(session)

        return session_scope
    raise InvalidConfiguration(
        "Inbox needs an SQLAlchemy async_sessionmaker or an asyncpg Pool, "
        f"got {type(sessions).__qualname__}"
    )
