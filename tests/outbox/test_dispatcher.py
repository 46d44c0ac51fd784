"""The outbox through the dispatcher: ``bus.publish(event, session=...)`` and a relay
attached to the dispatcher's life (``bus.attach(outbox.relay(dsn))``)."""

from __future__ import annotations

import asyncpg
import pytest

from eventcore import Dispatcher, DispatcherClosed, InvalidConfiguration
from eventcore.outbox import MissingTable, Outbox, Tables

from .events import OrderPlaced
from .support import unique_tables, until

pytestmark = pytest.mark.anyio


async def test_publish_with_a_session_commits_with_it_and_the_attached_relay_sends(
    dsn: str, tables: Tables
) -> None:
    bus = Dispatcher()
    seen: list[str] = []

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        seen.append(event.order_id)

    outbox = Outbox(bus, tables=tables, relay=dsn, poll_interval=0.05)
    relay = outbox.attached_relay
    assert relay is not None
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():  # the dispatcher need not run to write
            assert await bus.publish(OrderPlaced("before", 1.0), session=conn) is True
        tx = conn.transaction()
        await tx.start()
        await bus.publish(OrderPlaced("rolled back", 1.0), session=conn)
        await tx.rollback()
        for run in range(2):  # the relay runs again with each run
            async with bus:
                async with conn.transaction():
                    await bus.publish(OrderPlaced(f"run{run}", 1.0), session=conn)
                await until(lambda run=run: f"run{run}" in seen)  # type: ignore[misc]
                assert relay.stats().connected
            assert not relay.stats().connected  # stopped before the queues drained
    finally:
        await conn.close()
    assert seen == ["before", "run0", "run1"]


async def test_publish_with_a_session_needs_an_outbox() -> None:
    with pytest.raises(InvalidConfiguration, match=r"eventcore\.outbox\.Outbox\(bus\)"):
        await Dispatcher().publish(OrderPlaced("A", 1.0), session=object())


async def test_an_attached_relay_that_cannot_start_leaves_async_with(dsn: str) -> None:
    bus = Dispatcher()
    missing = unique_tables()
    Outbox(bus, tables=missing, relay=dsn)
    with pytest.raises(MissingTable, match="python -m eventcore sql schema"):
        async with bus:
            pytest.fail("the body must not run")
    with pytest.raises(DispatcherClosed):
        await bus.publish(OrderPlaced("A", 1.0))
