"""Event names: explicit or defaulted, validated for NATS subjects and Redis keys, unique."""

from __future__ import annotations

import dataclasses

import pytest

from eventcore import Dispatcher, EventcoreError
from eventcore.wire import (
    MAX_NAME_LENGTH,
    DuplicateEventName,
    EventNames,
    EventNameWarning,
    InvalidEventName,
    WireReason,
    check_name,
    event,
)

from .events import DataclassEvent


@dataclasses.dataclass
class Unnamed:
    x: int


@dataclasses.dataclass
class Other:
    x: int


@dataclasses.dataclass(frozen=True)
class SubEvent(DataclassEvent):
    pass


@pytest.mark.parametrize(
    "name",
    ["orders", "orders.placed", "orders.placed.v2", "a-b_c.D9", "x" * MAX_NAME_LENGTH],
)
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "orders..placed",
        ".orders",
        "orders.",
        "orders.*",
        "orders.>",
        "orders placed",
        "orders\tplaced",
        "orders.pl\u00e4ced",
        "$SYS.x",
        "orders:placed",
        "orders/placed",
        "x" * (MAX_NAME_LENGTH + 1),
    ],
)
def test_names_a_broker_cannot_carry_are_refused(name: str) -> None:
    with pytest.raises(InvalidEventName) as caught:
        check_name(name)
    assert isinstance(caught.value, EventcoreError)
    assert caught.value.reason is WireReason.INVALID_NAME


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(InvalidEventName):
        check_name(42)


def test_the_event_decorator_names_the_class_and_not_its_subclasses() -> None:
    names = EventNames()
    assert names.register(DataclassEvent).name == "test.dataclass"
    assert not names.register(DataclassEvent).defaulted
    with pytest.warns(EventNameWarning):
        entry = names.register(SubEvent)
    assert entry.name == f"{__name__}.SubEvent"
    assert entry.defaulted


def test_the_decorator_refuses_bad_names_and_versions() -> None:
    with pytest.raises(InvalidEventName):
        event("orders.*")
    with pytest.raises(InvalidEventName):
        event("orders", version=0)


def test_explicit_registration_and_lookup() -> None:
    bus = Dispatcher()
    entry = bus.register(Unnamed, name="orders.placed", version=3, min_version=2)
    assert (entry.name, entry.version, entry.min_version) == ("orders.placed", 3, 2)
    assert bus.names.get(Unnamed) is entry
    assert bus.names.lookup("orders.placed") is entry
    assert Unnamed in bus.names
    assert list(bus.names) == [entry]
    assert entry.accepts(2)
    assert entry.accepts(3)
    assert not entry.accepts(1)
    assert not entry.accepts(4)
    assert bus.register(Unnamed, name="orders.placed", version=3, min_version=2) == entry


def test_the_default_name_is_the_module_path_with_a_warning() -> None:
    names = EventNames()
    with pytest.warns(EventNameWarning, match="renaming or moving the class"):
        entry = names.register(Unnamed)
    assert entry.name == f"{__name__}.Unnamed"
    assert entry.defaulted


def test_a_local_class_needs_an_explicit_name() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    names = EventNames()
    with pytest.raises(InvalidEventName, match="<locals>"):
        names.register(Local)
    assert names.register(Local, name="local.thing").name == "local.thing"


def test_duplicate_names_are_an_error_at_registration() -> None:
    names = EventNames()
    names.register(Unnamed, name="orders.placed")
    with pytest.raises(DuplicateEventName, match="already taken") as caught:
        names.register(Other, name="orders.placed")
    assert caught.value.reason is WireReason.DUPLICATE_NAME
    with pytest.raises(DuplicateEventName, match="already registered"):
        names.register(Unnamed, name="orders.other")
    with pytest.raises(DuplicateEventName):
        names.register(Unnamed, name="orders.placed", version=2)
    assert names.lookup("orders.other") is None


@pytest.mark.parametrize(("version", "min_version"), [(0, 1), (1, 0), (1, 2), (True, 1)])
def test_bad_versions_are_refused(version: int, min_version: int) -> None:
    with pytest.raises(InvalidEventName):
        EventNames().register(Unnamed, name="x", version=version, min_version=min_version)


def test_describe_does_not_register() -> None:
    names = EventNames()
    assert names.describe(Unnamed).defaulted
    assert Unnamed not in names
    assert len(names) == 0
    assert names.revision == 0
