"""Promise 14: pausing a type holds its workers and loses nothing.

A generated program of publishes (bursts published without yielding), pauses,
resumes, reconfigurations, handlers that pause their own type, and steps (every
task runs until blocked) is run against an exact model: while a type is paused
no handler of it starts, its queue fills and then its overflow policy decides,
and after the last resume every accepted event that was not evicted is handled,
in accepted order (concurrency 1). The type's invariants hold after every step.
Routed types fetch nothing while paused; shutdown drains paused types.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore import Dispatcher, DropReason, Overflow, PublishTimeout, QueueFull
from tests.fake_broker import FakeBroker, Job

from .contract_support import BACKENDS, Event, make_hierarchy, run_on

pytestmark = pytest.mark.contract

(Held,) = make_hierarchy([None])

#: pause-from-a-handler events carry this depth
PAUSER = 1

OPS = st.one_of(
    st.tuples(st.just("publish"), st.integers(1, 6), st.booleans()),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
    st.tuples(st.just("step")),
    st.tuples(st.just("resize"), st.integers(1, 6)),
)


def _problems(bus: Dispatcher) -> list[str]:
    return [problem for state in bus._live_states() for problem in state.check()]


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(
    overflow=st.sampled_from(Overflow),
    queue_size=st.integers(1, 5),
    paused_at_start=st.booleans(),
    program=st.lists(OPS, max_size=14),
)
def test_a_paused_type_starts_nothing_and_loses_nothing(
    backend: str,
    options: dict[str, Any],
    overflow: Overflow,
    queue_size: int,
    paused_at_start: bool,
    program: list[tuple[Any, ...]],
) -> None:
    handled: list[int] = []
    evicted: list[int] = []
    bus = Dispatcher(
        queue_size=queue_size,
        concurrency=1,
        overflow=overflow,
        on_drop=lambda event, reason: (
            evicted.append(event.uid) if reason is DropReason.EVICTED else None
        ),
    )
    if paused_at_start:
        bus.pause(Held)

    @bus.on(Held)
    async def handler(event: Event) -> None:
        if bus.running:  # (shutdown drains paused types)
            assert not bus.paused(Held), f"{event} started while its type was paused"
        handled.append(event.uid)
        if event.depth == PAUSER:
            bus.pause(Held)

    # the model: queued uids in accepted order, what was handled, whether paused
    model: deque[tuple[int, bool]] = deque()
    want_handled: list[int] = []
    paused = paused_at_start
    size = queue_size

    def run_model() -> None:
        nonlocal paused
        while model and not paused:
            uid, pauser = model.popleft()
            want_handled.append(uid)
            if pauser:
                paused = True

    async def main() -> None:
        nonlocal paused, size
        uid = 0
        async with bus:
            for op in program:
                if op[0] == "publish":
                    for _ in range(op[1]):
                        uid += 1
                        pauser = op[2] and uid % 2 == 0
                        event = Held(uid, "p", uid, PAUSER if pauser else 0)
                        full = len(model) >= size
                        try:
                            if overflow is Overflow.BLOCK:
                                accepted = bus.publish_nowait(event)
                            else:
                                accepted = await bus.publish(event)  # never yields here
                        except QueueFull:
                            assert full
                            assert overflow in (Overflow.BLOCK, Overflow.RAISE)
                            continue
                        if not accepted:
                            assert full
                            assert overflow is Overflow.DROP_NEWEST
                            continue
                        if full:
                            assert overflow is Overflow.DROP_OLDEST
                            assert evicted[-1] == model.popleft()[0]
                        model.append((uid, pauser))
                elif op[0] == "pause":
                    bus.pause(Held)
                    paused = True
                elif op[0] == "resume":
                    bus.resume(Held)
                    paused = False
                elif op[0] == "resize":
                    size = op[1]
                    bus.configure(Held, queue_size=size)
                await anyio.wait_all_tasks_blocked()
                run_model()
                assert handled == want_handled
                assert bus.stats(Held).queued == len(model) <= max(size, queue_size, 6)
                assert bus.paused(Held) == paused
                assert not _problems(bus)
            while True:  # each resume runs up to the next handler that pauses
                bus.resume(Held)
                paused = False
                await bus.drain()
                run_model()
                assert handled == want_handled
                if not model:
                    break
        assert handled == want_handled

    run_on(backend, options, main)
    stats = bus.stats(Held)
    assert stats.accepted == stats.handled + stats.evicted
    assert stats.abandoned == 0


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(concurrency=st.integers(1, 4), running=st.integers(0, 4), queued=st.integers(0, 6))
def test_pausing_lets_running_handlers_finish_and_starts_no_other(
    backend: str, options: dict[str, Any], concurrency: int, running: int, queued: int
) -> None:
    started: list[int] = []
    gate: anyio.Event | None = None  # made inside the event loop
    bus = Dispatcher(queue_size=16, concurrency=concurrency)

    @bus.on(Held)
    async def handler(event: Event) -> None:
        started.append(event.uid)
        assert gate is not None
        await gate.wait()

    async def main() -> None:
        nonlocal gate
        gate = anyio.Event()
        async with bus:
            first = min(running, concurrency)
            for uid in range(first):
                bus.publish_nowait(Held(uid, "p", uid))
            await anyio.wait_all_tasks_blocked()
            assert len(started) == first
            bus.pause(Held)
            for uid in range(first, first + queued):
                bus.publish_nowait(Held(uid, "p", uid))
            gate.set()  # the running handlers finish ...
            await anyio.wait_all_tasks_blocked()
            assert len(started) == first  # ... and none starts while paused
            stats = bus.stats(Held)
            assert (stats.in_flight, stats.queued, stats.paused) == (0, queued, True)
            await bus.drain()  # does not wait for a paused type
            bus.resume(Held)
            await bus.drain()
            assert sorted(started) == list(range(first + queued))

    run_on(backend, options, main)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(queued=st.integers(0, 8), timeout_first=st.booleans())
def test_a_paused_blocked_publisher_waits_and_shutdown_drains_paused_types(
    backend: str, options: dict[str, Any], queued: int, timeout_first: bool
) -> None:
    handled: list[int] = []
    bus = Dispatcher(queue_size=2, overflow=Overflow.BLOCK)
    bus.pause(Held)  # before start

    @bus.on(Held)
    async def handler(event: Event) -> None:
        handled.append(event.uid)

    async def main() -> None:
        async with bus:
            accepted = 0
            for uid in range(queued):
                if accepted < 2:
                    assert await bus.publish(Held(uid, "p", uid))
                    accepted += 1
                elif timeout_first:
                    with pytest.raises(PublishTimeout):  # the paused queue stays full
                        await bus.publish(Held(uid, "p", uid), timeout=0)
                else:
                    with pytest.raises(QueueFull):
                        bus.publish_nowait(Held(uid, "p", uid))
            await anyio.wait_all_tasks_blocked()
            assert handled == []
        # leaving `async with` handled what was queued though the type was paused
        assert handled == list(range(min(queued, 2)))
        assert bus.paused(Held)  # the pause stays set for the next run

    run_on(backend, options, main)
    assert bus.stats(Held).abandoned == 0


@pytest.mark.parametrize(("backend", "options"), BACKENDS[:2])  # broker clients: asyncio
@given(before=st.integers(0, 5), while_paused=st.integers(1, 5))
def test_a_paused_routed_type_fetches_nothing(
    backend: str, options: dict[str, Any], before: int, while_paused: int
) -> None:
    broker = FakeBroker()
    bus = Dispatcher(queue_size=8)
    bus.configure(Job, transport=broker)
    seen: list[int] = []

    @bus.on(Job)
    async def handler(job: Job) -> None:
        seen.append(job.n)

    async def main() -> None:
        async with bus:
            for n in range(before):
                await bus.publish(Job(n))
            await broker.until(before)
            await bus.drain()
            await anyio.wait_all_tasks_blocked()
            fetches = len(broker.rooms)  # the pump waits in a fetch it started before
            bus.pause(Job)
            for n in range(before, before + while_paused):
                await bus.publish(Job(n))
            await anyio.wait_all_tasks_blocked()
            # the fetch that was waiting returns what came; no fetch starts after it
            assert len(broker.rooms) == fetches
            assert bus.stats(Job).handled == before
            bus.resume(Job)
            await broker.until(before + while_paused)
            await bus.drain()
        assert sorted(seen) == list(range(before + while_paused))

    run_on(backend, options, main)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
def test_a_pause_holds_across_a_restart(backend: str, options: dict[str, Any]) -> None:
    handled: list[int] = []
    bus = Dispatcher()

    @bus.on(Held)
    async def handler(event: Event) -> None:
        handled.append(event.uid)

    async def run(first: int) -> None:
        async with bus:
            for uid in range(first, first + 3):
                await bus.publish(Held(uid, "p", uid))
            await anyio.wait_all_tasks_blocked()
            assert handled == list(range(first))  # nothing of this run yet: paused
        assert handled == list(range(first + 3))  # shutdown drained them

    bus.pause(Held)
    run_on(backend, options, lambda: run(0))
    run_on(backend, options, lambda: run(3))
    assert bus.paused(Held)
