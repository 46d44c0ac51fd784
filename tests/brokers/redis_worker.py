"""A consumer process for the Redis fault tests: ``python -m tests.brokers.redis_worker``.

It consumes ``fault.jobs`` events from the given Redis and appends one line per
handled event to ``--out`` (``handled <n>``, flushed at once, so a SIGKILL loses
nothing written), after a first line ``consumer <name>`` and, once it consumes,
``ready``. With ``--crash-on N`` it dies (``os._exit``) when it gets event N: a
poison message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from dataclasses import dataclass

from eventcore import Dispatcher
from eventcore.transports.redis import RedisTransport
from eventcore.wire import event


@event("fault.jobs", version=1)
@dataclass(frozen=True)
class Job:
    """One job of the fault tests; ``n`` is unique per publish."""

    n: int


def options() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--group", default="workers")
    parser.add_argument("--claim-idle", type=float, default=1.0)
    parser.add_argument("--max-deliver", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--crash-on", type=int, default=-1)
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    """Consume until SIGTERM (a clean shutdown) or SIGKILL."""
    transport = RedisTransport(
        args.url,
        group=args.group,
        prefix=args.prefix,
        claim_idle=args.claim_idle,
        max_deliver=args.max_deliver,
    )
    bus = Dispatcher(transport=transport, queue_size=16, concurrency=4)
    bus.register(Job)
    out = open(args.out, "a", buffering=1)  # noqa: SIM115, ASYNC230 - for the process's life
    out.write(f"consumer {transport.consumer}\n")

    @bus.on(Job)
    async def handle(job: Job) -> None:
        if job.n == args.crash_on:
            os._exit(3)
        if args.delay:
            await asyncio.sleep(args.delay)
        out.write(f"handled {job.n}\n")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with bus:
        out.write("ready\n")  # consuming from here on
        await stop.wait()
    out.close()


if __name__ == "__main__":
    asyncio.run(main(options()))
