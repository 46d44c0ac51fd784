"""A consumer process of the RabbitMQ fault tests: ``python -m tests.brokers.rabbit_worker``.

It consumes ``fault.rabbit.jobs`` (and the keyed ``fault.rabbit.accounts``) from
the node at ``--url`` and appends one line per event to ``--out``, written through
at once so a SIGKILL loses nothing written:

* ``start <n>`` when a job's handler begins, ``key <account> <n>`` for a keyed event;
* ``dead <n> <reason> <attempts>`` for a dead letter;
* ``ready`` on stdout once consuming.

``--crash-on N`` makes the process die (``os._exit``) when it gets job N: a poison
message. SIGTERM is a clean shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from typing import TextIO

from eventcore import DeadLetter, Dispatcher
from eventcore.transports.rabbitmq import RabbitMQTransport
from eventcore.wire import event


@event("fault.rabbit.jobs")
@dataclass(frozen=True)
class Job:
    """One job; ``n`` is unique per publish."""

    n: int


@event("fault.rabbit.accounts")
@dataclass(frozen=True)
class Entry:
    """A keyed event: the entries of one account must be handled in order."""

    account: str
    n: int


def transport_for(url: str, prefix: str, max_deliver: int = 5) -> RabbitMQTransport:
    """The transport of the fault tests' service (the workers and the test's producer)."""
    return RabbitMQTransport(
        url, group="workers", prefix=prefix, partitions=4, max_deliver=max_deliver,
        publish_timeout=2.0, connect_timeout=2.0,
    )  # fmt: skip


def service(url: str, prefix: str, max_deliver: int = 5) -> Dispatcher:
    """A dispatcher of the service, with the keyed type configured."""
    transport = transport_for(url, prefix, max_deliver)
    bus = Dispatcher(transport=transport, queue_size=16, concurrency=4)
    bus.configure(Entry, key=lambda entry: entry.account)
    return bus


class Recorder:
    """Writes what the handlers see, one line each."""

    def __init__(self, out: TextIO, delay: float, crash_on: int) -> None:
        self.out = out
        self.delay = delay
        self.crash_on = crash_on

    async def job(self, job: Job) -> None:
        self.out.write(f"start {job.n}\n")
        if job.n == self.crash_on:
            os._exit(3)
        if self.delay:
            await asyncio.sleep(self.delay)

    async def entry(self, entry: Entry) -> None:
        self.out.write(f"key {entry.account} {entry.n}\n")
        if self.delay:
            await asyncio.sleep(self.delay)

    async def dead(self, letter: DeadLetter) -> None:
        n = getattr(letter.event, "n", "?")
        self.out.write(f"dead {n} {letter.reason.value} {letter.attempts}\n")


async def main(argv: list[str]) -> None:
    """Consume until SIGTERM (a clean shutdown) or SIGKILL."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-deliver", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--crash-on", type=int, default=-1)
    args = parser.parse_args(argv)
    with open(args.out, "a", buffering=1) as out:  # noqa: ASYNC230 - for the process's life
        recorder = Recorder(out, args.delay, args.crash_on)
        bus = service(args.url, args.prefix, args.max_deliver)
        bus.subscribe(Job, recorder.job)
        bus.subscribe(Entry, recorder.entry)
        bus.subscribe(DeadLetter, recorder.dead)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with bus:
            print("ready", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
