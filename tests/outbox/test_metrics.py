"""The relay's and the inbox's figures in Prometheus."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from eventcore import Dispatcher
from eventcore.outbox import Inbox, Outbox, Tables
from eventcore.outbox.prometheus import OutboxCollector

from .events import OrderPlaced
from .support import until

pytestmark = pytest.mark.anyio


async def test_backlog_and_counts_reach_prometheus(dsn: str, tables: Tables) -> None:
    bus = Dispatcher()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        inbox = Inbox(pool, tables=tables)

        @bus.on(OrderPlaced)
        @inbox.idempotent
        async def charge(event: OrderPlaced, conn: Any) -> None:
            pass

        outbox = Outbox(bus, tables=tables)
        async with pool.acquire() as conn:
            for n in range(3):
                async with conn.transaction():
                    await outbox.publish(OrderPlaced(f"O{n}", n), session=conn)
        relay = outbox.relay(dsn, poll_interval=0.05)
        registry = CollectorRegistry()
        registry.register(OutboxCollector(relay=relay, inbox=inbox))
        async with bus:
            bus.pause(OrderPlaced)  # nothing can be handled: the backlog stays
            async with relay:
                await until(lambda: relay.stats().backlog == 3)
                text = generate_latest(registry).decode()
                assert f'eventcore_outbox_backlog{{table="{tables.outbox}"}} 3.0' in text
                assert f'eventcore_outbox_leader{{table="{tables.outbox}"}} 1.0' in text
                bus.resume(OrderPlaced)
                await until(lambda: relay.stats().sent == 3)
        text = generate_latest(registry).decode()
        assert f'eventcore_outbox_sent_total{{table="{tables.outbox}"}} 3.0' in text
        assert f'eventcore_inbox_handled_total{{table="{tables.inbox}"}} 3.0' in text
    finally:
        await pool.close()
