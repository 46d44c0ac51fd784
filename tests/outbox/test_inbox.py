"""The inbox: an idempotent handler's effects commit with its (event id, handler) row;
a redelivery whose row exists is acknowledged without running the handler again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from eventcore import Dispatcher, InvalidConfiguration
from eventcore.outbox import Inbox, NoEventId, Outbox, Tables
from eventcore.outbox._local import relayed

from .events import OrderPlaced
from .support import until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def effects(dsn: str) -> AsyncIterator[str]:
    """A table of the handlers' effects (one row per charge)."""
    name = f"charges_{id(object()):x}"
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE TABLE {name} (order_id text NOT NULL)")
    try:
        yield name
    finally:
        await conn.execute(f"DROP TABLE {name}")
        await conn.close()


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_a_redelivered_event_changes_nothing_twice_asyncpg(
    dsn: str, tables: Tables, effects: str
) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        inbox = Inbox(pool, tables=tables)
        calls = 0

        @inbox.idempotent
        async def charge(event: OrderPlaced, conn: Any) -> None:
            nonlocal calls
            calls += 1
            await conn.execute(f"INSERT INTO {effects} VALUES ($1)", event.order_id)

        event = OrderPlaced("A1", 5.0)
        for _ in range(3):  # the first delivery and two redeliveries
            with relayed(event, "id-1"):
                await charge(event)
        assert calls == 1
        assert inbox.stats().handled == 1
        assert inbox.stats().duplicates == 2
        assert await count(dsn, f"SELECT count(*) FROM {effects}") == 1
    finally:
        await pool.close()


async def test_a_failed_handler_rolls_back_its_effects_and_its_row(
    dsn: str, tables: Tables, effects: str
) -> None:
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        inbox = Inbox(async_sessionmaker(engine), tables=tables)
        fail = True

        @inbox.idempotent(name="billing.charge")
        async def charge(event: OrderPlaced, session: AsyncSession) -> None:
            await session.execute(
                text(f"INSERT INTO {effects} VALUES (:o)"), {"o": event.order_id}
            )
            if fail:
                raise RuntimeError("card declined")

        event = OrderPlaced("A1", 5.0)
        with relayed(event, "id-2"), pytest.raises(RuntimeError):
            await charge(event)
        assert await count(dsn, f"SELECT count(*) FROM {effects}") == 0
        assert await count(dsn, f"SELECT count(*) FROM {tables.inbox}") == 0
        fail = False
        with relayed(event, "id-2"):
            await charge(event)  # the retry runs it: nothing had been committed
        assert await count(dsn, f"SELECT count(*) FROM {effects}") == 1
        assert (
            await count(
                dsn, f"SELECT count(*) FROM {tables.inbox} WHERE handler = 'billing.charge'"
            )
            == 1
        )
        assert inbox.stats().failed == 1
    finally:
        await engine.dispose()


async def test_outbox_to_inbox_in_memory_each_commit_has_one_effect(
    dsn: str, tables: Tables, effects: str
) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        bus = Dispatcher()
        inbox = Inbox(pool, tables=tables)

        @bus.on(OrderPlaced)
        @inbox.idempotent
        async def charge(event: OrderPlaced, conn: Any) -> None:
            await conn.execute(f"INSERT INTO {effects} VALUES ($1)", event.order_id)

        outbox = Outbox(bus, tables=tables)
        async with bus, outbox.relay(dsn, poll_interval=0.1) as relay:
            async with pool.acquire() as conn:
                for n in range(10):
                    async with conn.transaction():
                        await outbox.publish(OrderPlaced(f"O{n}", n), session=conn)
            await until(lambda: relay.stats().sent >= 10)
        assert await count(dsn, f"SELECT count(DISTINCT order_id) FROM {effects}") == 10
        assert await count(dsn, f"SELECT count(*) FROM {effects}") == 10
    finally:
        await pool.close()


async def test_an_event_queued_when_the_relay_stopped_keeps_its_id_for_the_drain(
    dsn: str, tables: Tables, effects: str
) -> None:
    """Regression: the relay cancelled while its event waited in a paused queue; the
    dispatcher's drain handled it later, and the inbox found no event id."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        bus = Dispatcher()
        inbox = Inbox(pool, tables=tables)

        @bus.on(OrderPlaced)
        @inbox.idempotent
        async def charge(event: OrderPlaced, conn: Any) -> None:
            await conn.execute(f"INSERT INTO {effects} VALUES ($1)", event.order_id)

        outbox = Outbox(bus, tables=tables)
        async with pool.acquire() as conn, conn.transaction():
            await outbox.publish(OrderPlaced("late", 1.0), session=conn)
        async with bus:
            bus.pause(OrderPlaced)
            async with outbox.relay(dsn, poll_interval=0.05, stop_timeout=0.1):
                await until(lambda: bus.stats(OrderPlaced).queued == 1)
        # drained at shutdown (promise 14), after the relay had left
        assert inbox.stats().handled == 1
        assert await count(dsn, f"SELECT count(*) FROM {effects}") == 1
    finally:
        await pool.close()


async def test_an_event_without_a_durable_id_is_refused(dsn: str, tables: Tables) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        inbox = Inbox(pool, tables=tables)

        @inbox.idempotent
        async def charge(event: OrderPlaced, conn: Any) -> None:
            raise AssertionError("never called")

        with pytest.raises(NoEventId, match="Outbox"):
            await charge(OrderPlaced("A1", 5.0))
    finally:
        await pool.close()


async def test_rows_expire_after_the_retention(dsn: str, tables: Tables) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        inbox = Inbox(pool, tables=tables, retention=timedelta(hours=1))

        @inbox.idempotent
        async def charge(event: OrderPlaced, conn: Any) -> None:
            pass

        for n in range(3):
            event = OrderPlaced(f"A{n}", 1.0)
            with relayed(event, f"id-{n}"):
                await charge(event)
        async with pool.acquire() as conn:
            await conn.execute(
                f"UPDATE {tables.inbox} SET handled_at = now() - interval '2 hours' "
                "WHERE event_id <> 'id-2'"
            )
        assert await inbox.expire() == 2
        assert inbox.stats().expired == 2
        assert await count(dsn, f"SELECT count(*) FROM {tables.inbox}") == 1
    finally:
        await pool.close()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidConfiguration, match="async_sessionmaker"):
        Inbox(object())
    with pytest.raises(InvalidConfiguration, match="retention"):
        Inbox(object(), retention=timedelta(0))
    with pytest.raises(InvalidConfiguration, match="identifier"):
        Tables(outbox="Robert'); DROP TABLE students;--")
