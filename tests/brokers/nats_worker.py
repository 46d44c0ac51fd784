"""A consumer process for the NATS fault tests: ``python -m tests.brokers.nats_worker``.

It consumes ``fault.nats.jobs`` (and ``fault.nats.others``) from the given server
and appends one line per event to ``--out``, flushed at once so a SIGKILL loses
nothing written: ``start <n>`` when a handler begins, ``other <n>`` for the other
type, ``dead <n> <reason> <attempts>`` for a dead letter, ``rss <kB>`` now and
then. With ``--crash-on N`` it dies (``os._exit``) when it gets job N: a poison
message. It prints ``ready`` once started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys
from dataclasses import dataclass

from eventcore import DeadLetter, Dispatcher
from eventcore.transports.nats import NatsTransport
from eventcore.wire import event


@event("fault.nats.jobs")
@dataclass(frozen=True)
class Job:
    """One job of the fault tests; ``n`` is unique per publish."""

    n: int
    pad: str = ""


@event("fault.nats.others")
@dataclass(frozen=True)
class Other:
    """Another type, to show it keeps flowing past a poison job."""

    n: int


def transport(args: argparse.Namespace) -> NatsTransport:
    """The transport both the worker and the test's producer use."""
    return NatsTransport(
        args.url,
        group=args.group,
        prefix=args.prefix,
        ack_wait=args.ack_wait,
        max_deliver=args.max_deliver,
        max_msgs=args.max_msgs,
        fetch_wait=0.2,
        publish_timeout=2.0,
    )


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--group", default="workers")
    parser.add_argument("--ack-wait", type=float, default=2.0)
    parser.add_argument("--max-deliver", type=int, default=5)
    parser.add_argument("--max-msgs", type=int, default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--crash-on", type=int, default=-1)
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    """Consume until SIGTERM (a clean shutdown) or SIGKILL."""
    out = open(args.out, "a", buffering=1)  # noqa: SIM115, ASYNC230 - for the process's life
    bus = Dispatcher(transport=transport(args), queue_size=16, concurrency=4)

    @bus.on(Job)
    async def handle(job: Job) -> None:
        out.write(f"start {job.n}\n")
        if job.n == args.crash_on:
            os._exit(3)
        if args.delay:
            await asyncio.sleep(args.delay)
        if job.n % 100 == 0:
            out.write(f"rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\n")

    @bus.on(Other)
    async def other(event: Other) -> None:
        out.write(f"other {event.n}\n")

    @bus.on(DeadLetter)
    async def dead(letter: DeadLetter) -> None:
        n = getattr(letter.event, "n", "?")
        out.write(f"dead {n} {letter.reason.value} {letter.attempts}\n")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with bus:
        print("ready", flush=True)
        await stop.wait()
    out.close()


if __name__ == "__main__":
    asyncio.run(main(options(sys.argv[1:])))
