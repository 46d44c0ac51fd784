"""The orders domain shared by the example apps: events, handlers, a stop report.

No web framework here: ``examples/fastapi_app.py`` and ``examples/aiohttp_app.py``
put the same service behind FastAPI and aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from prometheus_client import CollectorRegistry

from eventcore import Dispatcher, Lifecycle, Overflow
from eventcore.integrations import logging as event_logging
from eventcore.integrations import prometheus

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


def wire(
    bus: Dispatcher | None, queue_size: int, concurrency: int, work_seconds: float
) -> tuple[Dispatcher, Orders, CollectorRegistry]:
    """Configure *bus* (a new one when None) for the service, subscribe the handlers,
    and instrument it (Prometheus metrics, event ids on log records)."""
    if bus is None:
        bus = Dispatcher(propagate_context=True, on_lifecycle=lambda phase: report(bus, phase))
    for event_type in (OrderPlaced, StockReserved, OrderCancelled):
        bus.configure(
            event_type, queue_size=queue_size, concurrency=concurrency, overflow=Overflow.BLOCK
        )
    orders = Orders(bus, work_seconds)
    bus.subscribe(OrderPlaced, orders.reserve_stock)
    bus.subscribe(StockReserved, orders.send_receipt)
    bus.subscribe(OrderCancelled, orders.cancel)
    registry = CollectorRegistry()
    prometheus.instrument(bus, registry=registry)
    event_logging.instrument(bus)
    return bus, orders, registry
