"""eventcore.testing under anyio's pytest plugin (asyncio, uvloop, trio) and pytest-asyncio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import anyio
import pytest

from eventcore import Dispatcher, Installed, Overflow
from eventcore.testing import EventRecorder, capture


@dataclass(frozen=True)
class Signup:
    user: str


@dataclass(frozen=True)
class Welcome:
    user: str


def make_bus() -> Dispatcher:
    bus = Dispatcher(queue_size=4, overflow=Overflow.DROP_NEWEST)

    @bus.on(Signup)
    async def greet(event: Signup) -> None:
        if event.user == "mallory":
            raise ValueError("no")
        await bus.publish(Welcome(event.user))

    @bus.on(Welcome)
    async def send(event: Welcome) -> str:
        return f"sent to {event.user}"

    return bus


async def scenario() -> None:
    bus = make_bus()
    bus.configure(Signup, overflow=Overflow.BLOCK)
    async with bus:
        with capture(bus) as events:
            await bus.publish(Signup("ada"))
            await bus.publish(Signup("mallory"))
            await events.settle()
            events.assert_published(Signup, count=2)
            events.assert_handled(Welcome, count=1, where=lambda e: e.user == "ada")
            events.assert_not_published(int)
            assert [c.value for c in events.calls if isinstance(c.event, Welcome)] == [
                "sent to ada"
            ]
            [failure] = events.failures()
            assert isinstance(failure.exception, ValueError)
            assert failure.event == Signup("mallory")
            with pytest.raises(AssertionError, match="1 handler call"):
                events.assert_no_failures()
            with pytest.raises(AssertionError, match="expected 3 handled Signup"):
                events.assert_handled(Signup, count=3)
            events.clear()
            await bus.publish(Signup("grace"))
            [welcome] = await events.wait_handled(Welcome)
            assert welcome == Welcome("grace")
        await bus.publish(Signup("late"))  # the recorder is closed: not recorded
        await bus.drain()
        assert events.published_of(Signup) == [Signup("grace")]


@pytest.mark.anyio
async def test_recorder_under_anyio_plugin() -> None:
    await scenario()


@pytest.mark.asyncio
async def test_recorder_under_pytest_asyncio() -> None:
    await scenario()


@pytest.mark.anyio
async def test_settle_and_wait_fail_with_a_clear_message() -> None:
    bus = Dispatcher()
    gate = anyio.Event()

    @bus.on(Signup)
    async def stuck(event: Signup) -> None:
        await gate.wait()

    async with bus:
        recorder = EventRecorder(bus)
        await bus.publish(Signup("x"))
        with pytest.raises(AssertionError, match=r"Signup\(queued=0, in_flight=1\)"):
            await recorder.settle(timeout=0.05)
        with pytest.raises(AssertionError, match="expected 1 handled Signup"):
            await recorder.wait_handled(Signup, timeout=0.05)
        gate.set()
        assert await recorder.wait_handled(Signup) == [Signup("x")]
        recorder.close()
        recorder.close()  # idempotent


@pytest.mark.anyio
async def test_several_recorders_share_one_tap() -> None:
    bus = make_bus()
    async with bus:
        with capture(bus) as a, capture(bus) as b:
            await bus.publish(Signup("ada"))
            await a.settle()
        with capture(bus) as c:
            await bus.publish(Signup("bob"))
            await c.settle()
    assert a.published == b.published == [Signup("ada"), Welcome("ada")]
    assert c.published == [Signup("bob"), Welcome("bob")]
    assert len(a.calls) == 2  # greet, send


class UseSpy:
    """Wraps ``bus.use`` to see which middleware handles are installed and removed."""

    def __init__(self, bus: Dispatcher, monkeypatch: pytest.MonkeyPatch) -> None:
        self.installed: list[Installed] = []
        self.removed: list[Installed] = []
        real_use = bus.use
        spy = self

        class Handle:  # stands in for the Installed handle (it has __slots__)
            def __init__(self, real: Installed) -> None:
                self.real = real

            def remove(self) -> None:
                spy.removed.append(self.real)
                self.real.remove()

        def use(**kwargs: Any) -> Installed:
            handle = real_use(**kwargs)
            self.installed.append(handle)
            return cast(Installed, Handle(handle))

        monkeypatch.setattr(bus, "use", use)

    @property
    def active(self) -> int:
        return len(self.installed) - len(set(map(id, self.removed)))


@pytest.mark.anyio
async def test_capture_removes_its_middleware_on_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = make_bus()
    spy = UseSpy(bus, monkeypatch)
    async with bus:
        with capture(bus) as outer:
            assert spy.active == 1
            with capture(bus) as inner:  # nested: shares the installed tap
                assert spy.active == 1
                await bus.publish(Signup("ada"))
                await inner.settle()
            assert spy.active == 1  # the outer capture still records
            await bus.publish(Signup("bob"))
            await outer.settle()
        assert spy.active == 0  # off the dispatcher: its fast path is back
        await bus.publish(Signup("eve"))  # not recorded by anyone
        await bus.drain()
        with capture(bus) as again:  # a sequential capture installs it again
            assert spy.active == 1
            await bus.publish(Signup("grace"))
            await again.settle()
        assert spy.active == 0
    assert len(spy.installed) == 2
    assert inner.published == [Signup("ada"), Welcome("ada")]
    assert outer.published_of(Signup) == [Signup("ada"), Signup("bob")]
    assert again.published == [Signup("grace"), Welcome("grace")]
    assert again.handled(Welcome) == [Welcome("grace")]


@pytest.mark.anyio
async def test_recorder_close_removes_the_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = make_bus()
    spy = UseSpy(bus, monkeypatch)
    recorder = EventRecorder(bus)
    assert spy.active == 1
    recorder.close()
    recorder.close()  # idempotent: removes nothing twice
    assert spy.active == 0
    assert len(spy.removed) == 1
    async with bus:
        await bus.publish(Signup("ada"))
    assert recorder.published == []
