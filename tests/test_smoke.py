from __future__ import annotations

from dataclasses import dataclass

import pytest

from eventcore import Dispatcher

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Ping:
    n: int


async def test_publish_reaches_handler() -> None:
    bus = Dispatcher()
    seen: list[int] = []

    @bus.on(Ping)
    async def handle(event: Ping) -> None:
        seen.append(event.n)

    async with bus:
        for n in range(5):
            assert await bus.publish(Ping(n))
        await bus.drain()
    assert seen == [0, 1, 2, 3, 4]
