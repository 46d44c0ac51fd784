"""eventcore.wire exports exactly ``__all__``, each name documented; ids are UUIDv7."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator

import pytest

import eventcore.wire as wire
from eventcore import EventcoreError
from eventcore._wire import ids


def test_every_name_in_all_exists_and_is_documented() -> None:
    for name in wire.__all__:
        obj = getattr(wire, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert obj.__module__.startswith("eventcore._wire."), name
            assert obj.__doc__, f"{name} has no docstring"
    public = {
        n for n, v in vars(wire).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public - {"TYPE_CHECKING", "Any", "annotations"} <= set(wire.__all__)


def test_unknown_attributes_raise_attribute_error() -> None:
    with pytest.raises(AttributeError):
        wire.NoSuchThing  # noqa: B018


def test_every_wire_error_is_an_eventcore_error_with_its_own_reason() -> None:
    errors = [
        obj
        for obj in (getattr(wire, n) for n in wire.__all__)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning)
    ]
    assert len(errors) == 8
    errors.remove(wire.WireError)
    for error in errors:
        assert issubclass(error, wire.WireError), error
        assert issubclass(error, EventcoreError), error
    assert {getattr(e, "reason", None) for e in errors} == set(wire.WireReason)


@pytest.fixture
def fresh_ids() -> Iterator[None]:
    ids._reseed()
    yield
    ids._reseed()  # the clocks below are fake: later ids start afresh


@pytest.mark.usefixtures("fresh_ids")
def test_ids_encode_their_millisecond_and_the_time_it_returns() -> None:
    event_id, at = ids.new_event_id_and_time(lambda: 1_700_000_000_123_456_789)
    assert uuid.UUID(event_id).version == 7
    assert uuid.UUID(event_id).variant == uuid.RFC_4122
    assert wire.event_id_time(event_id) == 1_700_000_000.123
    assert at.timestamp() == 1_700_000_000.123


@pytest.mark.usefixtures("fresh_ids")
def test_ids_keep_increasing_when_the_clock_steps_back() -> None:
    first, _ = ids.new_event_id_and_time(lambda: 4_000_000_000_000_000_000)
    second, _ = ids.new_event_id_and_time(lambda: 3_000_000_000_000_000_000)
    assert second > first
    assert wire.event_id_time(second) == wire.event_id_time(first)
    ids._reseed()  # a fork's child starts afresh
    assert wire.new_event_id() != second
