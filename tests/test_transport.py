"""The broker seam with a fake transport: durable send, fetch only into free room, and
one receipt settled per fetched event with the delivery's verdict."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from eventcore import (
    Dispatcher,
    InvalidConfiguration,
    Overflow,
    QueueFull,
    Receipt,
    Retry,
    Transport,
    TransportError,
    Verdict,
)
from eventcore.transports._kit import Crew
from tests.fake_broker import FakeBroker, FakeReceipt, FakeSource, Job, Local

pytestmark = pytest.mark.anyio

LIMIT = 10.0


def test_the_fake_is_a_transport() -> None:
    broker = FakeBroker()
    assert isinstance(broker, Transport)
    assert isinstance(FakeReceipt(broker, None), Receipt)


async def test_each_fetched_event_is_settled_once_with_its_verdict() -> None:
    broker = FakeBroker()
    bus = Dispatcher(queue_size=3, on_error=lambda *args: None)
    bus.configure(Job, transport=broker, retry=Retry(attempts=2, backoff=0))
    seen: list[int] = []

    @bus.on(Job)
    async def handler(job: Job) -> None:
        seen.append(job.n)
        if job.fail:
            raise ValueError(job.n)

    @bus.on(Local)
    async def local(event: Local) -> None:
        seen.append(-event.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(10):
                assert await bus.publish(Job(n, fail=n % 4 == 0))
            await bus.publish(Local(1))  # not routed: in memory, no receipt
            await broker.until(10)
            await bus.drain()
    assert [r.verdicts for r in broker.receipts] == [
        [Verdict.FAILED] if r.event.fail else [Verdict.HANDLED] for r in broker.receipts
    ]
    assert sorted(n for n in seen if n >= 0) == sorted([*range(10), 0, 4, 8])
    assert -1 in seen
    assert max(broker.rooms) <= 3  # never more than the local queue had room for
    stats = bus.stats(Job)
    assert (stats.accepted, stats.handled, stats.failed) == (10, 10, 3)


async def test_shutdown_settles_unstarted_events_for_redelivery() -> None:
    broker = FakeBroker()
    bus = Dispatcher(queue_size=4, shutdown_timeout=0.05, transport=broker)
    started = anyio.Event()

    @bus.on(Job)
    async def handler(job: Job) -> None:
        started.set()
        await anyio.sleep(LIMIT)  # cut off by the shutdown deadline

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(6):
                await bus.publish(Job(n))
            await started.wait()
            while len(broker.receipts) < 5:  # 1 in flight + 4 queued: the room it had
                await broker.changed.wait()
                broker.changed = anyio.Event()
    verdicts = broker.verdicts()
    assert verdicts == Counter({Verdict.SHUTDOWN: 5})
    assert len(broker.pending) == 1  # never fetched: still on the broker
    assert all(len(r.verdicts) == 1 for r in broker.receipts)


async def test_an_event_the_consumer_cannot_key_is_rejected() -> None:
    broker = FakeBroker()
    producer = Dispatcher(transport=broker)  # two processes of one service, in one test
    letters: list[Any] = []
    consumer = Dispatcher(transport=broker, on_dead_letter=letters.append)

    def key(job: Job) -> int:
        if job.fail:
            raise KeyError(job.n)
        return job.n

    consumer.configure(Job, key=key)
    seen: list[int] = []

    @consumer.on(Job)
    async def handler(job: Job) -> None:
        seen.append(job.n)

    with anyio.fail_after(LIMIT):
        async with producer, consumer:
            for n in range(3):
                await producer.publish(Job(n, fail=n == 1))
            await broker.until(3)
    assert seen == [0, 2]
    assert [r.verdicts for r in broker.receipts] == [
        [Verdict.HANDLED],
        [Verdict.REJECTED],
        [Verdict.HANDLED],
    ]
    assert [letter.event for letter in letters] == [Job(1, fail=True)]


async def test_a_full_broker_follows_the_overflow_policy() -> None:
    broker = FakeBroker(capacity=1)
    bus = Dispatcher()
    bus.configure(Job, transport=broker, overflow=Overflow.DROP_NEWEST)

    with anyio.fail_after(LIMIT):
        async with bus:  # no subscriber: nothing fetches, the stream fills up
            assert await bus.publish(Job(1))
            assert not await bus.publish(Job(2))
            bus.configure(Job, overflow=Overflow.RAISE)
            with pytest.raises(QueueFull):
                await bus.publish(Job(3))
    assert bus.stats(Job).dropped == 1
    assert broker.sent == [Job(1)]


async def test_routed_types_refuse_what_a_broker_cannot_do() -> None:
    broker = FakeBroker()
    bus = Dispatcher(transport=broker)

    @bus.on(Job)
    async def handler(job: Job) -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with bus:
            with pytest.raises(InvalidConfiguration, match="publish_nowait"):
                bus.publish_nowait(Job(1))
            with pytest.raises(InvalidConfiguration, match="publish_and_wait"):
                await bus.publish_and_wait(Job(2))


def test_a_transport_needs_send_and_source() -> None:
    with pytest.raises(InvalidConfiguration, match="transport"):
        Dispatcher(transport=object())
    with pytest.raises(InvalidConfiguration, match="transport"):
        Dispatcher().configure(Job, transport="nats://127.0.0.1:4222")


async def test_a_routed_type_being_fetched_is_never_retired() -> None:
    broker = FakeBroker()
    bus = Dispatcher(transport=broker, shutdown_timeout=0.5)
    seen: list[int] = []

    @bus.on(Job)
    async def handler(job: Job) -> None:
        seen.append(job.n)

    async def local(event: Local) -> None:  # pragma: no cover - never called
        pass

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Job(0))
            await broker.until(1)
            bus.subscribe(Local, local).unsubscribe()  # sweeps: Job's state is idle
            for n in range(1, 6):
                await bus.publish(Job(n))
            await broker.until(6)
            assert bus.stats(Job).handled == 6
    assert sorted(seen) == list(range(6))


async def test_broker_errors_are_logged_and_retried_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = FakeBroker()
    fetches = [0]
    real_source = broker.source

    class Flaky(FakeSource):
        async def fetch(self, room: int) -> Sequence[tuple[Any, FakeReceipt]]:
            fetches[0] += 1
            if fetches[0] == 2:
                raise ConnectionError("the broker went away")
            return await super().fetch(room)

    broker.source = lambda event_type: Flaky(broker, event_type)  # type: ignore[method-assign]
    bus = Dispatcher(transport=broker)
    seen: list[int] = []

    @bus.on(Job)
    async def handler(job: Job) -> None:
        seen.append(job.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(3):
                await bus.publish(Job(n))
                await broker.until(n + 1)
    assert real_source is not None
    assert sorted(seen) == [0, 1, 2]
    assert "fetching Job failed" in caplog.text


class LivingBroker(FakeBroker):
    """A fake with a life: records open/close, may fail to open."""

    def __init__(self, fail_open: bool = False) -> None:
        super().__init__()
        self.fail_open = fail_open
        self.life: list[str] = []
        self.bus: Any = None
        self.unsettled_at_close = -1

    async def open(self, bus: Any) -> None:
        await anyio.lowlevel.checkpoint()
        if self.fail_open:
            raise ConnectionRefusedError("no broker here")
        self.bus = bus
        self.life.append("open")

    async def close(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.unsettled_at_close = self.in_flight
        self.life.append("close")


async def test_a_transport_is_opened_at_start_and_closed_after_the_last_settle() -> None:
    broker = LivingBroker()
    bus = Dispatcher(transport=broker)
    seen: list[int] = []

    @bus.on(Job)
    async def handler(job: Job) -> None:
        seen.append(job.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            assert broker.life == ["open"]
            assert broker.bus is bus
            for n in range(5):
                await bus.publish(Job(n))
            await broker.until(5)
        assert broker.life == ["open", "close"]
        async with bus:  # a second run opens it again
            assert broker.life == ["open", "close", "open"]
    assert broker.life == ["open", "close", "open", "close"]
    assert sorted(seen) == list(range(5))


async def test_a_transport_that_cannot_open_fails_the_start() -> None:
    bus = Dispatcher(transport=LivingBroker(fail_open=True))
    with pytest.raises(TransportError, match="no broker here") as caught:
        async with bus:
            pytest.fail("the body must not run")
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)  # kept as the cause
    assert not bus.running


class CrewedBroker(FakeBroker):
    """A fake whose ``open`` takes the dispatcher's task group for a task of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.life: list[str] = []
        self.crew: Crew | None = None
        self.started = anyio.Event()

    async def open(self, bus: Any, *, task_group: anyio.abc.TaskGroup | None = None) -> None:
        self.crew = Crew("fake", logging.getLogger("tests.crew"))
        await self.crew.start({"beat": self._beat}, task_group=task_group)

    async def _beat(self) -> None:
        self.life.append("task started")
        self.started.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.life.append("task ended")

    async def close(self) -> None:
        self.life.append("close")
        assert self.crew is not None
        await self.crew.stop()


@pytest.mark.parametrize("configured_late", [False, True])
async def test_a_transport_runs_its_tasks_in_the_dispatchers_task_group(
    configured_late: bool,
) -> None:
    broker = CrewedBroker()
    bus = Dispatcher() if configured_late else Dispatcher(transport=broker)

    @bus.on(Job)
    async def handler(job: Job) -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with bus:
            if configured_late:
                bus.configure(Job, transport=broker)
                await bus.publish(Job(1))
            await broker.started.wait()
            assert broker.life == ["task started"]  # it runs while the dispatcher runs
        # its task outlived nothing: cancelled by close(), inside the run's task group
        assert broker.life == ["task started", "close", "task ended"]


async def test_a_transport_opened_without_a_task_group_says_so() -> None:
    with pytest.raises(InvalidConfiguration, match="opened without a task group"):
        await CrewedBroker().open(None)


async def test_a_transport_configured_while_running_is_opened_before_use() -> None:
    broker = LivingBroker()
    bus = Dispatcher()
    seen: list[int] = []

    @bus.on(Job)
    async def handler(job: Job) -> None:
        seen.append(job.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            assert broker.life == []
            bus.configure(Job, transport=broker)
            await bus.publish(Job(1))
            assert broker.life == ["open"]  # once, though pump and send both need it
            await broker.until(1)
    assert broker.life == ["open", "close"]
    assert seen == [1]


async def test_handlers_run_in_the_context_a_receipt_carries() -> None:
    import contextvars

    trace: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="none")

    class ContextReceipt(FakeReceipt):
        @property
        def context(self) -> contextvars.Context:
            context = contextvars.copy_context()
            context.run(trace.set, f"from-publisher-{self.event.n}")
            return context

    class ContextBroker(FakeBroker):
        def source(self, event_type: type) -> FakeSource:
            broker = self

            class Source(FakeSource):
                async def fetch(self, room: int) -> Sequence[tuple[Any, FakeReceipt]]:
                    batch = await super().fetch(room)
                    for index, (event, receipt) in enumerate(batch):
                        swapped = ContextReceipt(broker, event)
                        broker.receipts[broker.receipts.index(receipt)] = swapped
                        batch[index] = (event, swapped)  # type: ignore[index]
                    return batch

            return Source(self, event_type)

    broker = ContextBroker()
    bus = Dispatcher(transport=broker)
    seen: list[str] = []

    @bus.on(Job)
    async def handler(job: Job) -> None:
        seen.append(trace.get())

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(3):
                await bus.publish(Job(n))
            await broker.until(3)
    assert sorted(seen) == [f"from-publisher-{n}" for n in range(3)]


async def test_a_transport_reports_dead_letters_through_the_dispatcher() -> None:
    from eventcore import DeadLetter, DeadLetterReason

    letters: list[DeadLetter] = []
    bus = Dispatcher(on_dead_letter=letters.append)
    subscribed: list[DeadLetter] = []

    @bus.on(DeadLetter)
    async def sink(letter: DeadLetter) -> None:
        subscribed.append(letter)

    letter = DeadLetter(b"\x00garbage", DeadLetterReason.UNDECODABLE, ValueError("bad"))
    with anyio.fail_after(LIMIT):
        async with bus:
            bus.report_dead_letter(letter)
            await bus.drain()
    assert letters == [letter]
    assert subscribed == [letter]
    with pytest.raises(TypeError, match="takes a DeadLetter"):
        bus.report_dead_letter("nope")  # type: ignore[arg-type]


async def test_stats_carry_the_broker_figures_of_a_routed_type() -> None:
    from eventcore import BrokerStats

    class CountingBroker(FakeBroker):
        def broker_stats(self, event_type: type) -> BrokerStats:
            settled = sum(len(r.verdicts) for r in self.receipts)
            return BrokerStats(pending=len(self.pending), acked=settled)

    broker = CountingBroker()
    bus = Dispatcher()
    bus.configure(Job, transport=broker)

    @bus.on(Job)
    async def handler(job: Job) -> None:
        pass

    @bus.on(Local)
    async def local(event: Local) -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(4):
                await bus.publish(Job(n))
            await bus.publish(Local(0))
            await broker.until(4)
            await bus.drain()
            assert bus.stats(Job).broker == BrokerStats(pending=0, acked=4)
            assert bus.stats()[Job].broker == BrokerStats(pending=0, acked=4)
            assert bus.stats(Local).broker is None  # in memory


async def test_events_cut_off_by_shutdown_are_settled_before_the_transport_closes() -> None:
    broker = LivingBroker()
    bus = Dispatcher(queue_size=4, shutdown_timeout=0.05, transport=broker)
    started = anyio.Event()

    @bus.on(Job)
    async def handler(job: Job) -> None:
        started.set()
        await anyio.sleep(LIMIT)

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(5):
                await bus.publish(Job(n))
            await started.wait()
            while len(broker.receipts) < 5:
                await broker.changed.wait()
                broker.changed = anyio.Event()
    assert broker.life == ["open", "close"]
    assert broker.unsettled_at_close == 0  # the naks went out before the connection closed
    assert broker.verdicts() == Counter({Verdict.SHUTDOWN: 5})
