"""The relay on broker routes: a committed row is sent under its event id (the
broker's deduplication id), the consumer's handlers know that id, and a row sent
twice (a crash between the send and the delete) is stored once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest

from eventcore import Dispatcher
from eventcore._wire.ids import track_event_ids
from eventcore.outbox import Outbox, Relay, Tables
from eventcore.transports.redis import RedisTransport
from eventcore.wire import current_event_id
from tests.brokers._servers import NATS_URL, REDIS_URL, require
from tests.brokers.nats_kit import nats_transports
from tests.brokers.redis_support import unique_prefix

from .events import OrderPlaced
from .support import until

pytestmark = pytest.mark.anyio


async def write_twice(dsn: str, outbox: Outbox, event: OrderPlaced) -> str:
    """Publish *event* in a transaction, then copy its row: the relay meets the same
    event id twice, as after a crash between a send and its delete."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            event_id = await outbox.publish(event, session=conn)
        await conn.execute(
            f"INSERT INTO {outbox.tables.outbox} (event_id, type, key, body) "
            f"SELECT event_id, type, key, body FROM {outbox.tables.outbox} WHERE event_id = $1",
            event_id,
        )
    finally:
        await conn.close()
    return event_id


async def relay_and_consume(
    dsn: str, tables: Tables, make: Callable[[], Any], events: int
) -> list[tuple[str, str | None]]:
    """A publisher process (outbox + relay) and a consumer process on one route."""
    publisher, consumer = Dispatcher(transport=make()), Dispatcher(transport=make())
    seen: list[tuple[str, str | None]] = []
    publisher.register(OrderPlaced)
    consumer.register(OrderPlaced)

    @consumer.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        seen.append((event.order_id, current_event_id()))

    outbox = Outbox(publisher, tables=tables)
    ids = [await write_twice(dsn, outbox, OrderPlaced(f"O{n}", n)) for n in range(events)]
    async with consumer, publisher, Relay(publisher, dsn, tables=tables, poll_interval=0.1) as r:
        await until(lambda: r.stats().sent == 2 * events and len(seen) >= events)
        await anyio.sleep(0.3)  # a duplicate would arrive meanwhile
    assert sorted(seen) == sorted((f"O{n}", ids[n]) for n in range(events))
    return seen


async def test_nats_deduplicates_a_row_sent_twice_and_handlers_see_its_id(
    dsn: str, tables: Tables
) -> None:
    parts = urlsplit(NATS_URL)
    require("NATS", parts.hostname or "127.0.0.1", parts.port or 4222)
    track_event_ids()  # what creating an Inbox does: the transports give handlers the id
    async with nats_transports() as make:
        await relay_and_consume(dsn, tables, lambda: make(group="billing"), 5)


async def test_redis_with_dedup_deduplicates_a_row_sent_twice(dsn: str, tables: Tables) -> None:
    parts = urlsplit(REDIS_URL)
    require("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    track_event_ids()
    with unique_prefix(REDIS_URL) as prefix:

        def make() -> RedisTransport:
            return RedisTransport(REDIS_URL, group="billing", prefix=prefix, dedup=60.0)

        await relay_and_consume(dsn, tables, make, 5)
