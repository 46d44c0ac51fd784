"""The README's example: handlers per event type, a bounded queue, a drain on exit.

Run it with ``python examples/quickstart.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from eventcore import Dispatcher, Overflow


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    total: float


bus = Dispatcher()  # defaults: queue_size=1024, concurrency=1, overflow=Overflow.BLOCK
bus.configure(OrderPlaced, queue_size=100, concurrency=4, overflow=Overflow.BLOCK)


@bus.on(OrderPlaced)
async def send_receipt(event: OrderPlaced) -> None:
    await anyio.sleep(0.01)  # an email API call
    print(f"receipt sent for {event.order_id}")


@bus.on(OrderPlaced, filter=lambda e: e.total > 100)
async def flag_for_review(event: OrderPlaced) -> None:
    print(f"big order {event.order_id}: {event.total}")


async def main() -> None:
    async with bus:  # starts workers on demand; drains accepted events on exit
        for n in range(5):
            await bus.publish(OrderPlaced(f"A{n}", 60.0 * n))  # waits only if the queue is full
        outcome = await bus.publish_and_wait(OrderPlaced("B1", 500.0))
        print("B1 handled by", [r.handler.__name__ for r in outcome.results])
    print(bus.stats(OrderPlaced))


if __name__ == "__main__":
    anyio.run(main)
