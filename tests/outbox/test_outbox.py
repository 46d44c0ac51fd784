"""The outbox's writing side and the relay on an in-memory route: nothing leaves before
its transaction commits, a committed event is handled (also after a restart), rows
are removed only once handled, bad input gets typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from eventcore import DeadLetter, DeadLetterReason, Dispatcher
from eventcore.outbox import (
    DatabaseUnavailable,
    MissingTable,
    NotInTransaction,
    Outbox,
    Relay,
    Tables,
    UnsupportedDatabase,
)
from eventcore.wire import EncodeError

from .events import OrderPlaced
from .support import unique_tables, until

pytestmark = pytest.mark.anyio


async def rows(dsn: str, table: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(f"SELECT * FROM {table} ORDER BY seq"))
    finally:
        await conn.close()


@asynccontextmanager
async def sessions(dsn: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


async def test_a_committed_asyncpg_transaction_is_handled_and_its_row_removed(
    dsn: str, tables: Tables
) -> None:
    bus = Dispatcher()
    seen: list[OrderPlaced] = []

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        seen.append(event)

    outbox = Outbox(bus, tables=tables)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            event_id = await outbox.publish(OrderPlaced("A1", 10.0), session=conn)
        stored = await rows(dsn, tables.outbox)
        assert [(r["event_id"], r["type"]) for r in stored] == [(event_id, "orders.placed")]
    finally:
        await conn.close()
    async with bus, outbox.relay(dsn, poll_interval=0.2) as relay:
        await until(lambda: relay.stats().sent == 1)
    assert seen == [OrderPlaced("A1", 10.0)]
    assert await rows(dsn, tables.outbox) == []


async def test_a_rolled_back_session_publishes_nothing(dsn: str, tables: Tables) -> None:
    bus = Dispatcher()
    outbox = Outbox(bus, tables=tables)
    async with sessions(dsn) as make:
        async with make() as session, session.begin():
            await outbox.publish(OrderPlaced("R1", 1.0), session=session)
            assert len(await rows(dsn, tables.outbox)) == 0  # not visible before commit
            await session.rollback()
        async with make() as session, session.begin():
            await outbox.publish(OrderPlaced("C1", 2.0), session=session)
    stored = await rows(dsn, tables.outbox)
    assert [bytes(r["body"]).count(b'"C1"') for r in stored] == [1]


async def test_events_committed_while_no_relay_ran_are_handled_at_the_next_start(
    dsn: str, tables: Tables
) -> None:
    first = Dispatcher()
    outbox = Outbox(first, tables=tables)
    conn = await asyncpg.connect(dsn)
    try:
        for n in range(5):
            async with conn.transaction():
                await outbox.publish(OrderPlaced(f"O{n}", n), session=conn)
    finally:
        await conn.close()
    # the publisher "died": a new process, a new dispatcher, the same table
    bus = Dispatcher()
    seen: list[str] = []

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        seen.append(event.order_id)

    async with bus, Relay(bus, dsn, tables=tables, poll_interval=0.2) as relay:
        await until(lambda: relay.stats().sent == 5)
    assert seen == [f"O{n}" for n in range(5)]


async def test_the_relay_wakes_on_notify_and_sends_one_key_in_order(
    dsn: str, tables: Tables
) -> None:
    bus = Dispatcher()
    bus.configure(OrderPlaced, key=lambda e: e.customer, concurrency=8)
    seen: list[tuple[str, str]] = []

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        await anyio.sleep(0.001)
        seen.append((event.customer, event.order_id))

    outbox = Outbox(bus, tables=tables)
    async with bus, outbox.relay(dsn, poll_interval=30, batch=7) as relay:
        conn = await asyncpg.connect(dsn)
        try:
            for n in range(40):
                async with conn.transaction():
                    await outbox.publish(OrderPlaced(f"{n:02}", n, f"k{n % 3}"), session=conn)
        finally:
            await conn.close()
        await until(lambda: relay.stats().sent == 40)  # far sooner than poll_interval
    for key in ("k0", "k1", "k2"):
        mine = [order for customer, order in seen if customer == key]
        assert mine == sorted(mine)
    assert len(seen) == 40


async def test_two_relays_on_one_table_send_each_row_once(dsn: str, tables: Tables) -> None:
    bus = Dispatcher()
    seen: list[str] = []

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        seen.append(event.order_id)

    outbox = Outbox(bus, tables=tables)
    async with (
        bus,
        outbox.relay(dsn, poll_interval=0.05) as one,
        outbox.relay(dsn, poll_interval=0.05) as two,
    ):
        conn = await asyncpg.connect(dsn)
        try:
            for n in range(30):
                async with conn.transaction():
                    await outbox.publish(OrderPlaced(f"O{n}", n), session=conn)
        finally:
            await conn.close()
        await until(lambda: one.stats().sent + two.stats().sent == 30)
        await anyio.sleep(0.3)
        assert [one.stats().leader, two.stats().leader].count(True) == 1
    assert sorted(seen) == sorted(f"O{n}" for n in range(30))


async def test_an_undecodable_row_is_dead_lettered_with_its_reason(
    dsn: str, tables: Tables
) -> None:
    letters: list[DeadLetter] = []
    bus = Dispatcher(on_dead_letter=letters.append)
    seen: list[str] = []

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        seen.append(event.order_id)

    outbox = Outbox(bus, tables=tables)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"INSERT INTO {tables.outbox} (event_id, type, body) VALUES ('x', 'Gone', $1)",
            b'{"type": "Gone", "id": "x", "version": 1, "time": "2026-01-01T00:00:00Z"}',
        )
        async with conn.transaction():
            await outbox.publish(OrderPlaced("after", 1.0), session=conn)
    finally:
        await conn.close()
    async with bus, outbox.relay(dsn, poll_interval=0.1) as relay:
        await until(lambda: relay.stats().sent == 1)
        assert relay.stats().dead_lettered == 1
    assert seen == ["after"]
    dead = await rows(dsn, tables.dead)
    assert [(r["event_id"], r["reason"][:30]) for r in dead] == [
        ("x", "undecodable: unknown event typ")
    ]
    assert [letter.reason for letter in letters] == [DeadLetterReason.UNDECODABLE]
    assert await rows(dsn, tables.outbox) == []


async def test_publish_outside_a_transaction_is_refused(dsn: str, tables: Tables) -> None:
    outbox = Outbox(Dispatcher(), tables=tables)
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(NotInTransaction, match=r"conn\.transaction"):
            await outbox.publish(OrderPlaced("A", 1.0), session=conn)
    finally:
        await conn.close()
    async with sessions(dsn) as make:
        engine = make.kw["bind"]
        async with engine.connect() as plain:
            with pytest.raises(NotInTransaction):
                await outbox.publish(OrderPlaced("A", 1.0), session=plain)
        auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(auto) as session:
            with pytest.raises(NotInTransaction, match="AUTOCOMMIT"):
                await outbox.publish(OrderPlaced("A", 1.0), session=session)
    assert await rows(dsn, tables.outbox) == []


async def test_another_database_or_object_is_refused(tables: Tables) -> None:
    outbox = Outbox(Dispatcher(), tables=tables)
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        async with AsyncSession(engine) as session, session.begin():
            with pytest.raises(UnsupportedDatabase, match="sqlite"):
                await outbox.publish(OrderPlaced("A", 1.0), session=session)
    finally:
        await engine.dispose()
    with pytest.raises(UnsupportedDatabase, match="dict"):
        await outbox.publish(OrderPlaced("A", 1.0), session={})


async def test_an_event_that_does_not_encode_writes_nothing(dsn: str, tables: Tables) -> None:
    outbox = Outbox(Dispatcher(), tables=tables)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            with pytest.raises(EncodeError, match="OrderPlaced"):
                await outbox.publish(OrderPlaced("A", object()), session=conn)  # type: ignore[arg-type]
    finally:
        await conn.close()
    assert await rows(dsn, tables.outbox) == []


async def test_a_missing_table_names_the_command(dsn: str) -> None:
    missing = unique_tables()
    bus = Dispatcher()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            with pytest.raises(MissingTable, match="python -m eventcore sql schema"):
                await Outbox(bus, tables=missing).publish(OrderPlaced("A", 1.0), session=conn)
    finally:
        await conn.close()
    async with bus:
        with pytest.raises(MissingTable, match=missing.outbox):
            async with Relay(bus, dsn, tables=missing):
                pass


async def test_the_database_down_at_start_is_a_typed_error() -> None:
    from tests.brokers._servers import free_port

    bus = Dispatcher()
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    relay = Relay(bus, url, start_timeout=0.3)
    async with bus:
        with pytest.raises(DatabaseUnavailable, match="retries"):
            await relay.__aenter__()


async def test_connections_lost_mid_run_lose_nothing(dsn: str, tables: Tables) -> None:
    bus = Dispatcher()
    seen: list[str] = []

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        seen.append(event.order_id)

    outbox = Outbox(bus, tables=tables)
    conn = await asyncpg.connect(dsn)
    try:
        async with bus, outbox.relay(dsn, poll_interval=0.05, max_backoff=0.2) as relay:
            for n in range(20):
                async with conn.transaction():
                    await outbox.publish(OrderPlaced(f"O{n}", n), session=conn)
                if n % 5 == 0:  # PostgreSQL ends the relay's connection (as a restart would)
                    # this relay's only: others ('eventcore-relay' too) run in other
                    # tests, other workers, other checkouts against the same server
                    relay_conn = relay._conn
                    if relay_conn is not None:
                        await conn.execute(
                            "SELECT pg_terminate_backend($1)", relay_conn.get_server_pid()
                        )
            await until(lambda: relay.stats().sent >= 20)
            assert relay.stats().errors >= 1
        # nothing lost; a row whose delete was cut off is handled again (the inbox's job)
        assert set(seen) == {f"O{n}" for n in range(20)}
        # the writer's connection lost: a typed error, nothing written
        victim = await asyncpg.connect(dsn)
        await victim.transaction().start()
        await conn.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        with pytest.raises(DatabaseUnavailable, match="PostgreSQL"):
            await outbox.publish(OrderPlaced("lost", 1.0), session=victim)
        victim.terminate()
    finally:
        await conn.close()


async def test_statements_run_through_sqlalchemy_text_for_other_drivers(dsn: str) -> None:
    """The path for PostgreSQL drivers other than asyncpg (psycopg): $n -> :pn."""
    from eventcore.outbox._connections import sqlalchemy_run

    async with sessions(dsn) as make, make() as session:
        run = sqlalchemy_run(session)
        sql = "SELECT CAST($1 AS int) + CAST($2 AS int), CAST($10 AS text)"
        assert await run(sql, [*range(1, 10), "ten"]) == [(3, "ten")]


async def test_a_standby_relay_waits_for_its_poll_whatever_the_notifications(
    dsn: str, tables: Tables
) -> None:
    """Regression: a standby relay that had seen one notification asked for the lock
    again and again without pause (its 'notified' flag was never reset)."""
    bus = Dispatcher()

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        pass

    outbox = Outbox(bus, tables=tables)
    async with bus, outbox.relay(dsn, poll_interval=0.2) as leader:
        await until(lambda: leader.stats().leader)
        standby = outbox.relay(dsn, poll_interval=0.2)
        rounds = 0
        original = standby._round

        async def counted() -> bool | None:
            nonlocal rounds
            rounds += 1
            return await original()

        standby._round = counted  # type: ignore[method-assign]
        async with standby:
            conn = await asyncpg.connect(dsn)
            try:
                for n in range(10):
                    async with conn.transaction():
                        await outbox.publish(OrderPlaced(f"O{n}", n), session=conn)
            finally:
                await conn.close()
            await until(lambda: leader.stats().sent == 10)
            rounds = 0
            await anyio.sleep(1.0)
            assert not standby.stats().leader
        assert rounds <= 8  # about one per poll_interval
