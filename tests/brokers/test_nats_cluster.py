"""A 3-node JetStream cluster on free loopback ports (private servers, never the
shared one), a type with ``replicas=3``, and its stream's leader SIGKILLed
mid-stream (issue 20, defect 7 and "clustered NATS").

What must hold: two services starting at once on the fresh cluster both start
(start waits for the new stream's leader, up to ``connect_timeout``); while the
leader is gone, ``publish`` raises only eventcore errors (no raw
``nats.errors.TimeoutError``), subject to the overflow policy and ``timeout=``;
nothing confirmed is lost; and the flow resumes after the election. Runs on
asyncio only (one cluster, well under a minute).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import nats
import pytest

from eventcore import Dispatcher, EventcoreError
from eventcore.transports.nats import NatsTransport
from eventcore.wire import event

from ._servers import PrivateServer, free_port

pytestmark = pytest.mark.anyio

LIMIT = 50.0
NODES = ("n1", "n2", "n3")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@event("tests.cluster.job")
@dataclass(frozen=True)
class Job:
    n: int


class Cluster:
    """Three ``nats-server -js`` nodes routed to each other."""

    def __init__(self, directory: Path) -> None:
        routes = {name: free_port() for name in NODES}
        self.nodes: dict[str, PrivateServer] = {}
        for name in NODES:
            others = ",".join(f"nats://127.0.0.1:{routes[o]}" for o in NODES if o != name)
            home = directory / name
            home.mkdir()
            self.nodes[name] = PrivateServer(
                "nats-server",
                [
                    "-js", "-a", "127.0.0.1", "-p", "{port}", "-sd", "{dir}",
                    "--name", name, "--cluster_name", "c1",
                    "--cluster", f"nats://127.0.0.1:{routes[name]}", "--routes", others,
                ],
                home,
            )  # fmt: skip

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{node.port}" for node in self.nodes.values())

    def __enter__(self) -> Cluster:
        for node in self.nodes.values():
            node.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes.values():
            node.stop(kill=True)

    async def leader_of(self, stream: str) -> str:
        nc = await nats.connect(servers=self.url.split(","))
        try:
            info = await nc.jetstream(timeout=2.0).stream_info(stream)
            assert info.cluster is not None
            assert info.cluster.leader is not None
            return info.cluster.leader
        finally:
            await nc.close()

    def kill(self, name: str) -> None:
        process = self.nodes[name].process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path) as running:
        yield running


def transport_of(bus: Dispatcher) -> NatsTransport:
    found = bus.transport_of(Job)
    assert isinstance(found, NatsTransport)
    return found


def transport(cluster: Cluster, group: str) -> NatsTransport:
    return NatsTransport(
        cluster.url,
        group=group,
        prefix="cluster",
        replicas=3,
        connect_timeout=20.0,
        publish_timeout=1.0,
        fetch_wait=0.2,
        ack_wait=10.0,
    )


async def test_the_stream_leader_killed_mid_stream_loses_nothing_confirmed(
    cluster: Cluster,
) -> None:
    consumer = Dispatcher(transport=transport(cluster, "svc"))
    seen: set[int] = set()
    consumer.subscribe(Job, lambda job: seen.add(job.n))
    publisher = Dispatcher(transport=transport(cluster, "svc"))
    publisher.configure(Job)
    confirmed: list[int] = []
    errors: list[BaseException] = []

    async def publish_until(count: int) -> None:
        n = len(confirmed) + len(errors)
        while len(confirmed) < count:
            n += 1
            try:
                if await publisher.publish(Job(n), timeout=3.0):
                    confirmed.append(n)
            except Exception as exc:
                errors.append(exc)
                await anyio.sleep(0.05)

    async def run(bus: Dispatcher, started: anyio.Event, done: anyio.Event) -> None:
        async with bus:
            started.set()
            await done.wait()

    done = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as services:
            # two services start at once on the fresh cluster: the stream has no leader yet
            ready = [anyio.Event(), anyio.Event()]
            services.start_soon(run, consumer, ready[0], done)
            services.start_soon(run, publisher, ready[1], done)
            for started in ready:
                await started.wait()
            try:
                await publish_until(100)
                stream = transport_of(consumer).stream_of("tests.cluster.job")
                cluster.kill(await cluster.leader_of(stream))
                killed_at = time.monotonic()
                await publish_until(200)  # the flow resumes once a new leader is elected
                resumed_after = time.monotonic() - killed_at
                while not set(confirmed) <= seen:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            finally:
                done.set()
    assert set(confirmed) <= seen
    assert all(isinstance(exc, EventcoreError) for exc in errors), errors
    print(f"flow resumed {resumed_after:.1f} s after the kill; {len(errors)} typed errors")
