"""Helpers for testing code that publishes and handles events.

Capture what a dispatcher publishes and handles, wait until it has settled, and
assert on it. Works under pytest-asyncio, anyio's pytest plugin (asyncio, uvloop,
trio) and plain ``anyio.run``; nothing here needs a web framework.

::

    import httpx
    import pytest
    from eventcore.testing import capture

    from myservice import OrderPlaced, app, bus

    @pytest.mark.asyncio
    async def test_place_order() -> None:
        async with app.router.lifespan_context(app):  # starts and drains the bus
            with capture(bus) as events:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    response = await client.post("/orders", json={"total": 10.0})
                assert response.status_code == 202
                await events.settle()  # every accepted event (and follow-ons) handled
                [placed] = events.assert_handled(OrderPlaced, count=1)
                assert placed.total == 10.0
                events.assert_no_failures()

The recorder installs one publish and one handle middleware on the dispatcher
(once per dispatcher, shared by every open recorder, removed again when the last
one closes: leaving ``with capture(bus)`` puts the dispatcher back on its fast
path); attach it before the events of interest are published. ``published``
holds every event that reached ``publish`` (refused ones too); a handled event is
one with at least one finished handler call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import anyio

from ._dispatcher import Dispatcher, Installed
from ._middleware import CallNext, HandlerCall

__all__ = ["EventRecorder", "HandledCall", "capture"]

E = TypeVar("E")


@dataclass(frozen=True)
class HandledCall:
    """One finished handler call that a recorder saw.

    :ivar event: the event
    :ivar event_id: the id eventcore gave the event
    :ivar handler: the handler that was called
    :ivar attempt: 1, or more for retries
    :ivar value: what the handler returned
    :ivar exception: what it raised, or None
    """

    event: Any
    event_id: int
    handler: Callable[..., Any]
    attempt: int
    value: Any = None
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the handler returned without raising."""
        return self.exception is None


class _Tap:
    """The middleware pair installed once per dispatcher while recorders are attached;
    feeds them, and takes itself off the dispatcher when the last one closes."""

    def __init__(self, bus: Dispatcher) -> None:
        self.bus = bus
        self.recorders: list[EventRecorder] = []
        self.installed: Installed | None = None

    def attach(self, recorder: EventRecorder) -> None:
        if self.installed is None:
            self.installed = self.bus.use(publish=[self.on_publish], handle=[self.on_handle])
        self.recorders.append(recorder)

    def detach(self, recorder: EventRecorder) -> None:
        if recorder in self.recorders:
            self.recorders.remove(recorder)
        if not self.recorders and self.installed is not None:
            # Off the dispatcher again: without middleware it takes its fast path.
            installed, self.installed = self.installed, None
            installed.remove()
            if _taps.get(self.bus) is self:
                del _taps[self.bus]

    def on_publish(self, event: Any) -> Any:
        for recorder in self.recorders:
            recorder.published.append(event)
        return event

    async def on_handle(self, event: Any, call: HandlerCall, call_next: CallNext) -> Any:
        try:
            value = await call_next(event)
        except Exception as exc:
            self._record(
                HandledCall(event, call.event_id, _handler(call), call.attempt, None, exc)
            )
            raise
        self._record(HandledCall(event, call.event_id, _handler(call), call.attempt, value))
        return value

    def _record(self, handled: HandledCall) -> None:
        for recorder in self.recorders:
            recorder._add(handled)


def _handler(call: HandlerCall) -> Callable[..., Any]:
    handler: Callable[..., Any] = call.subscription.handler
    return handler


_taps: weakref.WeakKeyDictionary[Dispatcher, _Tap] = weakref.WeakKeyDictionary()


def _tap(bus: Dispatcher) -> _Tap:
    tap = _taps.get(bus)
    if tap is None:
        tap = _taps[bus] = _Tap(bus)
    return tap


class EventRecorder:
    """Records the events a dispatcher publishes and the handler calls it makes.

    Use it as a context manager (``with EventRecorder(bus) as events:``) or call
    :meth:`close` to stop recording.

    :param bus: the dispatcher to watch (it may or may not be running yet)
    """

    def __init__(self, bus: Dispatcher) -> None:
        self.bus = bus
        #: every event that reached ``publish``, in order (refused ones too)
        self.published: list[Any] = []
        #: every finished handler call, in the order they finished
        self.calls: list[HandledCall] = []
        self._waiters: list[tuple[Callable[[], bool], anyio.Event]] = []
        self._tap = _tap(bus)
        self._tap.attach(self)

    def close(self) -> None:
        """Stop recording (what was recorded stays); the last recorder of a dispatcher
        to close takes the recording middleware off it. Idempotent."""
        self._tap.detach(self)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self.published.clear()
        self.calls.clear()

    def __enter__(self) -> EventRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add(self, handled: HandledCall) -> None:
        self.calls.append(handled)
        if self._waiters:
            ready = [w for w in self._waiters if w[0]()]
            for waiter in ready:
                self._waiters.remove(waiter)
                waiter[1].set()

    # -- queries ---------------------------------------------------------------------

    def published_of(self, event_type: type[E]) -> list[E]:
        """The published events that are instances of *event_type*, in order."""
        return [e for e in self.published if isinstance(e, event_type)]

    def handled(self, event_type: type[E]) -> list[E]:
        """The events of *event_type* with at least one finished handler call, each once,
        in the order their first call finished."""
        seen: set[int] = set()
        events: list[E] = []
        for call in self.calls:
            if call.event_id not in seen and isinstance(call.event, event_type):
                seen.add(call.event_id)
                events.append(call.event)
        return events

    def failures(self) -> list[HandledCall]:
        """The handler calls that raised."""
        return [call for call in self.calls if call.exception is not None]

    # -- waiting ---------------------------------------------------------------------

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until the dispatcher has nothing queued or in flight (``bus.drain()``),
        follow-on events included.

        :raises AssertionError: still busy after *timeout* seconds (stats in the message)
        """
        with anyio.move_on_after(timeout) as scope:
            await self.bus.drain()
        if scope.cancelled_caught:
            raise AssertionError(
                f"the dispatcher did not settle within {timeout} s: {self._busy_types()}"
            )

    async def wait_handled(
        self,
        event_type: type[E],
        count: int = 1,
        *,
        where: Callable[[E], bool] | None = None,
        timeout: float = 5.0,
    ) -> list[E]:
        """Wait until at least *count* events of *event_type* (matching *where*) were handled.

        Use it when the dispatcher never settles (a handler that loops) or other
        traffic keeps it busy; otherwise :meth:`settle` is simpler.

        :raises AssertionError: fewer arrived within *timeout* seconds
        :return: the matching handled events
        """

        def matching() -> list[E]:
            return [e for e in self.handled(event_type) if where is None or where(e)]

        if len(matching()) < count:
            ready = anyio.Event()
            waiter = (lambda: len(matching()) >= count, ready)
            self._waiters.append(waiter)
            with anyio.move_on_after(timeout):
                await ready.wait()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        found = matching()
        if len(found) < count:
            raise AssertionError(
                f"expected {count} handled {event_type.__qualname__} event(s) within "
                f"{timeout} s, got {len(found)}"
            )
        return found

    # -- assertions ------------------------------------------------------------------

    def assert_published(
        self,
        event_type: type[E],
        *,
        count: int | None = None,
        where: Callable[[E], bool] | None = None,
    ) -> list[E]:
        """Assert that events of *event_type* (matching *where*) were published: at least
        one, or exactly *count*. Returns them."""
        found = [e for e in self.published_of(event_type) if where is None or where(e)]
        _check("published", event_type, found, count, self.published)
        return found

    def assert_handled(
        self,
        event_type: type[E],
        *,
        count: int | None = None,
        where: Callable[[E], bool] | None = None,
    ) -> list[E]:
        """Assert that events of *event_type* (matching *where*) were handled: at least
        one, or exactly *count*. Returns them."""
        found = [e for e in self.handled(event_type) if where is None or where(e)]
        _check("handled", event_type, found, count, [c.event for c in self.calls])
        return found

    def assert_not_published(self, event_type: type) -> None:
        """Assert that no event of *event_type* was published."""
        found: list[Any] = self.published_of(event_type)
        if found:
            raise AssertionError(
                f"expected no published {event_type.__qualname__}, got {len(found)}: "
                f"{_preview(found)}"
            )

    def assert_no_failures(self) -> None:
        """Assert that no handler call raised."""
        failures = self.failures()
        if failures:
            lines = [
                f"{getattr(f.handler, '__qualname__', f.handler)} on "
                f"{type(f.event).__qualname__} #{f.event_id}: {f.exception!r}"
                for f in failures[:5]
            ]
            raise AssertionError(f"{len(failures)} handler call(s) raised:\n" + "\n".join(lines))

    def _busy_types(self) -> str:
        busy = [
            f"{t.__qualname__}(queued={s.queued}, in_flight={s.in_flight})"
            for t, s in self.bus.stats().items()
            if s.queued or s.in_flight
        ]
        return ", ".join(busy) or "nothing queued (a handler may be waiting on something)"


def _preview(events: list[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(e) for e in events[:limit])
    return shown + (f", ... ({len(events) - limit} more)" if len(events) > limit else "")


def _check(
    what: str, event_type: type, found: list[Any], count: int | None, everything: list[Any]
) -> None:
    if (count is None and found) or len(found) == count:
        return
    expected = "at least one" if count is None else str(count)
    raise AssertionError(
        f"expected {expected} {what} {event_type.__qualname__} event(s), got {len(found)}"
        f"{': ' + _preview(found) if found else ''}; all {what}: {_preview(everything)}"
    )


@contextmanager
def capture(bus: Dispatcher) -> Iterator[EventRecorder]:
    """Record *bus*'s events inside the ``with`` block: ``with capture(bus) as events:``."""
    recorder = EventRecorder(bus)
    try:
        yield recorder
    finally:
        recorder.close()
