"""RabbitMQ for the tests: the machine's shared node (plain integration tests, with
unique names, deleted afterwards) or a private node on free ports in a temporary
directory (the fault tests, which kill and restart it).

A private node follows the recipe of the project's services notes: the server
drops to the ``rabbitmq`` user, so its directory is that user's; its node name,
AMQP port and inter-node port are its own, so it never meets the shared node.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiormq
import pytest

from eventcore.transports.rabbitmq import RabbitMQTransport

from ._servers import answers, brokers_required, free_port

RABBITMQ_URL = os.environ.get("EVENTCORE_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: how long a private node may take to boot (seconds; a loaded machine is slow)
BOOT_LIMIT = 90.0


def unique_prefix() -> str:
    """A prefix of exchanges and queues that no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


def _unavailable(why: str) -> None:
    if brokers_required():
        pytest.fail(f"{why}, and CI=true / EVENTCORE_REQUIRE_BROKERS=1 requires it")
    pytest.skip(f"{why}: the RabbitMQ tests need it")


def require_shared() -> str:
    """The shared node's URL; skip (fail under CI) when nothing answers there."""
    host_port = RABBITMQ_URL.rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    if not answers(host or "127.0.0.1", int(port or 5672)):
        _unavailable(f"no RabbitMQ answers on {host_port}")
    return RABBITMQ_URL


class PrivateRabbit:
    """A RabbitMQ node of the tests' own: ``start()``, ``kill()`` (SIGKILL),
    ``restart()``, ``stop()``; its state survives a restart (same directory)."""

    def __init__(self) -> None:
        if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
            _unavailable("rabbitmq-server is not on PATH")
        self.directory = Path(tempfile.mkdtemp(prefix="eventcore-rabbit-"))
        self.node = f"ec{os.getpid()}x{uuid.uuid4().hex[:6]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        while self.dist_port == self.port:
            self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.log = self.directory / "server.log"
        self._server: subprocess.Popen[bytes] | None = None
        for sub in ("mnesia", "log"):
            (self.directory / sub).mkdir()
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq.conf").write_text("")
        shutil.chown(self.directory, "rabbitmq", "rabbitmq")
        for path in self.directory.rglob("*"):
            shutil.chown(path, "rabbitmq", "rabbitmq")

    def _environment(self) -> dict[str, str]:
        d = self.directory
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "feature_flags"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
        }

    def start(self) -> None:
        """Boot the node and wait until it accepts AMQP connections."""
        pid_file = self.directory / "pid"
        pid_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self._server = subprocess.Popen(
                ["rabbitmq-server"],
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + BOOT_LIMIT
        while not answers("127.0.0.1", self.port, 0.2):
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the private RabbitMQ did not start: {self._tail()}")
            time.sleep(0.1)
        self._ctl("await_startup", "--timeout", str(int(BOOT_LIMIT)))

    def _tail(self) -> str:
        logs = [self.log, *sorted((self.directory / "log").glob("*.log"))]
        return " | ".join(p.read_text(errors="replace")[-1500:] for p in logs if p.exists())

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            env=self._environment(),
            check=True,
            capture_output=True,
            timeout=BOOT_LIMIT,
        )

    @property
    def pid(self) -> int | None:
        """The Erlang VM's process id (the server's own; the launcher is a shell)."""
        return self._beam()

    def _beam(self) -> int | None:
        try:
            return int((self.directory / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the node (a crash): nothing is flushed beyond what it already synced."""
        beam = self._beam()
        if beam is not None:
            try:
                os.kill(beam, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._server is not None:
            try:
                os.killpg(self._server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._server.wait(timeout=30)
            self._server = None
        deadline = time.monotonic() + 30
        while answers("127.0.0.1", self.port, 0.1) and time.monotonic() < deadline:
            time.sleep(0.05)
        # epmd forgets the node when its connection closes; wait for that
        while beam is not None and Path(f"/proc/{beam}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        """SIGKILL the node and boot it again on the same ports and directory."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """End the node (killed: its data is thrown away) and remove its directory."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@asynccontextmanager
async def rabbit_transports(url: str) -> AsyncIterator[Callable[..., RabbitMQTransport]]:
    """A factory of transports on one unique prefix; their queues and exchanges are
    deleted at the end."""
    prefix = unique_prefix()
    made: list[RabbitMQTransport] = []

    def make(group: str = "service", **options: Any) -> RabbitMQTransport:
        options.setdefault("prefix", prefix)
        transport = RabbitMQTransport(url, group=group, **options)
        made.append(transport)
        return transport

    try:
        yield make
    finally:
        queues = {queue for transport in made for queue in transport.declared()}
        await delete(url, {t.prefix for t in made} or {prefix}, queues)


async def delete(url: str, prefixes: set[str], queues: set[str]) -> None:
    """Delete *queues* and the exchanges of *prefixes* (the test's own)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for queue in sorted(queues):
            await channel.queue_delete(queue)
        for prefix in sorted(prefixes):
            await channel.exchange_delete(prefix)
            await channel.exchange_delete(f"{prefix}.dead")
    finally:
        await connection.close()


PUBLISHER = "publisher"


class RabbitKit:
    """Fresh RabbitMQ transports under a prefix (exchange) of their own, for the broker
    contract suite. The suite's publisher feeds every consumer group made in its
    namespace (``groups=``), as a real service names the services that consume its
    events; without one, it feeds its own group."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: dict[str, list[RabbitMQTransport]] = {}

    def transport(self, namespace: str, group: str, *, capacity: int | None = None) -> Any:
        made = self.made.setdefault(namespace, [])
        transport = RabbitMQTransport(self.url, group=group, prefix=namespace, max_length=capacity)
        made.append(transport)
        consumers = tuple(dict.fromkeys(t.group for t in made if t.group != PUBLISHER))
        for publisher in made:  # made before any of them starts
            if publisher.group == PUBLISHER:
                publisher.groups = consumers or (PUBLISHER,)
        return transport

    async def write_raw(self, namespace: str, name: str, data: bytes) -> None:
        connection = await aiormq.connect(self.url)
        try:
            channel = await connection.channel()
            await channel.basic_publish(data, exchange=namespace, routing_key=name)
        finally:
            await connection.close()

    def cleanup(self, namespace: str) -> None:
        made = self.made.pop(namespace, [])
        queues = {queue for transport in made for queue in transport.declared()}
        asyncio.run(delete(self.url, {namespace}, queues))
