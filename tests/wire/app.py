"""A small service's dispatcher: the subject of the committed catalog (golden/).

Regenerate the golden files after an intended change::

    python -m eventcore catalog tests.wire.app:bus -o tests/wire/golden/asyncapi.json
    python -m eventcore catalog tests.wire.app:bus --format jsonschema \\
        -o tests/wire/golden/jsonschema.json
"""

import dataclasses

import pydantic

from eventcore import DeadLetter, Dispatcher, Overflow, Retry
from eventcore.wire import event


@event("orders.placed", version=2)
@dataclasses.dataclass(frozen=True)
class OrderPlaced:
    """A customer placed an order."""

    order_id: str
    total: float
    currency: str = "EUR"


@event("payments.requested")
class PaymentRequested(pydantic.BaseModel):
    """A payment is to be taken."""

    order_id: str
    amount_cents: int


def order_key(event: OrderPlaced) -> str:
    """Orders of one id are handled in order."""
    return event.order_id


async def send_receipt(event: OrderPlaced) -> None:
    """Mail the receipt."""


async def charge(event: PaymentRequested) -> None:
    """Call the payment provider."""


async def store_dead_letter(letter: DeadLetter) -> None:
    """Keep what could not be handled."""


def big_orders(event: OrderPlaced) -> bool:
    return event.total > 100


def make_bus() -> Dispatcher:
    """The dispatcher of the service."""
    bus = Dispatcher()
    bus.register(OrderPlaced, min_version=1)
    bus.register(PaymentRequested)
    bus.configure(OrderPlaced, queue_size=500, concurrency=8, key=order_key)
    bus.configure(
        PaymentRequested,
        overflow=Overflow.DROP_NEWEST,
        handler_timeout=5.0,
        retry=Retry(attempts=3, on=(ConnectionError,)),
    )
    bus.subscribe(OrderPlaced, send_receipt)
    bus.subscribe(OrderPlaced, send_receipt, filter=big_orders, timeout=1.0, principal="audit")
    bus.subscribe(PaymentRequested, charge)
    bus.subscribe(DeadLetter, store_dead_letter)
    return bus


bus = make_bus()
