"""Faults against a private Redis (a free port, ``--appendonly yes --appendfsync
always``, the test's temporary directory): a consumer SIGKILLed mid-stream, the
server restarted, the connections cut, a poison message. Consumers are separate
processes (``tests/brokers/redis_worker.py``); the history checker compares what
was published with what was handled after every run, and prints its report.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventcore import Dispatcher
from eventcore.transports.redis import RedisTransport

from ._history import Report, check
from ._servers import PrivateServer, private_redis
from .redis_support import LIMIT, raw_client
from .redis_worker import Job

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "faults"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateServer]:
    with private_redis(tmp_path) as redis_server:
        yield redis_server


def url_of(server: PrivateServer) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


class Worker:
    """A consumer process and what it wrote."""

    def __init__(self, server: PrivateServer, out: Path, **options: Any) -> None:
        self.out = out
        argv = [sys.executable, "-m", "tests.brokers.redis_worker"]
        argv += ["--url", url_of(server), "--prefix", PREFIX, "--out", str(out)]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(argv, cwd=ROOT)

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def handled(self) -> list[str]:
        return [line.split()[1] for line in self.lines() if line.startswith("handled ")]

    def consumer(self) -> str:
        wait_for(lambda: any(line.startswith("consumer ") for line in self.lines()))
        return next(line.split()[1] for line in self.lines() if line.startswith("consumer "))

    def ready(self) -> bool:
        """Whether the worker consumes (its dispatcher started)."""
        return "ready" in self.lines()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=LIMIT)


def wait_for(condition: Any, limit: float = LIMIT) -> None:
    """Wait until *condition()* holds; fail after *limit* seconds (a hang guard)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("gave up waiting (a hang guard, not a timing assertion)")
        time.sleep(0.02)


def publish(url: str, numbers: range) -> list[str]:
    """Publish Job(n) for each n; the ids whose publish returned (Redis acknowledged)."""

    async def run() -> list[str]:
        bus = Dispatcher(transport=RedisTransport(url, group="publisher", prefix=PREFIX))
        bus.register(Job)
        ok = []
        async with bus:
            for n in numbers:
                await bus.publish(Job(n))
                ok.append(str(n))
        return ok

    return asyncio.run(run())


def pending_of(url: str, consumer: str) -> set[str]:
    """The jobs pending in *consumer* right now: in flight when it died."""

    async def run() -> set[str]:
        client = raw_client(url)
        try:
            stream = f"{PREFIX}:fault.jobs"
            rows = await client.xpending_range(stream, "workers", "-", "+", 10_000, consumer)
            ids = {row["message_id"] for row in rows}
            entries = await client.xrange(stream)
            return {
                entry[1][b"m"].split(b'"n":')[1].split(b"}")[0].decode()
                for entry in entries
                if entry[0] in ids
            }
        finally:
            await client.aclose()

    return asyncio.run(run())


def report(published: list[str], *workers: Worker) -> Report:
    result = check(published, [n for w in workers for n in w.handled()])
    print(f"history: {result}")
    return result


def test_a_consumer_killed_mid_stream_loses_nothing(server: PrivateServer, tmp_path: Path) -> None:
    url = url_of(server)
    victim = Worker(server, tmp_path / "a.txt", delay=0.005)
    survivor = Worker(server, tmp_path / "b.txt", delay=0.005)
    try:
        # both consume before the jobs go out: on a busy machine the victim started
        # late, the survivor had handled all 300, and the victim never reached 20
        wait_for(lambda: victim.ready() and survivor.ready())
        published = publish(url, range(300))
        wait_for(lambda: len(victim.handled()) >= 20)
        name = victim.consumer()
        victim.kill()
        in_flight = pending_of(url, name)
        published += publish(url, range(300, 400))
        wait_for(lambda: set(published) <= set(victim.handled()) | set(survivor.handled()))
    finally:
        victim.stop()
        survivor.stop()
    report(published, victim, survivor).assert_clean(in_flight=in_flight)


class Publisher:
    """Publishes Job(n), n = first, first + 1, ... from a thread of its own until
    stopped, through a transport with dedup (a publish retried after a lost
    connection is not added twice). Records which publishes returned and which raised
    (indeterminate: they may or may not be on Redis)."""

    def __init__(self, url: str, first: int) -> None:
        self.url = url
        self.next = first
        self.ok: list[str] = []
        self.indeterminate: list[str] = []
        self.stopping = threading.Event()
        # a daemon: one that cannot stop fails stop() below, not the interpreter's exit
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)
        self.thread.start()

    async def run(self) -> None:
        transport = RedisTransport(self.url, group="publisher", prefix=PREFIX, dedup=60.0)
        bus = Dispatcher(transport=transport)
        bus.register(Job)
        async with bus:
            while not self.stopping.is_set():
                n, self.next = self.next, self.next + 1
                try:
                    await bus.publish(Job(n))
                except Exception:
                    self.indeterminate.append(str(n))
                else:
                    self.ok.append(str(n))
                await asyncio.sleep(0.001)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=LIMIT)
        assert not self.thread.is_alive(), f"the publisher did not stop within {LIMIT} s"


def check_run(publisher: Publisher, worker: Worker, in_flight: set[str]) -> None:
    """Nothing acknowledged lost, nothing made up (indeterminate publishes may be
    handled or not), duplicates only among the in-flight."""
    handled = worker.handled()
    maybe = set(publisher.indeterminate)
    print(f"history: {check(publisher.ok, handled)}; indeterminate: {len(maybe)}")
    assert set(handled) <= set(publisher.ok) | maybe
    check(publisher.ok, [n for n in handled if n not in maybe]).assert_clean(in_flight=in_flight)


def test_a_server_killed_and_restarted_loses_nothing(
    server: PrivateServer, tmp_path: Path
) -> None:
    url = url_of(server)
    worker = Worker(server, tmp_path / "a.txt", delay=0.002)
    publisher = Publisher(url, 0)
    try:
        wait_for(lambda: len(worker.handled()) >= 50)
        server.stop(kill=True)  # SIGKILL: what Redis acknowledged was fsynced first
        server.start()
        in_flight = set(worker.handled())  # handled before, their XACK maybe lost
        done = len(publisher.ok) + 100
        wait_for(lambda: len(publisher.ok) >= done)
        publisher.stop()
        wait_for(lambda: set(publisher.ok) <= set(worker.handled()))
    finally:
        publisher.stop()
        worker.stop()
    check_run(publisher, worker, in_flight)


def test_cut_connections_reconnect_and_lose_nothing(server: PrivateServer, tmp_path: Path) -> None:
    url = url_of(server)
    worker = Worker(server, tmp_path / "a.txt", delay=0.002)
    publisher = Publisher(url, 0)

    async def cut() -> None:
        client = raw_client(url)
        try:
            await client.execute_command("CLIENT", "KILL", "TYPE", "normal")
        finally:
            await client.aclose()

    in_flight: set[str] = set()
    try:
        for _ in range(3):
            done = len(worker.handled()) + 50
            wait_for(lambda done=done: len(worker.handled()) >= done)
            asyncio.run(cut())  # every client: the worker's and the publisher's
            in_flight |= set(worker.handled())
        publisher.stop()
        wait_for(lambda: set(publisher.ok) <= set(worker.handled()))
    finally:
        publisher.stop()
        worker.stop()
    check_run(publisher, worker, in_flight)


def dead_letters(url: str) -> dict[str, bytes]:
    """The jobs in the dead-letter stream, and why each is there."""

    async def run() -> dict[str, bytes]:
        client = raw_client(url)
        try:
            entries = await client.xrange(f"{PREFIX}:dead:fault.jobs")
        finally:
            await client.aclose()
        return {
            fields[b"m"].split(b'"n":')[1].split(b"}")[0].decode(): fields[b"reason"]
            for _, fields in entries
        }

    return asyncio.run(run())


def test_a_poison_message_is_dead_lettered_after_max_deliver(
    server: PrivateServer, tmp_path: Path
) -> None:
    url = url_of(server)
    published = publish(url, range(50))
    options = {"crash_on": 7, "max_deliver": 2, "claim_idle": 0.3}
    workers: list[Worker] = []
    in_flight: set[str] = set()  # pending in a consumer when it died
    try:
        while "7" not in dead_letters(url):
            assert len(workers) < 5, "the poison message was never dead-lettered"
            worker = Worker(server, tmp_path / f"w{len(workers)}.txt", **options)
            workers.append(worker)
            wait_for(lambda w=worker: w.process.poll() is not None or "7" in dead_letters(url))
            if worker.process.poll() is not None:
                in_flight |= pending_of(url, worker.consumer())

        def settled() -> bool:
            done = {n for w in workers for n in w.handled()} | set(dead_letters(url))
            return set(published) <= done

        wait_for(settled)
    finally:
        for worker in workers:
            worker.stop()
    dead = dead_letters(url)
    assert dead["7"] == b"delivery_limit"
    assert len(workers) == 3  # delivered max_deliver=2 times, dead-lettered on the third
    # besides the poison, only events in flight in a consumer that died with it
    assert set(dead) - {"7"} <= in_flight
    assert set(dead.values()) == {b"delivery_limit"}
    handled = [n for w in workers for n in w.handled()]
    print(f"history: {check(published, handled)}; dead-lettered: {sorted(dead)}")
    # the dead-lettered ones aside (maybe handled before a crash lost their XACK),
    # nothing lost, duplicates only among the in-flight
    check(
        [n for n in published if n not in dead], [n for n in handled if n not in dead]
    ).assert_clean(in_flight=in_flight)
