"""The soak's service: the demo's five event types and policies, each event numbered."""

from __future__ import annotations

from dataclasses import dataclass

from eventcore import Dispatcher
from eventcore._demo import (
    POLICIES,
    OrderPlaced,
    PageViewed,
    PaymentRequested,
    ReceiptSent,
    SensorReading,
)


@dataclass(frozen=True)
class Order:
    """BLOCK, like the demo's OrderPlaced; its handler publishes a Receipt."""

    n: int


@dataclass(frozen=True)
class Receipt:
    """BLOCK, published by a handler (a follow-on event)."""

    n: int


@dataclass(frozen=True)
class PageView:
    """DROP_NEWEST: shed load."""

    n: int


@dataclass(frozen=True)
class Reading:
    """DROP_OLDEST: only the freshest matter; some handlers time out."""

    n: int


@dataclass(frozen=True)
class Payment:
    """RAISE: the feed backs off; every 40th fails, every 97th hangs past shutdown."""

    n: int


#: each soak type with the demo type whose settings it takes
SHAPE: dict[type, type] = {
    Order: OrderPlaced,
    Receipt: ReceiptSent,
    PageView: PageViewed,
    Reading: SensorReading,
    Payment: PaymentRequested,
}
TYPES: tuple[type, ...] = tuple(SHAPE)
NAMES = {cls: f"soak.{cls.__name__.lower()}" for cls in TYPES}
BY_NAME = {name: cls for cls, name in NAMES.items()}


def configure(bus: Dispatcher) -> None:
    """Register the wire names and give every type the demo's settings."""
    for cls, demo in SHAPE.items():
        overflow, queue_size, concurrency, _ = POLICIES[demo]
        bus.register(cls, name=NAMES[cls])
        bus.configure(cls, overflow=overflow, queue_size=queue_size, concurrency=concurrency)


def cost(cls: type) -> float:
    """Seconds one handler call of *cls* takes, on average (the demo's)."""
    return POLICIES[SHAPE[cls]][3]
