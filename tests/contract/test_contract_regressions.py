"""Deterministic tests for the contract bugs the property tests found, and for the
known traps that random programs hit too rarely (see PLANTED.md). Each runs on
asyncio, uvloop and trio."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import sniffio

from eventcore import Dispatcher, DispatcherClosed, DropReason, Overflow
from tests.fake_broker import FakeHub

from .contract_support import Event, make_hierarchy

pytestmark = [pytest.mark.contract, pytest.mark.anyio]

A, B = make_hierarchy([None, None])


async def test_bound_holds_when_a_lent_slot_is_taken_back() -> None:
    """Promise 3. A handler blocked publishing into its own full queue lends its slot;
    it used to append *after* waiting to take a slot back, when the room it had
    waited for could already be taken: queued reached queue_size + 1."""
    bus = Dispatcher(queue_size=1, concurrency=1, overflow=Overflow.BLOCK)
    peaks: list[int] = []

    @bus.on(A)
    async def handler(event: Event) -> None:
        peaks.append(bus.stats(A).queued)
        if event.depth < 4:
            for n in range(2):
                await bus.publish(A(event.uid * 10 + n, "h", n, event.depth + 1))
                peaks.append(bus.stats(A).queued)

    with anyio.fail_after(10):
        async with bus:
            await bus.publish(A(1, "p", 0))
            await bus.publish(A(2, "p", 1))
            await bus.drain()
    assert bus.stats(A).handled == 2 * (2**5 - 1)
    assert max(peaks) == 1


async def test_blocked_publisher_is_released_on_close() -> None:
    """Promises 2 and 7. A publisher waiting for room when the shutdown timeout runs out
    used to wait forever (its wake-up was discarded); it gets DispatcherClosed, counted
    as refused."""
    drops: list[tuple[int, DropReason]] = []
    bus = Dispatcher(
        queue_size=1, shutdown_timeout=0, on_drop=lambda e, r: drops.append((e.uid, r))
    )

    @bus.on(A)
    async def hang(event: Event) -> None:
        await anyio.sleep_forever()

    outcome: list[object] = []

    async def blocked_publisher() -> None:
        try:
            outcome.append(await bus.publish(A(3, "p", 2)))
        except DispatcherClosed as exc:
            outcome.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg, bus:
            await bus.publish(A(1, "p", 0))
            await anyio.wait_all_tasks_blocked()  # A(1) is in flight, hanging
            await bus.publish(A(2, "p", 1))  # the queue is full now
            tg.start_soon(blocked_publisher)
            await anyio.wait_all_tasks_blocked()
    assert len(outcome) == 1
    assert isinstance(outcome[0], DispatcherClosed)
    assert sorted(drops) == [(1, DropReason.SHUTDOWN), (2, DropReason.SHUTDOWN)]
    stats = bus.stats(A)
    assert (stats.accepted, stats.refused, stats.abandoned, stats.published) == (2, 1, 2, 3)


async def test_a_putter_cancelled_after_its_wake_up_passes_the_room_on() -> None:
    """Promises 2 and 8, the lost-wake-up trap (anyio #146 for a bounded queue): a
    blocked publisher told about room, then cancelled before it could use it, must
    hand the wake-up to the next blocked publisher, or that one waits forever.

    On asyncio the cancel is a native ``Task.cancel()`` (what an asyncio web server
    does to a request's task): anyio's own cancel scopes wait until the wake-up is
    consumed. On trio a wake-up once delivered is always consumed."""
    bus = Dispatcher(queue_size=1, concurrency=1, overflow=Overflow.BLOCK)
    gate = anyio.Event()
    handled: list[int] = []
    results: dict[int, object] = {}
    cancel_first: list[Callable[[], object]] = []

    @bus.on(A)
    async def handler(event: Event) -> None:
        if event.uid == 1:
            # The worker has just taken A(1) and told the first waiting publisher
            # about the room; cancel that publisher before it runs.
            cancel_first[0]()
        await gate.wait()
        handled.append(event.uid)

    async def publisher(uid: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        if sniffio.current_async_library() == "asyncio":
            task = asyncio.current_task()
            assert task is not None
            cancel_first.append(task.cancel)
            try:
                task_status.started()
                results[uid] = await bus.publish(A(uid, "p", uid))
            except asyncio.CancelledError:
                if sys.version_info >= (3, 11):
                    task.uncancel()
                results[uid] = "cancelled"
        else:
            with anyio.CancelScope() as scope:
                cancel_first.append(scope.cancel)
                task_status.started()
                results[uid] = await bus.publish(A(uid, "p", uid))

    with anyio.fail_after(10):
        async with bus, anyio.create_task_group() as tg:
            await bus.publish(A(0, "p", 0))
            await anyio.wait_all_tasks_blocked()  # A(0) is being handled
            await bus.publish(A(1, "p", 1))  # the queue is full
            await tg.start(publisher, 2)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(bus.publish, A(3, "p", 3))
            await anyio.wait_all_tasks_blocked()  # two publishers wait, A(2)'s first
            gate.set()
    accepted = [uid for uid, result in results.items() if result is True]
    assert sorted(handled) == [0, 1, *accepted, 3]
    assert bus.stats(A).accepted == len(handled)


async def test_lowering_concurrency_while_running_limits_later_events() -> None:
    """Promise 4 with ``configure`` while running: once concurrency is lowered, the
    workers above the new limit finish their current event and take no more (they
    used to keep taking events at the old width)."""
    bus = Dispatcher(concurrency=3)
    gate = anyio.Event()
    running = 0
    peak_after: list[int] = []
    lowered = False

    @bus.on(A)
    async def handler(event: Event) -> None:
        nonlocal running
        running += 1
        if lowered:
            peak_after.append(running)
        await gate.wait()
        await anyio.lowlevel.checkpoint()
        running -= 1

    with anyio.fail_after(10):
        async with bus:
            for uid in range(3):
                await bus.publish(A(uid, "p", uid))
            await anyio.wait_all_tasks_blocked()  # three handlers wait at the gate
            bus.configure(A, concurrency=1)
            lowered = True
            for uid in range(3, 9):
                await bus.publish(A(uid, "p", uid))
            gate.set()
            await bus.drain()
    # The three already running may finish together; events taken afterwards run alone.
    assert peak_after
    assert max(peak_after[3:] or [1]) == 1, peak_after


async def test_drop_oldest_with_a_key_evicts_the_oldest_waiting_event() -> None:
    """Promise 2 / Overflow.DROP_OLDEST: an event waiting behind its key (taken out of
    the queue, still counted as queued) is older than every event in the queue, so it
    is the one to evict first."""
    evicted: list[int] = []
    bus = Dispatcher(
        queue_size=2,
        concurrency=2,
        overflow=Overflow.DROP_OLDEST,
        on_drop=lambda event, reason: evicted.append(event.uid),
    )
    bus.configure(A, key=lambda event: event.seq)
    gate = anyio.Event()

    @bus.on(A)
    async def handler(event: Event) -> None:
        await gate.wait()

    with anyio.fail_after(10):
        async with bus:
            await bus.publish(A(0, "p", 0))  # taken: key 0 is busy
            await anyio.wait_all_tasks_blocked()
            await bus.publish(A(1, "p", 0))  # waits behind key 0
            await anyio.wait_all_tasks_blocked()
            await bus.publish(A(2, "p", 1))  # the queue is full now
            await bus.publish(A(3, "p", 1))  # evicts the oldest waiting: A(1)
            gate.set()
    assert evicted == [1]


@dataclass(frozen=True)
class RoutedKeyed:
    uid: int
    key: int


@dataclass(frozen=True)
class RoutedPlain:
    uid: int


async def test_routed_types_sharing_a_fake_hub_namespace_fetch_only_their_own() -> None:
    """Promises 13 and 8 as the composition machine saw them: two routed types on one
    FakeHub transport. Its source used to fetch every type's messages, so the keyed
    type's pump took the plain type's event (its key function failed: settled
    REJECTED, never handled, no on_drop) and the plain type's pump ran a handler of
    the paused keyed type. A defect of the fake (a real broker keeps a stream per
    type), not of eventcore."""
    errors: list[BaseException] = []
    handled: list[Any] = []
    bus = Dispatcher(on_error=lambda event, handler, exc: errors.append(exc))

    async def handle(event: Any) -> None:
        handled.append(event)

    broker = FakeHub().transport("regressions", "group")
    for routed in (RoutedKeyed, RoutedPlain):
        bus.register(routed, name=f"regressions.{routed.__name__}")
        bus.subscribe(routed, handle)
    bus.configure(RoutedKeyed, transport=broker, key=lambda event: event.key)
    bus.configure(RoutedPlain, transport=broker)

    with anyio.fail_after(10):
        async with bus:
            bus.pause(RoutedPlain)
            await bus.publish(RoutedPlain(1))
            await anyio.wait_all_tasks_blocked()
            assert (handled, errors) == ([], [])  # left on the broker, for its own pump
            bus.resume(RoutedPlain)
            bus.pause(RoutedKeyed)
            await bus.publish(RoutedKeyed(2, key=0))
            await anyio.wait_all_tasks_blocked()
            assert handled == [RoutedPlain(1)]  # the paused keyed type ran nothing
            bus.resume(RoutedKeyed)
            await bus.drain()
    assert (handled, errors) == ([RoutedPlain(1), RoutedKeyed(2, key=0)], [])
    assert (bus.stats(RoutedPlain).handled, bus.stats(RoutedKeyed).handled) == (1, 1)
