"""The orders domain shared by the example apps: events, handlers, a stop report.

No web framework here: ``examples/fastapi_app.py`` and ``examples/aiohttp_app.py``
put the same service behind FastAPI and aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from eventcore import Dispatcher, Lifecycle
from eventcore.integrations import logging as event_logging

log = event_logging.event_logger("orders")


@dataclass(frozen=True)
class OrderPlaced:
    """A customer placed an order."""

    order_id: str
    total: float


@dataclass(frozen=True)
class StockReserved:
    """Stock was reserved for an order (a follow-on event of OrderPlaced)."""

    order_id: str


@dataclass(frozen=True)
class OrderCancelled:
    """A customer cancelled an order."""

    order_id: str


class Orders:
    """The service's state; the handlers move each order along."""

    def __init__(self, bus: Dispatcher, work_seconds: float) -> None:
        self.bus = bus
        self.work_seconds = work_seconds
        self.status: dict[str, str] = {}

    async def reserve_stock(self, event: OrderPlaced) -> None:
        """Reserve stock (simulated I/O), then publish the follow-on event."""
        await anyio.sleep(self.work_seconds)
        if self.status.get(event.order_id) != "cancelled":
            self.status[event.order_id] = "reserved"
            await self.bus.publish(StockReserved(event.order_id))

    async def send_receipt(self, event: StockReserved) -> None:
        """Confirm the order (simulated I/O)."""
        await anyio.sleep(self.work_seconds)
        if self.status.get(event.order_id) != "cancelled":
            self.status[event.order_id] = "confirmed"
        log.debug("order confirmed")

    async def cancel(self, event: OrderCancelled) -> None:
        """Mark the order cancelled."""
        self.status[event.order_id] = "cancelled"
        log.info("order cancelled")


def report(bus: Dispatcher | None, phase: Lifecycle) -> None:
    """Log what the dispatcher did when it stops (after draining)."""
    if bus is not None and phase is Lifecycle.STOPPED:
        summary = ", ".join(
            f"{t.__qualname__} {s.handled}/{s.accepted} (abandoned {s.abandoned})"
            for t, s in bus.stats().items()
        )
        log.info("dispatcher stopped; handled/accepted: %s", summary or "no events")
