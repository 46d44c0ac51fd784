"""Property tests: every supported kind round-trips; no input crashes the decoder."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore.wire import Codec, EventNames, MessageTooLarge, WireError

from .events import (
    ALL,
    AttrsEvent,
    DataclassEvent,
    PydanticEvent,
    Size,
    StructEvent,
    TypedDictEvent,
)

FORMATS = ["json", "msgpack"]

# JSON has no NaN or infinity (msgspec writes null), so the floats are finite.
floats = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(max_size=20)
aware = st.datetimes(timezones=st.just(datetime.timezone.utc))

EVENTS: dict[type, st.SearchStrategy[Any]] = {
    DataclassEvent: st.builds(
        DataclassEvent,
        order_id=text,
        total=floats,
        count=st.integers(-(2**63), 2**63 - 1),
        tags=st.lists(text, max_size=5),
        note=st.none() | text,
        size=st.sampled_from(Size),
    ),
    AttrsEvent: st.builds(AttrsEvent, order_id=text, at=aware, total=floats),
    StructEvent: st.builds(
        StructEvent,
        order_id=text,
        ref=st.uuids(),
        lines=st.dictionaries(text, st.integers(-(2**63), 2**63 - 1), max_size=5),
    ),
    TypedDictEvent: st.fixed_dictionaries({"order_id": text, "total": floats}),
    PydanticEvent: st.builds(
        PydanticEvent,
        order_id=text,
        total=floats,
        lines=st.lists(st.integers(-(2**53), 2**53), max_size=5),
        note=st.none() | text,
    ),
}


def _codecs() -> dict[str, Codec]:
    names = EventNames()
    for t in ALL:
        names.register(t)
    return {f: Codec(names, format=f) for f in FORMATS}  # type: ignore[arg-type]


CODECS = _codecs()
principals = st.none() | text | st.integers(-(2**63), 2**63 - 1) | st.lists(text, max_size=3)
keys = st.none() | text | st.integers(-(2**63), 2**63 - 1)


@pytest.mark.parametrize("format", FORMATS)
@given(
    data=st.data(),
    event_type=st.sampled_from(ALL),
    principal=principals,
    key=keys,
)
def test_every_supported_kind_round_trips(
    format: str, data: st.DataObject, event_type: type, principal: Any, key: Any
) -> None:
    codec = CODECS[format]
    event = data.draw(EVENTS[event_type])
    envelope = codec.decode(
        codec.encode(event, event_type=event_type, principal=principal, key=key)
    )
    assert envelope.event == event
    assert (envelope.principal, envelope.key) == (principal, key)


@pytest.mark.parametrize("format", FORMATS)
@given(
    event=st.builds(DataclassEvent, total=floats)  # the other fields inferred from their types
    | st.builds(StructEvent, lines=st.just({}))
    | st.builds(AttrsEvent, at=aware, total=floats)
    | st.builds(PydanticEvent, total=floats)
)
def test_inferred_instances_round_trip(format: str, event: Any) -> None:
    codec = CODECS[format]
    assert codec.decode(codec.encode(event)).event == event


@pytest.mark.parametrize("format", FORMATS)
@given(data=st.binary(max_size=512))
def test_random_bytes_never_crash_the_decoder(format: str, data: bytes) -> None:
    try:
        CODECS[format].decode(data)
    except WireError:
        pass


@pytest.mark.parametrize("format", FORMATS)
@given(
    seed=st.sampled_from(list(EVENTS)),
    data=st.data(),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1),
)
def test_corrupted_messages_never_crash_the_decoder(
    format: str, seed: type, data: st.DataObject, edits: list[tuple[int, int]]
) -> None:
    codec = CODECS[format]
    message = bytearray(codec.encode(data.draw(EVENTS[seed]), event_type=seed))
    for position, value in edits:
        message[position % len(message)] = value
    try:
        codec.decode(bytes(message))
    except WireError:
        pass


@given(size=st.integers(1, 64), data=st.binary(min_size=65, max_size=300))
def test_oversized_input_is_refused_whatever_it_holds(size: int, data: bytes) -> None:
    with pytest.raises(MessageTooLarge) as caught:
        Codec(EventNames(), max_size=size).decode(data)
    assert caught.value.size == len(data)
    assert caught.value.limit == size


def test_ids_are_unique_and_in_order() -> None:
    from eventcore.wire import new_event_id

    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:100])
