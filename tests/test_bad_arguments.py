"""Bad arguments get a typed error at the call site, whatever the queue's state."""

from __future__ import annotations

import collections
import datetime
import decimal
import math
from typing import Any

import anyio
import pytest

from eventcore import Dispatcher, InvalidConfiguration, InvalidEvent

from .events import Base

pytestmark = pytest.mark.anyio


async def handler(event: Any) -> None:  # pragma: no cover - never called
    pass


@pytest.mark.parametrize("value", [3, "yes", True])
def test_a_filter_that_is_not_callable(value: Any) -> None:
    with pytest.raises(InvalidConfiguration, match="filter"):
        Dispatcher().subscribe(Base, handler, filter=value)


@pytest.mark.parametrize("value", [3, "n", ("n",)])
def test_a_key_that_is_not_callable(value: Any) -> None:
    with pytest.raises(InvalidConfiguration, match="key"):
        Dispatcher().configure(Base, key=value)


@pytest.mark.parametrize(
    "cls", [int, str, dict, list, datetime.datetime, collections.OrderedDict, decimal.Decimal]
)
def test_standard_library_classes_are_no_event_classes(cls: type) -> None:
    bus = Dispatcher()
    with pytest.raises(InvalidEvent, match="standard-library"):
        bus.subscribe(cls, handler)
    with pytest.raises(InvalidEvent, match="standard-library"):
        bus.configure(cls, queue_size=2)
    assert bus.subscriptions() == ()
    assert bus.configured_types() == ()


def test_object_subscribes_to_every_event() -> None:
    bus = Dispatcher()
    assert bus.subscribe(object, handler).active


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2026, 1, 1),
        collections.OrderedDict(a=1),
        decimal.Decimal(1),
        datetime.timedelta(1),
    ],
)
async def test_standard_library_instances_are_no_events(value: Any) -> None:
    bus = Dispatcher()
    bus.subscribe(object, handler)
    async with bus:
        with pytest.raises(InvalidEvent, match="standard-library"):
            await bus.publish(value)
        with pytest.raises(InvalidEvent):
            bus.publish_nowait(value)


@pytest.mark.parametrize("timeout", [-5, -0.001, math.nan, "1", True])
async def test_a_bad_publish_timeout_is_refused_even_with_room(timeout: Any) -> None:
    bus = Dispatcher()
    bus.subscribe(Base, handler)
    with anyio.fail_after(5):
        async with bus:
            with pytest.raises(InvalidConfiguration, match="timeout"):
                await bus.publish(Base(1), timeout=timeout)
            with pytest.raises(InvalidConfiguration, match="timeout"):
                await bus.publish_and_wait(Base(1), timeout=timeout)
            assert bus.stats(Base).accepted == 0
