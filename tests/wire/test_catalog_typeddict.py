"""Found while seeding the fuzzer (``fuzz/``): the catalog of a dispatcher with a
subscription to a TypedDict event type raised ``TypeError`` (TypedDicts refuse
``issubclass``); the TypedDict is listed with its handler now."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypedDict

from eventcore import Dispatcher
from eventcore.catalog import render


class Refund(TypedDict):
    order_id: str
    amount: float


@dataclass(frozen=True)
class Shipped:
    order_id: str


async def on_refund(event: Any) -> None:
    pass


async def on_shipped(event: Shipped) -> None:
    pass


def test_a_subscribed_typeddict_is_in_every_catalog() -> None:
    bus = Dispatcher()
    bus.register(Refund, name="orders.refund")
    bus.register(Shipped, name="orders.shipped")
    bus.subscribe(Refund, on_refund)
    bus.subscribe(Shipped, on_shipped)
    doc = json.loads(render(bus, "asyncapi"))
    handlers = {op["x-eventcore-handler"].rpartition(".")[2]: op["channel"]["$ref"]
                for op in doc["operations"].values()}  # fmt: skip
    assert handlers == {
        "on_refund": "#/channels/orders.refund",
        "on_shipped": "#/channels/orders.shipped",
    }
    assert "orders.refund" in json.loads(render(bus, "jsonschema"))["events"]
    assert "`orders.refund`" in render(bus, "markdown")
