"""Regressions of the second pass (issue 9): promises broken where features meet.

Each test reproduces one item of the hostile tester's report against the code
before the rewrite (it failed or hung there) and runs on asyncio, uvloop and trio.
Hangs are bounded by ``fail_after``; no test asserts on wall-clock durations.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from eventcore import (
    Dispatcher,
    DispatcherClosed,
    DropReason,
    InvalidEvent,
    Overflow,
    PublishTimeout,
    QueueFull,
)

from .contract_support import BACKENDS

pytestmark = [pytest.mark.contract, pytest.mark.anyio]

LIMIT = 10.0


@dataclass(frozen=True)
class A:
    n: int
    key: int = 0


@dataclass(frozen=True)
class B:
    n: int
    key: int = 0


@dataclass(frozen=True)
class C:
    n: int


def problems_of(bus: Dispatcher) -> list[str]:
    """The broken invariants of every live per-type state."""
    return [problem for state in bus._live_states() for problem in state.check()]


# -- 1. cycles of publish_and_wait and blocking publishes (promise 8) ----------------


async def test_a_publish_and_wait_cycle_between_two_types_finishes() -> None:
    bus = Dispatcher(concurrency=1)
    seen: list[str] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        seen.append(f"A{event.n}")
        if event.n == 0:
            await bus.publish_and_wait(B(0))

    @bus.on(B)
    async def on_b(event: B) -> None:
        seen.append(f"B{event.n}")
        await bus.publish_and_wait(A(1))

    with anyio.fail_after(LIMIT):
        async with bus:
            outcome = await bus.publish_and_wait(A(0))
            assert outcome.ok
            assert problems_of(bus) == []
    assert seen == ["A0", "B0", "A1"]


async def test_a_wait_on_b_and_a_blocking_publish_back_into_a_full_queue_finish() -> None:
    bus = Dispatcher(concurrency=1)
    bus.configure(A, queue_size=1)
    seen: list[str] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        seen.append(f"A{event.n}")
        if event.n == 0:
            await bus.publish_and_wait(B(0))

    @bus.on(B)
    async def on_b(event: B) -> None:
        seen.append(f"B{event.n}")
        await bus.publish(A(2))  # A's queue holds A1: full

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(A(0))
            await bus.publish(A(1))
            await bus.drain()
    assert sorted(seen) == ["A0", "A1", "A2", "B0"]


async def test_a_cycle_of_three_types_finishes() -> None:
    bus = Dispatcher(concurrency=1)
    handled: list[str] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        handled.append(f"A{event.n}")
        if event.n == 0:
            await bus.publish_and_wait(B(0))

    @bus.on(B)
    async def on_b(event: B) -> None:
        handled.append(f"B{event.n}")
        await bus.publish_and_wait(C(0))

    @bus.on(C)
    async def on_c(event: C) -> None:
        handled.append(f"C{event.n}")
        await bus.publish_and_wait(A(1))

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish_and_wait(A(0))
    assert handled == ["A0", "B0", "C0", "A1"]


# -- 2. a key's follow-on into its own full queue (promise 8) ------------------------


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_same_key_follow_on_into_the_own_full_queue_finishes(concurrency: int) -> None:
    bus = Dispatcher(concurrency=concurrency)
    bus.configure(A, key=lambda event: event.key, queue_size=2)
    handled: list[int] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        handled.append(event.n)
        if event.n < 3:
            await bus.publish(A(event.n + 10))

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(3):
                await bus.publish(A(n))
            await bus.drain()
            assert problems_of(bus) == []
    assert sorted(handled) == [0, 1, 2, 10, 11, 12]


# -- 3. a lent slot taken back under cancellation (promises 4 and 11) ----------------


async def test_a_handler_cancelled_while_taking_its_slot_back_never_runs_without_one() -> None:
    bus = Dispatcher(queue_size=1, concurrency=1)
    active = [0]
    peak = [0]
    released = anyio.Event()
    a1_queued = anyio.Event()
    publish_returned: list[bool] = []
    handled: list[int] = []

    def enter() -> None:
        active[0] += 1
        peak[0] = max(peak[0], active[0])

    @bus.on(A)
    async def on_a(event: A) -> None:
        enter()
        handled.append(event.n)
        try:
            if event.n == 0:
                await a1_queued.wait()
                active[0] -= 1  # suspended in the publish below (the queue is full)
                with anyio.move_on_after(0.05):
                    publish_returned.append(await bus.publish(A(2)))
                enter()  # running again
            elif event.n == 1:
                await released.wait()  # holds the slot while A0 wants it back
        finally:
            active[0] -= 1

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(A(0))
            await anyio.wait_all_tasks_blocked()
            await bus.publish(A(1))  # queued: the queue is full now
            a1_queued.set()
            await anyio.sleep(0.2)  # A0's timeout fires while A1 holds the slot
            released.set()
            await bus.drain()
    assert peak[0] == 1
    # Promise 11: the publish of A2 took effect exactly when it returned True.
    assert (2 in handled) == (publish_returned == [True])


async def test_a_publisher_cancelled_after_room_was_handed_to_it_had_no_effect() -> None:
    bus = Dispatcher(queue_size=1, concurrency=1)
    handled: list[int] = []
    gates = {n: anyio.Event() for n in range(3)}
    result: list[object] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        handled.append(event.n)
        await gates[event.n].wait()

    async def publisher(scope: anyio.CancelScope) -> None:
        with scope:
            result.append(await bus.publish(A(2)))
        if scope.cancelled_caught:
            result.append("cancelled")

    with anyio.fail_after(LIMIT):
        async with bus, anyio.create_task_group() as tg:
            await bus.publish(A(0))
            await anyio.wait_all_tasks_blocked()
            await bus.publish(A(1))
            scope = anyio.CancelScope()
            tg.start_soon(publisher, scope)
            await anyio.wait_all_tasks_blocked()  # the publisher waits for room
            gates[0].set()  # A1 starts: its room is handed to the waiting publisher...
            scope.cancel()  # ...which is cancelled before it runs again
            await anyio.wait_all_tasks_blocked()
            gates[1].set()
            gates[2].set()
            await bus.drain()
            stats = bus.stats(A)
    assert len(result) == 1
    if result == ["cancelled"]:
        assert handled == [0, 1]
        assert stats.accepted == 2
    else:
        assert result == [True]
        assert handled == [0, 1, 2]
        assert stats.accepted == 3


# -- 4. a lowered limit with keys (promise 4) ----------------------------------------


async def test_lowering_concurrency_with_keys_limits_handlers_that_start_later() -> None:
    bus = Dispatcher(concurrency=4)
    bus.configure(A, key=lambda event: event.key)
    running = [0]
    late_starts_beside_others: list[int] = []
    lowered = [False]

    @bus.on(A)
    async def on_a(event: A) -> None:
        if lowered[0] and running[0] > 0:
            late_starts_beside_others.append(event.n)
        running[0] += 1
        try:
            await anyio.sleep(0.005)
        finally:
            running[0] -= 1

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(40):  # two keys, four workers: backlogs behind held keys
                await bus.publish(A(n, key=n % 2))
            while running[0] < 2:
                await anyio.lowlevel.checkpoint()
            bus.configure(A, concurrency=1)
            lowered[0] = True  # handlers running may finish; none may start beside them
            await bus.drain()
    assert late_starts_beside_others == []


# -- 5. fairness: no waiting while there is room, first come first served (promise 10) --


async def test_a_blocked_publisher_gets_the_first_free_place_before_newcomers() -> None:
    bus = Dispatcher(queue_size=3, concurrency=1)
    gates: dict[int, anyio.Event] = {}
    order: list[int] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        order.append(event.n)
        gate = gates.setdefault(event.n, anyio.Event())
        await gate.wait()

    done: list[int] = []

    async def publish(n: int, timeout: float | None = None) -> None:
        await bus.publish(A(n), timeout=timeout)
        done.append(n)

    with anyio.fail_after(LIMIT):
        async with bus, anyio.create_task_group() as tg:
            for n in range(4):  # A0 in flight, A1..A3 queued: full
                await bus.publish(A(n))
                await anyio.wait_all_tasks_blocked()
            tg.start_soon(publish, 4, 5.0)  # waits
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(publish, 5)  # a newcomer, also waits (the queue is full)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(QueueFull):
                bus.publish_nowait(A(99))  # never jumps the line
            gates.setdefault(0, anyio.Event()).set()  # one place frees up
            await anyio.wait_all_tasks_blocked()
            assert done == [4]  # the first waiter got it at once, with 2 others queued
            assert bus.stats(A).queued == 3
            for n in range(1, 6):
                gates.setdefault(n, anyio.Event()).set()
            await bus.drain()
    assert order == [0, 1, 2, 3, 4, 5]


async def test_a_publisher_over_the_bound_before_the_worker_starts_gets_in_at_once() -> None:
    bus = Dispatcher(queue_size=6, concurrency=1)
    hold = anyio.Event()

    @bus.on(A)
    async def on_a(event: A) -> None:
        await hold.wait()

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(6):
                bus.publish_nowait(A(n))
            # Full before the worker ran: this waits until the worker takes A0, then
            # gets the freed place at once (not when the queue is half empty).
            assert await bus.publish(A(6))
            assert bus.stats(A).queued == 6
            hold.set()


async def test_a_timeout_never_expires_while_room_went_to_a_later_publisher() -> None:
    bus = Dispatcher(queue_size=3, concurrency=1)
    results: dict[str, object] = {}

    @bus.on(A)
    async def on_a(event: A) -> None:
        await anyio.sleep(0.001)

    async def first() -> None:
        try:
            results["first"] = await bus.publish(A(-1), timeout=0.5)
        except PublishTimeout:
            results["first"] = "timeout"

    async def crowd(n: int) -> None:
        while "first" not in results:  # a later publisher that takes any free place
            if bus.stats(A).queued < 3:
                await bus.publish(A(n))
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(LIMIT):
        async with bus, anyio.create_task_group() as tg:
            for n in range(4):
                await bus.publish(A(n))
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            for n in range(5):
                tg.start_soon(crowd, n)
    assert results["first"] is True


# -- 8. shutdown has a deadline (promise 13) -----------------------------------------


async def test_no_handler_starts_after_the_shutdown_deadline() -> None:
    dropped: Counter[DropReason] = Counter()
    bus = Dispatcher(shutdown_timeout=0.05, on_drop=lambda event, why: dropped.update([why]))
    started: list[int] = []
    cancelled = anyio.get_cancelled_exc_class()

    @bus.on(A)
    async def stubborn(event: A) -> None:
        started.append(event.n)
        try:
            await anyio.sleep(LIMIT)
        except cancelled:
            pass  # swallows the shutdown's cancellation

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(20):
                await bus.publish(A(n))
    stats = bus.stats(A)
    assert started == [0]
    assert (stats.handled, stats.abandoned, stats.queued, stats.in_flight) == (1, 19, 0, 0)
    assert dropped == Counter({DropReason.SHUTDOWN: 19})


# -- 9. nothing pinned (promise 12) ----------------------------------------------------


async def test_event_classes_made_at_run_time_are_not_kept_alive() -> None:
    bus = Dispatcher()
    seen = [0]

    @bus.on(C)
    async def on_c(event: C) -> None:
        seen[0] += 1

    refs: list[weakref.ref[type]] = []
    async with bus:
        for n in range(2000):
            klass = type(f"Short{n}", (C,), {})
            refs.append(weakref.ref(klass))
            await bus.publish(klass(n))
            if n % 100 == 0:
                await bus.drain()
            del klass
        await bus.drain()
        live_before = sum(1 for _ in bus._live_states())
        sub = bus.subscribe(C, on_c)  # a subscription change retires idle states...
        sub.unsubscribe()
        live_after = sum(1 for _ in bus._live_states())
    gc.collect()
    assert seen[0] == 2000
    assert live_before > 0
    assert live_after == 0  # ...so it does not visit every type ever seen
    assert sum(1 for ref in refs if ref() is not None) == 0


async def test_stats_outlive_a_retired_state() -> None:
    bus = Dispatcher()

    @bus.on(A)
    async def on_a(event: A) -> None:
        pass

    async with bus:
        for n in range(3):
            await bus.publish(A(n))
        await bus.drain()
    assert sum(1 for _ in bus._live_states()) == 0  # retired when the dispatcher stopped
    stats = bus.stats(A)
    assert (stats.accepted, stats.handled) == (3, 3)
    assert bus.stats()[A] == stats
    async with bus:
        await bus.publish(A(3))
    assert bus.stats(A).handled == 4


# -- 10. drain after a timed-out shutdown; a restart in a new event loop --------------


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
def test_drain_after_a_timed_out_shutdown_and_a_restart_in_a_new_loop(
    backend: str, options: dict[str, Any]
) -> None:
    bus = Dispatcher(shutdown_timeout=0.01, queue_size=2)
    handled: list[int] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        if event.n == 0:
            await anyio.sleep(LIMIT)  # cut off by the shutdown timeout
        if event.n == 6:
            await anyio.sleep(0.01)
        handled.append(event.n)

    async def first() -> None:
        async with bus:
            for n in range(3):
                await bus.publish(A(n))
        with anyio.fail_after(LIMIT):
            await bus.drain()  # returns at once: nothing is queued or in flight

    async def second() -> None:
        with anyio.fail_after(LIMIT):
            async with bus:
                outcome = await bus.publish_and_wait(A(5))
                await bus.publish(A(6))
                await bus.drain()  # waits on state of this event loop only
        assert outcome.ok

    anyio.run(first, backend=backend, backend_options=options)
    anyio.run(second, backend=backend, backend_options=options)
    assert handled == [5, 6]
    assert bus.stats(A).abandoned == 3


# -- 11. other threads ---------------------------------------------------------------


async def test_publish_nowait_from_another_thread_is_refused_and_harms_nothing() -> None:
    bus = Dispatcher()
    handled: list[int] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        handled.append(event.n)

    errors: list[BaseException] = []

    def from_thread() -> None:
        try:
            bus.publish_nowait(A(1))
        except RuntimeError as exc:
            errors.append(exc)

    async with bus:
        thread = threading.Thread(target=from_thread)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        await bus.publish(A(2))
        await bus.drain()
        assert bus.stats(A).accepted == 1
    assert len(errors) == 1
    assert "publish_threadsafe" in str(errors[0])
    assert handled == [2]


async def test_publish_threadsafe_after_close_raises_dispatcher_closed() -> None:
    bus = Dispatcher()
    async with bus:
        pass
    with pytest.raises(DispatcherClosed):
        await anyio.to_thread.run_sync(bus.publish_threadsafe, A(1))


# -- 12. drain inside a handler; a failing drain at exit -----------------------------


async def test_drain_inside_a_handler_raises_instead_of_hanging() -> None:
    bus = Dispatcher()
    errors: list[BaseException] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        try:
            await bus.drain()
        except RuntimeError as exc:
            errors.append(exc)

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish_and_wait(A(1))
    assert len(errors) == 1
    assert "inside a handler" in str(errors[0])


async def test_a_failing_drain_at_exit_still_stops_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bus = Dispatcher()

    @bus.on(A)
    async def on_a(event: A) -> None:
        pass

    class Broken(Exception):
        pass

    async def broken() -> None:
        raise Broken

    async def run_and_break() -> None:
        async with bus:
            await bus.publish(A(1))
            monkeypatch.setattr(bus._life, "_quiet", broken)

    with anyio.fail_after(LIMIT):
        with pytest.raises(Broken):
            await run_and_break()
        monkeypatch.undo()
        assert not bus.running
        async with bus:  # the workers and the task group are gone: start again
            outcome = await bus.publish_and_wait(A(2))
    assert outcome.ok


# -- composition: the body's own exception; keys and policies ------------------------


async def test_the_bodys_own_exception_leaves_async_with_as_itself() -> None:
    bus = Dispatcher()
    with pytest.raises(KeyError):
        async with bus:
            raise KeyError("mine")
    assert not bus.running


async def test_a_bad_key_on_one_type_does_not_stop_another() -> None:
    bus = Dispatcher()
    bus.configure(A, key=lambda event: [event.key])  # type: ignore[arg-type,return-value]
    handled: list[int] = []

    @bus.on(B)
    async def on_b(event: B) -> None:
        handled.append(event.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            with pytest.raises(InvalidEvent):
                await bus.publish(A(1))
            await bus.publish(B(1))
            await bus.drain()
            assert bus.stats(A).in_flight == 0
    assert handled == [1]


async def test_waiting_publishers_follow_a_policy_changed_under_them() -> None:
    bus = Dispatcher(queue_size=1, concurrency=1)
    hold = anyio.Event()
    results: list[object] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        await hold.wait()

    async def publish(n: int) -> None:
        results.append(await bus.publish(A(n)))

    with anyio.fail_after(LIMIT):
        async with bus, anyio.create_task_group() as tg:
            await bus.publish(A(0))
            await anyio.wait_all_tasks_blocked()
            await bus.publish(A(1))
            tg.start_soon(publish, 2)
            await anyio.wait_all_tasks_blocked()
            bus.configure(A, overflow=Overflow.DROP_NEWEST)
            await anyio.wait_all_tasks_blocked()
            assert results == [False]
            hold.set()
    assert bus.stats(A).dropped == 1


# -- found by the hostile tester of the rewrite --------------------------------------


async def test_an_orphaned_backlog_is_served_after_the_key_is_turned_off() -> None:
    """A key backlog left without a holder, then ``key=None``: the hot loop used to
    find no items, reschedule the type and pick it again forever without yielding."""
    bus = Dispatcher(concurrency=2)
    bus.configure(A, key=lambda event: event.key)
    handled: list[int] = []

    @bus.on(A)
    async def on_a(event: A) -> None:
        await anyio.sleep({1: 0.05, 3: 0.3}.get(event.n, 0))
        handled.append(event.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(A(1, key=0))  # a worker holds key 0
            await bus.publish(A(2, key=0))  # held behind key 0
            await bus.publish(A(3, key=1))  # a second worker, slow
            await anyio.sleep(0.01)
            bus.configure(A, concurrency=1)  # the first leaves: key 0's backlog orphaned
            await anyio.sleep(0.1)
            bus.configure(A, key=None, concurrency=2)  # plain again
            await bus.drain()
            assert problems_of(bus) == []
    assert sorted(handled) == [1, 2, 3]


async def test_a_task_started_by_a_handler_holds_no_slot() -> None:
    """A background task inherits the handler's context: it used to be taken for the
    handler, lend its slot and take one back that nobody gave up again."""
    bus = Dispatcher(concurrency=1)
    handled: list[int] = []

    async with anyio.create_task_group() as service:

        @bus.on(A)
        async def on_a(event: A) -> None:
            if event.n == 0:
                service.start_soon(bus.publish_and_wait, A(100))
            await anyio.sleep(0.01)
            handled.append(event.n)

        with anyio.fail_after(LIMIT):
            async with bus:
                await bus.publish(A(0))
                await anyio.sleep(0.2)
                await bus.publish(A(1))
                await bus.drain()
                assert problems_of(bus) == []
    assert sorted(handled) == [0, 1, 100]


async def test_switching_between_plain_and_general_under_load_does_not_recurse() -> None:
    bus = Dispatcher(queue_size=5000)
    handled = [0]

    @bus.on(A)
    async def on_a(event: A) -> None:
        handled[0] += 1
        bus.configure(A, handler_timeout=5.0 if event.n % 2 == 0 else None)

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(3000):
                bus.publish_nowait(A(n))
            await bus.drain()
    assert handled[0] == 3000


async def test_a_parked_worker_keeps_no_retired_class_alive() -> None:
    bus = Dispatcher()

    @bus.on(C)
    async def on_c(event: C) -> None:
        pass

    async with bus:
        made = type("Made", (C,), {})
        ref = weakref.ref(made)
        await bus.publish(made(1))
        await bus.drain()
        del made
        bus.subscribe(C, on_c).unsubscribe()  # two sweeps: the idle state is retired
        gc.collect()
        assert ref() is None  # while the dispatcher runs, its workers parked


async def test_a_cancelled_publisher_takes_back_its_own_publish_of_a_shared_object() -> None:
    bus = Dispatcher(queue_size=1, concurrency=1)
    gate = anyio.Event()
    seen: list[A] = []
    shared = A(7)

    @bus.on(A)
    async def on_a(event: A) -> None:
        seen.append(event)
        await gate.wait()

    with anyio.fail_after(LIMIT):
        async with bus, anyio.create_task_group() as tg:
            await bus.publish(A(0))
            await anyio.wait_all_tasks_blocked()
            await bus.publish(shared)  # queued
            scope = anyio.CancelScope()

            async def cancelled_publisher() -> None:
                with scope:
                    await bus.publish(shared)  # waits: the same object again

            tg.start_soon(cancelled_publisher)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            gate.set()
    assert seen == [A(0), shared]  # the queued publish stays, the cancelled one left
    assert bus.stats(A).accepted == 2
