"""Fault tests of the RabbitMQ transport on a private node (free ports, a temporary
directory; never the shared node), one node for the module, consumer processes as
subprocesses, each test under a prefix of its own.

(a) SIGKILL one of two consumers mid-stream: nothing lost, duplicates only among
    what the killed process held (at most its prefetch); (b) SIGKILL the node and
    boot it again mid-stream: the clients reconnect, nothing confirmed is lost;
    (c) a poison message that kills every consumer it reaches: ``max_deliver``
    attempts, then one dead letter, and later jobs flow; (d) a keyed type across a
    kill of the consumer that held its partitions: per-key order holds (a replay
    repeats, never reorders). The history checker reports every run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiormq
import pytest

from eventcore import Dispatcher, PublishUnconfirmed, QueueFull
from eventcore.transports.rabbitmq import RabbitMQTransport

from ._history import check
from ._servers import stopped
from .rabbit_support import PrivateRabbit
from .rabbit_worker import Entry, Job, service

#: under pytest-xdist the module's tests share one worker, so one private node boots
pytestmark = pytest.mark.xdist_group("rabbitmq-private-node")

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60.0
#: what one consumer may hold unacknowledged: its prefetch (the queue size, 16),
#: and the handlers (4) that may have written "start" for messages not yet acked
HELD = 16 + 4
#: how old the queues are before the node is killed (see the restart test)
QUEUE_SETTLES = 3.0


@pytest.fixture(scope="module")
def node() -> Iterator[PrivateRabbit]:
    rabbit = PrivateRabbit()
    try:
        rabbit.start()
        yield rabbit
    finally:
        rabbit.stop()


@pytest.fixture
def prefix() -> str:
    return "f" + uuid.uuid4().hex[:10]


class Consumer:
    """One consumer process, its history in a file (several may share one file)."""

    def __init__(self, node: PrivateRabbit, prefix: str, out: Path, *extra: str) -> None:
        self.out = out
        command = [sys.executable, "-m", "tests.brokers.rabbit_worker", "--url", node.url]
        command += ["--prefix", prefix, "--out", str(out), *extra]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        greeting = self.process.stdout.readline()
        assert greeting.strip() == b"ready", f"the consumer did not start: {greeting!r}"

    def records(self, kind: str) -> list[list[str]]:
        if not self.out.exists():
            return []
        rows = (line.split() for line in self.out.read_text().splitlines())
        return [row[1:] for row in rows if row and row[0] == kind]

    def started(self) -> list[str]:
        return [row[0] for row in self.records("start")]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


async def produce(node: PrivateRabbit, prefix: str, events: list[object], **options: int) -> None:
    """Publish *events* as the service would; an unconfirmed publish is sent again
    (the same event object: the same id)."""
    async with service(node.url, prefix, **options) as bus:
        for item in events:
            while True:
                try:
                    await bus.publish(item, timeout=LIMIT)
                    break
                except PublishUnconfirmed:
                    await asyncio.sleep(0.1)


def test_a_killed_consumer_loses_nothing(node: PrivateRabbit, prefix: str, tmp_path: Path) -> None:
    first = Consumer(node, prefix, tmp_path / "first", "--delay", "0.002")
    second = Consumer(node, prefix, tmp_path / "second", "--delay", "0.002")
    try:
        asyncio.run(produce(node, prefix, [Job(n) for n in range(300)]))
        eventually(lambda: len(first.started()) >= 40, "the first consumer to get going")
        first.kill()
        held = first.started()[-HELD:]
        asyncio.run(produce(node, prefix, [Job(n) for n in range(300, 600)]))
        everything = {str(n) for n in range(600)}
        eventually(
            lambda: set(first.started()) | set(second.started()) >= everything,
            "every job to be handled",
        )
    finally:
        first.end()
        second.end()
    report = check(map(str, range(600)), first.started() + second.started())
    print(report)
    report.assert_clean(in_flight=held)


def test_a_restarted_node_loses_nothing_confirmed(
    node: PrivateRabbit, prefix: str, tmp_path: Path
) -> None:
    consumer = Consumer(node, prefix, tmp_path / "consumer")
    # RabbitMQ 3.10: a quorum queue created a second or so before its node is killed
    # may come back without a leader (it never answers again); queues live longer
    time.sleep(QUEUE_SETTLES)
    try:

        async def across_a_restart() -> None:
            producing = asyncio.create_task(produce(node, prefix, [Job(n) for n in range(1000)]))
            while len(consumer.started()) < 200:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)
            await asyncio.to_thread(node.restart)
            await producing

        asyncio.run(across_a_restart())
        eventually(lambda: len(set(consumer.started())) >= 1000, "every job to be handled")
    finally:
        consumer.end()
    report = check(map(str, range(1000)), consumer.started())
    print(report)
    assert not report.lost, str(report)
    assert not report.unexpected, str(report)


def test_a_poison_message_is_tried_max_deliver_times_then_dead_lettered(
    node: PrivateRabbit, prefix: str, tmp_path: Path
) -> None:
    out = tmp_path / "consumers"
    settings = ("--max-deliver", "3", "--crash-on", "1000")
    consumers = [Consumer(node, prefix, out, *settings)]
    try:
        asyncio.run(produce(node, prefix, [Job(n) for n in range(30)], max_deliver=3))
        eventually(lambda: len(set(consumers[-1].started())) >= 30, "the first jobs")
        asyncio.run(produce(node, prefix, [Job(1000)], max_deliver=3))  # the poison, alone
        for _ in range(3):  # each delivery of job 1000 kills the process that got it
            eventually(lambda: consumers[-1].process.poll() is not None, "the poison to kill")
            consumers.append(Consumer(node, prefix, out, *settings))
        eventually(lambda: bool(consumers[-1].records("dead")), "the dead letter")
        asyncio.run(produce(node, prefix, [Job(n) for n in range(30, 60)], max_deliver=3))
        eventually(lambda: len(set(consumers[-1].started())) >= 61, "the later jobs")
    finally:
        for consumer in consumers:
            consumer.end()
    history = consumers[-1]  # they all wrote to one file
    assert history.started().count("1000") == 3
    assert history.records("dead") == [["1000", "delivery_limit", "3"]]
    report = check(map(str, [*range(60), 1000]), history.started())
    assert not report.lost, str(report)


def test_per_key_order_holds_across_a_killed_consumer(
    node: PrivateRabbit, prefix: str, tmp_path: Path
) -> None:
    active = Consumer(node, prefix, tmp_path / "active", "--delay", "0.003")
    standby = Consumer(node, prefix, tmp_path / "standby", "--delay", "0.003")
    entries = [Entry(f"acct{n % 5}", n) for n in range(400)]
    try:
        asyncio.run(produce(node, prefix, entries))  # type: ignore[arg-type]
        eventually(
            lambda: len(active.records("key")) + len(standby.records("key")) >= 100,
            "the consumers to get going",
        )
        # the single active consumers of the partitions: the one that started first
        # holds them all, the other waits; kill the one that works
        busy, idle = (
            (active, standby) if len(active.records("key")) >= len(standby.records("key"))
            else (standby, active)
        )  # fmt: skip
        busy.kill()
        before = len(idle.records("key"))
        eventually(
            lambda: (
                len(
                    {row[1] for row in idle.records("key")}
                    | {row[1] for row in busy.records("key")}
                )
                >= 400
            ),
            "every entry to be handled",
        )
    finally:
        active.end()
        standby.end()
    assert before < 400
    handled = busy.records("key") + idle.records("key")  # the killed one came first
    for account in {entry.account for entry in entries}:
        seen: list[int] = []
        for row in handled:
            if row[0] == account and int(row[1]) not in seen:
                seen.append(int(row[1]))
        expected = [entry.n for entry in entries if entry.account == account]
        assert seen == expected, f"{account}: {seen[:20]}..."
    report = check(
        (str(entry.n) for entry in entries),
        (row[1] for row in handled),
    )
    report.assert_clean(in_flight=[row[1] for row in busy.records("key")[-HELD:]])


def test_an_unconfirmed_publish_is_sent_again_under_the_same_id(
    node: PrivateRabbit, prefix: str
) -> None:
    pid = node.pid
    assert pid is not None

    async def scenario() -> list[tuple[str, bytes]]:
        transport = RabbitMQTransport(node.url, group="g", prefix=prefix, publish_timeout=0.5)
        async with Dispatcher(transport=transport) as bus:
            await bus.publish(Job(0))  # the queue exists; the node answers
            stuck = Job(1)
            os.kill(pid, signal.SIGSTOP)  # the node stops answering
            await stopped(pid)  # once every thread took the signal (lazily, under load)
            try:
                with pytest.raises(PublishUnconfirmed) as unconfirmed:
                    await bus.publish(stuck)
            finally:
                os.kill(pid, signal.SIGCONT)
            assert unconfirmed.value.event_type is Job
            await bus.publish(stuck)  # the same event object: the same id
            await bus.publish(Job(1))  # an equal but new object is a new event
        connection = await aiormq.connect(node.url)
        messages = []
        try:
            channel = await connection.channel()
            queue = transport.queues_of(Job)[0]
            while (got := await channel.basic_get(queue, no_ack=True)).body:
                messages.append((str(got.header.properties.message_id), got.body))
        finally:
            await connection.close()
        return messages

    messages = asyncio.run(scenario())
    ids = [message_id for message_id, body in messages if b'"n":1' in body]
    assert len(ids) in (2, 3)  # the stuck publish stored once or twice, the new one once
    assert len(set(ids)) == 2


def test_a_stalled_node_answers_send_within_its_deadline(node: PrivateRabbit, prefix: str) -> None:
    pid = node.pid
    assert pid is not None

    async def scenario() -> BaseException:
        # a send that waited out publish_timeout (30 s) would far outlast the bound (3 s)
        transport = RabbitMQTransport(node.url, group="g", prefix=prefix, publish_timeout=30)
        async with Dispatcher(transport=transport) as bus:
            await bus.publish(Job(0))
            os.kill(pid, signal.SIGSTOP)
            try:
                # once every thread took the signal: under load the node confirmed
                # the send below before the stop took hold
                await stopped(pid)
                deadline = asyncio.get_running_loop().time() + 0.3
                with pytest.raises((PublishUnconfirmed, QueueFull)) as failed:
                    await asyncio.wait_for(transport.send(Job, Job(1), deadline=deadline), 3.0)
                return failed.value
            finally:
                os.kill(pid, signal.SIGCONT)

    error = asyncio.run(scenario())
    assert getattr(error, "event_type", None) is Job
