"""Promise 9: bad input gets a clear, typed error, and the dispatcher keeps working.

The broker parts of promise 9 (an unknown type on a broker, an oversized or
unserializable payload, a malformed message from the wire) need the broker
transports, which do not exist yet: see docs/CONTRACT.md.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore import (
    Dispatcher,
    EventcoreError,
    InvalidConfiguration,
    InvalidEvent,
    InvalidHandler,
    Overflow,
    TypeConfig,
)

from .contract_support import BACKENDS, Event, make_hierarchy, run_on

pytestmark = pytest.mark.contract

EVENT_CLASSES = make_hierarchy([None, 0])


class SyncCallable:
    def __call__(self, event: Event) -> None:
        pass


class AsyncCallable:
    async def __call__(self, event: Event) -> None:
        pass


def sync_handler(event: Event) -> None:
    pass


def sync_generator(event: Event) -> Any:
    yield event


#: Anything that is not an instance of a user-defined class.
non_events = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.complex_numbers(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.integers()),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.frozensets(st.integers(), max_size=2),
    st.builds(object),
    st.just(sync_handler),  # a function is an instance of the builtin `function`
    st.sampled_from([int, str, object, type, Event, *EVENT_CLASSES]),  # classes, not events
)


async def async_generator(event: Event) -> Any:
    yield event


#: Not handlers: a plain ``def`` is one (it runs in a worker thread), these are not.
non_handlers = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=3),
    st.sampled_from([sync_generator, async_generator, AsyncCallable, SyncCallable]),
)

bad_sizes = st.one_of(
    st.integers(max_value=0),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=2),
)
bad_timeouts = st.one_of(
    st.floats(max_value=-1e-9),
    st.just(math.nan),
    st.integers(max_value=-1),
    st.booleans(),
    st.text(max_size=2),
)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(values=st.lists(non_events, min_size=1, max_size=4))
def test_publishing_a_non_event_raises_invalid_event(
    backend: str, options: dict[str, Any], values: list[Any]
) -> None:
    """publish, publish_nowait and publish_and_wait refuse non-events with InvalidEvent
    (a TypeError); nothing is counted, no group is made, and the dispatcher keeps working."""
    seen: list[int] = []
    errors: list[BaseException] = []

    async def main() -> None:
        bus = Dispatcher(on_error=lambda event, handler, exc: errors.append(exc))

        async def handler(event: Event) -> None:
            seen.append(event.uid)

        bus.subscribe(Event, handler)
        async with bus:
            for value in values:
                with pytest.raises(InvalidEvent, match="publish\\(\\) takes an event") as info:
                    await bus.publish(value)
                assert isinstance(info.value, TypeError)
                assert isinstance(info.value, EventcoreError)
                with pytest.raises(InvalidEvent):
                    bus.publish_nowait(value)
                with pytest.raises(InvalidEvent):
                    await bus.publish_and_wait(value)
            assert await bus.publish(EVENT_CLASSES[1](7, "p", 0))
            outcome = await bus.publish_and_wait(EVENT_CLASSES[0](8, "p", 1))
            await bus.drain()
        assert outcome.ok
        assert set(bus.stats()) == set(EVENT_CLASSES)
        assert all(s.published == s.accepted == s.handled == 1 for s in bus.stats().values())

    run_on(backend, options, main)
    assert (seen, errors) == ([7, 8], [])


@given(handler=non_handlers, via_decorator=st.booleans())
def test_what_is_not_a_handler_raises_invalid_handler(handler: Any, via_decorator: bool) -> None:
    bus = Dispatcher()
    register = bus.on(Event) if via_decorator else lambda h: bus.subscribe(Event, h)
    with pytest.raises(InvalidHandler, match="handler") as info:
        register(handler)
    assert isinstance(info.value, TypeError)
    assert len(bus._registry) == 0  # nothing was registered
    assert bus.subscribe(Event, AsyncCallable()).active


@given(
    field=st.sampled_from(["queue_size", "concurrency", "overflow"]),
    value=bad_sizes | st.sampled_from(["block", 1, Overflow]),
)
def test_bad_settings_raise_invalid_configuration_and_change_nothing(
    field: str, value: Any
) -> None:
    if field == "overflow" and isinstance(value, Overflow):
        value = value.value  # the member's value, not the member
    if field != "overflow" and value == 1 and not isinstance(value, bool):
        value = 0
    bus = Dispatcher(queue_size=3, concurrency=2, overflow=Overflow.DROP_OLDEST)
    bus.configure(EVENT_CLASSES[0], queue_size=5)
    before = bus.config(EVENT_CLASSES[1])
    with pytest.raises(InvalidConfiguration) as info:
        bus.configure(EVENT_CLASSES[1], **{field: value})
    assert isinstance(info.value, ValueError)
    assert bus.config(EVENT_CLASSES[1]) == before == TypeConfig(5, 2, Overflow.DROP_OLDEST)
    with pytest.raises(InvalidConfiguration):
        Dispatcher(**{field: value})
    with pytest.raises(InvalidConfiguration):
        TypeConfig(**{field: value})


@given(timeout=bad_timeouts)
def test_a_bad_shutdown_timeout_raises_invalid_configuration(timeout: Any) -> None:
    with pytest.raises(InvalidConfiguration, match="shutdown_timeout"):
        Dispatcher(shutdown_timeout=timeout)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(fails=st.lists(st.booleans(), min_size=1, max_size=6))
def test_a_raising_filter_is_a_handler_failure_not_a_crashed_worker(
    backend: str, options: dict[str, Any], fails: list[bool]
) -> None:
    """A filter that raises counts as that subscription's failure; the worker goes on."""
    seen: list[tuple[str, int]] = []
    errors: list[tuple[int, str]] = []

    def picky(event: Event) -> bool:
        if fails[event.uid]:
            raise ValueError(f"filter fails on {event.uid}")
        return True

    async def main() -> None:
        bus = Dispatcher(on_error=lambda event, handler, exc: errors.append((event.uid, str(exc))))

        async def filtered(event: Event) -> None:
            seen.append(("filtered", event.uid))

        async def plain(event: Event) -> None:
            seen.append(("plain", event.uid))

        bus.subscribe(Event, filtered, filter=picky)
        bus.subscribe(Event, plain)
        async with bus:
            for uid in range(len(fails)):
                await bus.publish(EVENT_CLASSES[0](uid, "p", uid))
            await bus.drain()
            stats = bus.stats(EVENT_CLASSES[0])
        assert (stats.handled, stats.failed) == (len(fails), sum(fails))

    run_on(backend, options, main)
    want: list[tuple[str, int]] = []
    for uid, fail in enumerate(fails):
        want += [("plain", uid)] if fail else [("filtered", uid), ("plain", uid)]
    assert seen == want
    assert errors == [(uid, f"filter fails on {uid}") for uid, fail in enumerate(fails) if fail]
