"""The codec: envelopes of every supported kind, typed errors, size limits, evolution."""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from typing import Any

import msgspec
import pytest

from eventcore import Dispatcher
from eventcore.wire import (
    Codec,
    DecodeError,
    EncodeError,
    Envelope,
    EventNames,
    MessageTooLarge,
    UnknownEventType,
    UnsupportedVersion,
    WireError,
    WireReason,
    event_id_time,
)

from .events import (
    ALL,
    AttrsEvent,
    DataclassEvent,
    Plain,
    PydanticEvent,
    Size,
    StructEvent,
    TypedDictEvent,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FORMATS = ["json", "msgpack"]

SAMPLES: list[tuple[type, Any]] = [
    (DataclassEvent, DataclassEvent("A1", 10.5, 2, ["x"], "n", Size.LARGE)),
    (
        AttrsEvent,
        AttrsEvent("A2", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)),
    ),
    (StructEvent, StructEvent("A3", uuid.UUID(int=7), {"sku": 2})),
    (TypedDictEvent, {"order_id": "A4", "total": 1.25}),
    (PydanticEvent, PydanticEvent(order_id="A5", total=3.0, lines=[1, 2])),
]


def codec_for(*types: type, format: Any = "json", max_size: int = 1 << 20) -> Codec:
    names = EventNames()
    for t in types or ALL:
        names.register(t)
    return Codec(names, format=format, max_size=max_size)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(("event_type", "event"), SAMPLES, ids=[t.__name__ for t, _ in SAMPLES])
def test_every_kind_round_trips_with_its_headers(
    event_type: type, event: Any, format: Any
) -> None:
    codec = codec_for(format=format)
    data = codec.encode(
        event, event_type=event_type, key="k1", traceparent=TRACEPARENT, principal="alice"
    )
    envelope = codec.decode(data)
    assert isinstance(envelope, Envelope)
    assert envelope.event == event
    assert type(envelope.event) is type(event)
    assert envelope.name == codec.names.describe(event_type).name
    assert envelope.version == 1
    assert (envelope.key, envelope.traceparent, envelope.principal) == ("k1", TRACEPARENT, "alice")
    assert envelope.time.tzinfo is not None
    assert abs(envelope.time.timestamp() - event_id_time(envelope.id)) < 0.01


def test_the_json_envelope_is_readable_and_leaves_out_empty_headers() -> None:
    codec = codec_for(DataclassEvent)
    message = json.loads(codec.encode(DataclassEvent("A1", 1.0)))
    assert set(message) == {"type", "id", "version", "time", "data"}
    assert message["type"] == "test.dataclass"
    assert message["data"]["order_id"] == "A1"
    assert uuid.UUID(message["id"]).version == 7
    assert codec.content_type == "application/json"
    assert codec_for(format="msgpack").content_type == "application/msgpack"


def test_an_event_can_be_re_sent_under_its_own_id_and_time() -> None:
    codec = codec_for(DataclassEvent)
    first = codec.decode(codec.encode(DataclassEvent("A1", 1.0)))
    again = codec.decode(codec.encode(first.event, id=first.id, time=first.time))
    assert (again.id, again.time) == (first.id, first.time)


async def _key(event: DataclassEvent) -> None: ...


def test_for_dispatcher_writes_the_types_key_and_uses_its_names() -> None:
    bus = Dispatcher()
    bus.register(DataclassEvent)
    bus.configure(DataclassEvent, key=lambda e: e.order_id)
    codec = Codec.for_dispatcher(bus)
    assert codec.names is bus.names
    assert codec.decode(codec.encode(DataclassEvent("A9", 1.0))).key == "A9"
    assert codec.decode(codec.encode(DataclassEvent("A9", 1.0), key=None)).key is None


def test_an_unregistered_type_is_registered_on_first_encode() -> None:
    codec = Codec()
    envelope = codec.decode(codec.encode(DataclassEvent("A1", 1.0)))
    assert envelope.name == "test.dataclass"


@pytest.mark.parametrize("format", FORMATS)
def test_a_principal_that_is_not_json_is_refused_clearly(format: Any) -> None:
    codec = codec_for(DataclassEvent, format=format)
    with pytest.raises(EncodeError, match="principal") as caught:
        codec.encode(DataclassEvent("A1", 1.0), principal=object())
    assert caught.value.reason is WireReason.UNENCODABLE
    assert caught.value.name == "test.dataclass"
    with pytest.raises(EncodeError, match="key"):
        codec.encode(DataclassEvent("A1", 1.0), key=object())
    assert codec.decode(codec.encode(DataclassEvent("A1", 1.0), principal=["u", 1])).principal


@pytest.mark.parametrize("traceparent", ["", "00-xyz", TRACEPARENT.upper(), 42])
def test_a_malformed_traceparent_is_refused(traceparent: Any) -> None:
    with pytest.raises(EncodeError, match="traceparent"):
        codec_for(DataclassEvent).encode(DataclassEvent("A1", 1.0), traceparent=traceparent)


def test_unsupported_classes_are_refused_never_pickled() -> None:
    codec = codec_for(DataclassEvent)
    with pytest.raises(EncodeError, match="never pickles"):
        codec.encode(Plain(1))
    with pytest.raises(EncodeError, match="is not a"):
        codec.encode(Plain(1), event_type=DataclassEvent)


def test_an_unencodable_field_value_is_an_encode_error() -> None:
    codec = codec_for(DataclassEvent)
    with pytest.raises(EncodeError, match=r"test\.dataclass"):
        codec.encode(DataclassEvent("A1", 1.0, tags=[object()]))  # type: ignore[list-item]


@pytest.mark.parametrize("format", FORMATS)
def test_the_size_limit_is_checked_before_sending_and_before_decoding(format: Any) -> None:
    small = codec_for(DataclassEvent, format=format, max_size=200)
    big = DataclassEvent("A1", 1.0, tags=["x" * 300])
    with pytest.raises(MessageTooLarge) as caught:
        small.encode(big)
    assert caught.value.reason is WireReason.TOO_LARGE
    assert caught.value.limit == 200
    assert caught.value.size > 200
    assert caught.value.event_id is not None
    data = codec_for(DataclassEvent, format=format).encode(big)
    with pytest.raises(MessageTooLarge):
        small.decode(data)
    with pytest.raises(MessageTooLarge):  # refused by size alone: not even parsed
        small.decode(b"\xff" * 201)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_limits_and_formats_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_size"):
        Codec(max_size=bad)
    with pytest.raises(ValueError, match="format"):
        Codec(format="pickle")  # type: ignore[arg-type]


def test_an_unknown_type_name_is_a_typed_error_with_the_event_id() -> None:
    data = codec_for(DataclassEvent, StructEvent).encode(StructEvent("A", uuid.UUID(int=1)))
    with pytest.raises(UnknownEventType) as caught:
        codec_for(DataclassEvent).decode(data)
    assert caught.value.reason is WireReason.UNKNOWN_TYPE
    assert caught.value.name == "test.struct"
    assert caught.value.event_id == json.loads(data)["id"]
    with pytest.raises(UnknownEventType):
        Codec().decode(data)  # nothing registered at all
    assert isinstance(caught.value, DecodeError)


@dataclasses.dataclass
class V1:
    order_id: str


@dataclasses.dataclass
class V2:
    order_id: str
    currency: str = "EUR"
    note: str | None = None


@dataclasses.dataclass
class V3:
    order_id: str
    amount: int


def _codec(event_type: type, version: int = 1, min_version: int = 1) -> Codec:
    names = EventNames()
    names.register(event_type, name="orders.placed", version=version, min_version=min_version)
    return Codec(names)


def test_a_newer_or_too_old_version_is_a_typed_error() -> None:
    data = _codec(V2, version=2).encode(V2("A1"))
    with pytest.raises(UnsupportedVersion) as caught:
        _codec(V1, version=1).decode(data)
    assert caught.value.reason is WireReason.UNSUPPORTED_VERSION
    assert (caught.value.version, caught.value.supported) == (2, (1, 1))
    old = _codec(V1).encode(V1("A1"))
    with pytest.raises(UnsupportedVersion):
        _codec(V2, version=3, min_version=2).decode(old)


def test_evolution_unknown_fields_are_ignored_missing_optional_ones_take_defaults() -> None:
    new = _codec(V2, version=2).encode(V2("A1", "USD", "gift"))
    assert _codec(V1, version=2).decode(new).event == V1("A1")
    old = _codec(V1).encode(V1("A1"))
    assert _codec(V2, version=2).decode(old).event == V2("A1")


def test_evolution_a_missing_required_field_is_a_decode_error() -> None:
    old = _codec(V1).encode(V1("A1"))
    with pytest.raises(DecodeError, match="amount") as caught:
        _codec(V3, version=2).decode(old)
    assert caught.value.name == "orders.placed"
    assert caught.value.event_id == json.loads(old)["id"]
    assert type(caught.value) is DecodeError


def test_pydantic_payload_errors_are_decode_errors() -> None:
    codec = codec_for(PydanticEvent)
    message = json.loads(codec.encode(PydanticEvent(order_id="A", total=1.0)))
    message["data"]["total"] = "not a number"
    with pytest.raises(DecodeError, match=r"test\.pydantic"):
        codec.decode(json.dumps(message).encode())
    del message["data"]["order_id"]
    with pytest.raises(DecodeError):
        codec.decode(json.dumps(message).encode())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b"{}",
        b'{"type": 5}',
        b'{"type": "test.dataclass"}',
        b'{"type": "test.dataclass", "id": "x", "version": "1", "time": "now", "data": {}}',
        (
            b'{"type": "test.dataclass", "id": "x", "version": 1, "time": "2026-01-01T00:00:00Z",'
            b' "data": {"order_id": 5, "total": 1}}'
        ),
        b"[" * 10_000,
        b"\x00\xff\xfe",
    ],
)
def test_malformed_messages_are_decode_errors(data: bytes) -> None:
    for format in FORMATS:
        with pytest.raises(DecodeError) as caught:
            codec_for(format=format).decode(data)
        assert isinstance(caught.value, WireError)


def test_a_registered_type_that_msgspec_cannot_decode_is_reported_not_crashed() -> None:
    names = EventNames()
    names.register(Plain, name="test.plain")
    names.register(DataclassEvent)
    codec = Codec(names)
    ok = codec.encode(DataclassEvent("A", 1.0))
    assert codec.decode(ok).event == DataclassEvent("A", 1.0)
    message = json.loads(ok)
    message.update(type="test.plain", data={"x": 1})
    with pytest.raises(DecodeError, match="cannot be decoded"):
        codec.decode(json.dumps(message).encode())


def test_decoding_msgpack_with_a_json_codec_is_a_decode_error() -> None:
    data = codec_for(format="msgpack").encode(DataclassEvent("A", 1.0))
    with pytest.raises(DecodeError):
        codec_for().decode(data)
    assert msgspec.msgpack.decode(data)["type"] == "test.dataclass"
