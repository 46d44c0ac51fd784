"""``bus.attach(service)``: an async context manager run for each run's life, entered
once the dispatcher runs, left before the queues drain (asyncio, uvloop, trio)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from eventcore import Dispatcher, DispatcherClosed

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Ping:
    n: int


async def test_a_service_runs_while_the_dispatcher_runs() -> None:
    bus = Dispatcher()
    log: list[str] = []

    @bus.on(Ping)
    async def handle(event: Ping) -> None:
        log.append(f"handled {event.n}")

    @asynccontextmanager
    async def service() -> AsyncIterator[None]:
        await bus.publish(Ping(1))  # the dispatcher runs: publishing works
        log.append("entered")
        yield
        log.append("left")
        with pytest.raises(DispatcherClosed):  # closing: no new publishes
            await bus.publish(Ping(3))

    bus.attach(service())
    async with bus:
        await bus.publish(Ping(2))
        log.append("body")
    assert log[:2] == ["entered", "body"]  # entered before the body ran
    # left while closing (publishing refused), and nothing lost: both events handled
    assert sorted(log[2:]) == ["handled 1", "handled 2", "left"]


async def test_a_service_that_fails_to_start_leaves_async_with() -> None:
    bus = Dispatcher()

    class Broken:
        async def __aenter__(self) -> None:
            raise ConnectionError("the database is down")

        async def __aexit__(self, *exc_info: object) -> None:
            raise AssertionError("never entered, never left")

    bus.attach(Broken())
    with pytest.raises(ConnectionError, match="down"):
        async with bus:
            pytest.fail("the body must not run")
    with pytest.raises(DispatcherClosed):
        await bus.publish(Ping(1))
