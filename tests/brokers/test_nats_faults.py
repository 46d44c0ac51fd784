"""Fault tests of the NATS transport: a private ``nats-server -js`` on a free port with a
temporary store (never the shared server), consumer processes as subprocesses.

(a) SIGKILL one of two consumers mid-stream: nothing lost, duplicates only among
    what the killed process held; (b) restart the server mid-stream: the clients
    reconnect, nothing lost; (c) a poison message that kills its consumer: exactly
    ``max_deliver`` attempts, then one dead letter, while another type flows;
    (d) a consumer slower than its publisher: the stream limit holds the publisher
    back and the consumer's memory stays flat. The history checker reports every run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventcore import Dispatcher, PublishUnconfirmed
from eventcore.transports.nats import NatsTransport

from ._history import check
from ._servers import PrivateServer, private_nats, stopped
from .nats_worker import Job, Other, options, transport

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateServer]:
    with private_nats(tmp_path) as running:
        yield running


class Worker:
    """One consumer process writing its history to a file."""

    def __init__(self, server: PrivateServer, out: Path, *extra: str) -> None:
        self.out = out
        self.args = [
            "--url", f"nats://127.0.0.1:{server.port}", "--prefix", "fault",
            "--out", str(out), *extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.brokers.nats_worker", *self.args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == b"ready", f"the worker did not start: {line!r}"

    def lines(self) -> list[list[str]]:
        if not self.out.exists():
            return []
        return [line.split() for line in self.out.read_text().splitlines() if line]

    def started(self) -> list[str]:
        return [parts[1] for parts in self.lines() if parts[0] == "start"]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        if self.process.stdout is not None:
            self.process.stdout.close()


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


async def publish(server: PrivateServer, jobs: range, *extra: str, others: int = 0) -> None:
    """Publish *jobs* as the workers' own service would; retry what was unconfirmed."""
    args = options(
        ["--url", f"nats://127.0.0.1:{server.port}", "--prefix", "fault", "--out", "-", *extra]
    )
    bus = Dispatcher(transport=transport(args))
    async with bus:
        for n in jobs:
            job = Job(n)
            while True:
                try:
                    await bus.publish(job, timeout=LIMIT)
                    break
                except PublishUnconfirmed:
                    continue  # the same event again: deduplicated by its id
            if others and n % (len(jobs) // others or 1) == 0:
                await bus.publish(Other(n))


def test_a_killed_consumer_loses_nothing(server: PrivateServer, tmp_path: Path) -> None:
    first = Worker(server, tmp_path / "first.log", "--delay", "0.002")
    second = Worker(server, tmp_path / "second.log", "--delay", "0.002")
    try:
        asyncio.run(publish(server, range(300)))
        wait_until(lambda: len(first.started()) >= 40, "the first worker to get going")
        first.kill()
        held = first.started()[-(16 + 4 + 32) :]  # its queue, its handlers, unsent acks
        asyncio.run(publish(server, range(300, 600)))
        wait_until(
            lambda: set(first.started()) | set(second.started()) >= {str(n) for n in range(600)},
            "every job to be handled",
        )
    finally:
        first.stop()
        second.stop()
    report = check(map(str, range(600)), first.started() + second.started())
    print(report)
    report.assert_clean(in_flight=held)


def test_a_restarted_server_loses_nothing(server: PrivateServer, tmp_path: Path) -> None:
    worker = Worker(server, tmp_path / "worker.log")
    try:

        async def publish_across_a_restart() -> None:
            publishing = asyncio.create_task(publish(server, range(1000)))
            while len(worker.started()) < 200:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)
            await asyncio.to_thread(server.restart)
            await publishing

        asyncio.run(publish_across_a_restart())
        wait_until(lambda: len(set(worker.started())) >= 1000, "every job to be handled")
    finally:
        worker.stop()
    report = check(map(str, range(1000)), worker.started())
    print(report)
    assert not report.lost, str(report)
    assert not report.unexpected, str(report)


def test_a_poison_message_is_tried_max_deliver_times_then_dead_lettered(
    server: PrivateServer, tmp_path: Path
) -> None:
    out = tmp_path / "workers.log"
    settings = ("--max-deliver", "3", "--ack-wait", "1", "--crash-on", "1000")
    workers = [Worker(server, out, *settings)]
    try:
        asyncio.run(publish(server, range(30), *settings[:4], others=5))
        wait_until(lambda: len(set(workers[-1].started())) >= 30, "the first jobs")
        asyncio.run(publish(server, range(1000, 1001), *settings[:4]))  # the poison, alone
        for _ in range(3):  # each delivery of job 1000 kills the process that got it
            wait_until(lambda: workers[-1].process.poll() is not None, "the poison to kill")
            workers.append(Worker(server, out, *settings))
        wait_until(
            lambda: any(parts[0] == "dead" for parts in workers[-1].lines()),
            "the dead letter",
        )
        asyncio.run(publish(server, range(30, 60), *settings[:4], others=5))
        wait_until(lambda: len(set(workers[-1].started())) >= 61, "the later jobs")
    finally:
        for worker in workers:
            worker.stop()
    lines = workers[-1].lines()  # all workers write to one file
    assert [parts[1] for parts in lines if parts[0] == "start"].count("1000") == 3
    assert [parts for parts in lines if parts[0] == "dead"] == [
        ["dead", "1000", "delivery_limit", "3"]
    ]
    others = {parts[1] for parts in lines if parts[0] == "other"}
    assert others == {str(n) for n in (0, 6, 12, 18, 24, 30, 36, 42, 48, 54)}
    report = check(map(str, [*range(60), 1000]), workers[-1].started())
    assert not report.lost, str(report)


def test_a_slow_consumer_holds_the_publisher_back(server: PrivateServer, tmp_path: Path) -> None:
    limit = ("--max-msgs", "64")
    worker = Worker(server, tmp_path / "worker.log", "--delay", "0.004", *limit)
    try:
        progress: list[tuple[int, int]] = []

        async def publish_and_watch() -> None:
            args = options(
                ["--url", f"nats://127.0.0.1:{server.port}", "--prefix", "fault", "--out", "-",
                 *limit]
            )  # fmt: skip
            bus = Dispatcher(transport=transport(args))
            async with bus:
                for n in range(1500):
                    await bus.publish(Job(n, pad="x" * 512), timeout=LIMIT)
                    if n % 100 == 99:
                        progress.append((n + 1, len(worker.started())))

        asyncio.run(publish_and_watch())
        wait_until(lambda: len(set(worker.started())) >= 1500, "every job to be handled")
    finally:
        worker.stop()
    # the publisher never got further ahead than the stream limit, the consumer's
    # queue (16) and its handlers (4) allow
    for published, handled in progress:
        assert published - handled <= 64 + 16 + 4 + 1, progress
    rss = [int(parts[1]) for parts in worker.lines() if parts[0] == "rss"]
    assert len(rss) >= 10
    assert rss[-1] - rss[len(rss) // 5] < 8 * 1024, rss  # kB: flat after warming up
    report = check(map(str, range(1500)), worker.started())
    assert not report.lost, str(report)


def test_an_unconfirmed_or_cancelled_publish_is_safe_to_retry(
    server: PrivateServer, tmp_path: Path
) -> None:
    import os
    import signal

    import anyio
    import nats as nats_client

    url = f"nats://127.0.0.1:{server.port}"
    assert server.process is not None
    pid = server.process.pid

    async def scenario() -> int:
        bus = Dispatcher(
            transport=NatsTransport(url, group="g", prefix="retry", publish_timeout=0.5)
        )
        async with bus:
            await bus.publish(Job(0))  # the stream exists; the server answers
            one, two = Job(1), Job(2)
            os.kill(pid, signal.SIGSTOP)  # the server stops answering
            await stopped(pid)
            try:
                with pytest.raises(PublishUnconfirmed) as unconfirmed:
                    await bus.publish(one)
                with anyio.move_on_after(0.2) as cancelled:
                    await bus.publish(two)
                assert cancelled.cancelled_caught
            finally:
                os.kill(pid, signal.SIGCONT)
            assert unconfirmed.value.event_type is Job
            await bus.publish(one)  # the same events again: deduplicated by their ids
            await bus.publish(two)
            await bus.publish(Job(1))  # an equal but new event is a new event
        nc = await nats_client.connect(url)
        info = await nc.jetstream().stream_info(
            NatsTransport(url, group="g", prefix="retry").stream_of("fault.nats.jobs")
        )
        await nc.close()
        return info.state.messages

    assert asyncio.run(scenario()) == 4
