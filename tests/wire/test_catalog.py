"""The AsyncAPI 3.0 catalog: valid against the official schema, and as committed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from eventcore import Dispatcher, Overflow
from eventcore.catalog import asyncapi, entries, json_schema, markdown, render
from eventcore.wire import Codec

from . import app
from .events import DataclassEvent, Plain

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((HERE / "asyncapi" / "asyncapi-3.0.0.json").read_text())
    return jsonschema.Draft7Validator(schema)


def test_the_official_schema_refuses_a_broken_document(
    validator: jsonschema.Draft7Validator,
) -> None:
    doc = asyncapi(app.make_bus())
    doc["operations"]["tests.wire.app.charge.on.payments.requested"]["action"] = "eat"
    assert not validator.is_valid(doc)
    assert not validator.is_valid({**doc, "asyncapi": "2.6.0"})


def test_the_catalog_is_valid_asyncapi_3(validator: jsonschema.Draft7Validator) -> None:
    doc = asyncapi(app.make_bus(), title="shop", version="1.2.3")
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert doc["info"]["title"] == "shop"


def test_the_catalog_matches_the_committed_golden_files() -> None:
    bus = app.make_bus()
    assert render(bus) == (GOLDEN / "asyncapi.json").read_text(encoding="utf-8")
    assert render(bus, "jsonschema") == (GOLDEN / "jsonschema.json").read_text(encoding="utf-8")


def test_a_channel_and_message_per_type_and_an_operation_per_handler() -> None:
    doc = asyncapi(app.make_bus())
    assert sorted(doc["channels"]) == ["orders.placed", "payments.requested"]
    assert sorted(doc["components"]["messages"]) == sorted(doc["channels"])
    orders = doc["channels"]["orders.placed"]
    assert orders["address"] == "orders.placed"
    assert orders["x-eventcore-queue-size"] == 500
    assert orders["x-eventcore-concurrency"] == 8
    assert orders["x-eventcore-overflow"] == "block"
    assert orders["x-eventcore-key"] == "tests.wire.app.order_key"
    assert orders["x-eventcore-dead-letters"]["handlers"] == ["tests.wire.app.store_dead_letter"]
    payments = doc["channels"]["payments.requested"]
    assert payments["x-eventcore-handler-timeout"] == 5.0
    assert payments["x-eventcore-retry"]["attempts"] == 3
    assert "dropped_newest" in payments["x-eventcore-dead-letters"]["reasons"]
    ops = doc["operations"]
    assert len(ops) == 3  # send_receipt twice (with a filter), charge once
    filtered = ops["tests.wire.app.send_receipt.on.orders.placed-2"]
    assert filtered["action"] == "receive"
    assert filtered["channel"] == {"$ref": "#/channels/orders.placed"}
    assert filtered["x-eventcore-filter"] == "tests.wire.app.big_orders"
    assert filtered["x-eventcore-timeout"] == 1.0
    assert filtered["x-eventcore-principal"] == "audit"
    assert ops["tests.wire.app.charge.on.payments.requested"]["x-eventcore-timeout"] == 5.0
    message = doc["components"]["messages"]["orders.placed"]
    assert message["x-eventcore-version"] == 2
    assert message["summary"] == "A customer placed an order."


def test_the_message_payload_describes_the_real_envelope() -> None:
    bus = app.make_bus()
    doc = asyncapi(bus)
    codec = Codec.for_dispatcher(bus)
    for sample in (
        app.OrderPlaced("A1", 12.5),
        app.PaymentRequested(order_id="A1", amount_cents=1250),
    ):
        message = json.loads(codec.encode(sample, principal="alice"))
        root = {
            "$ref": f"#/components/messages/{message['type']}/payload",
            "components": doc["components"],
        }
        jsonschema.Draft7Validator(root).validate(message)
        assert not jsonschema.Draft7Validator(root).is_valid({**message, "version": 9})


@dataclasses.dataclass
class Base:
    x: int


@dataclasses.dataclass
class Child(Base):
    y: int = 0


async def on_base(event: Base) -> None: ...


async def on_plain(event: Plain) -> None: ...


def test_undescribable_and_unnamed_types_are_flagged_not_skipped(
    validator: jsonschema.Draft7Validator,
) -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    async def on_local(event: Local) -> None: ...

    bus = Dispatcher()
    bus.subscribe(Plain, on_plain)
    bus.subscribe(Local, on_local)
    bus.register(DataclassEvent)
    doc = asyncapi(bus)
    assert validator.is_valid(doc)
    messages = doc["components"]["messages"]
    plain = messages["tests.wire.events.Plain"]
    assert plain["x-eventcore-name-defaulted"] is True
    assert "x-eventcore-problem" in plain
    (local,) = [m for name, m in messages.items() if "Local" in name]
    assert "explicit name" in local["x-eventcore-problem"]
    assert "x-eventcore-problem" not in messages["test.dataclass"]
    assert json_schema(bus)["events"]["tests.wire.events.Plain"]["schema"] is None
    assert "## Problems" in markdown(bus)


def test_a_handler_of_a_base_class_receives_from_each_subclass_channel() -> None:
    bus = Dispatcher()
    bus.register(Base, name="shapes.base")
    bus.register(Child, name="shapes.child")
    bus.subscribe(Base, on_base)
    bus.configure(Child, overflow=Overflow.DROP_OLDEST)
    ops = asyncapi(bus)["operations"]
    assert sorted(op["channel"]["$ref"] for op in ops.values()) == [
        "#/channels/shapes.base",
        "#/channels/shapes.child",
    ]
    assert [e.entry.name for e in entries(bus)] == ["shapes.base", "shapes.child"]


def test_nothing_is_registered_by_making_a_catalog() -> None:
    bus = Dispatcher()
    bus.subscribe(Base, on_base)
    asyncapi(bus)
    assert len(bus.names) == 0


def test_the_markdown_catalog_lists_types_and_handlers() -> None:
    text = markdown(app.make_bus())
    assert "| `orders.placed` | 2 | `tests.wire.app.OrderPlaced` | 500 | 8 | block" in text
    assert "`tests.wire.app.charge`" in text


def test_render_refuses_unknown_formats() -> None:
    bad: Any = "yaml"
    with pytest.raises(ValueError, match="format"):
        render(Dispatcher(), bad)
