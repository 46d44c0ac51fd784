"""Events of the outbox tests."""

from __future__ import annotations

from dataclasses import dataclass

from eventcore.wire import event


@event("orders.placed", version=1)
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    total: float
    customer: str = "c"
