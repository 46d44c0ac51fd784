"""JSON Schema per event name: msgspec and pydantic, sorted, undescribable types flagged."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jsonschema

from eventcore.wire import Codec, EventNames, event_schemas

from .events import ALL, DataclassEvent, Plain, PydanticEvent


@dataclasses.dataclass
class HoldsAnything:
    thing: Plain


def test_every_supported_kind_has_a_schema_under_its_name() -> None:
    names = EventNames()
    for t in ALL:
        names.register(t)
    schemas = event_schemas(names)
    assert list(schemas.events) == sorted(e.name for e in names)
    assert list(schemas.components) == sorted(schemas.components)
    for name, item in schemas.events.items():
        assert item.problem is None, name
        assert item.schema is not None
        ref = item.schema["$ref"]
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in schemas.components
    assert schemas.events["test.pydantic"].python_type == "tests.wire.events.PydanticEvent"


def test_schemas_describe_what_the_codec_writes() -> None:
    names = EventNames()
    for t in (DataclassEvent, PydanticEvent):
        names.register(t)
    schemas = event_schemas(names)
    codec = Codec(names)
    samples = [DataclassEvent("A", 1.0, tags=["x"]), PydanticEvent(order_id="B", total=2.0)]
    for sample in samples:
        message = json.loads(codec.encode(sample))
        item = schemas.events[message["type"]]
        assert item.schema is not None
        root = {**item.schema, "$defs": schemas.components}
        jsonschema.Draft202012Validator(root).validate(message["data"])
        message["data"].pop("order_id")
        assert not jsonschema.Draft202012Validator(root).is_valid(message["data"])


def test_types_that_cannot_be_described_are_flagged_not_skipped() -> None:
    names = EventNames()
    names.register(Plain, name="test.plain")
    names.register(HoldsAnything, name="test.holds")
    names.register(DataclassEvent)
    schemas = event_schemas(names)
    assert list(schemas.events) == ["test.dataclass", "test.holds", "test.plain"]
    assert schemas.events["test.dataclass"].problem is None
    for name in ("test.holds", "test.plain"):
        assert schemas.events[name].schema is None
        assert schemas.events[name].problem


def test_output_does_not_depend_on_registration_order() -> None:
    def render(order: tuple[type, ...]) -> Any:
        names = EventNames()
        for t in order:
            names.register(t)
        s = event_schemas(names)
        return json.dumps(
            [{n: e.schema for n, e in s.events.items()}, s.components], sort_keys=False
        )

    assert render(ALL) == render(tuple(reversed(ALL)))
