"""``python -m bench.perf_guard``: instructions per event against committed budgets.

Wall-clock ratios on a shared 2-core machine vary by 2x between runs, so a timed
check would either flake or catch nothing. This guard counts instructions
instead: each fixed workload runs under ``valgrind --tool=callgrind`` (with
``PYTHONHASHSEED=0``, on asyncio), which gives the same count on every run on the
same machine and Python.

How one workload is measured, in one process: set the dispatcher up, warm it up
(every code path specialized, every type's state created), then publish *N*
events and drain, then *2N* events and drain. Callgrind dumps its counters at
each marker between these phases (a call of ``os.getppid()``, which nothing else
makes: ``--dump-before=getppid``), so the phases are counted apart and

    instructions per event = (count of the 2N phase - count of the N phase) / N

which cancels start-up, imports, the set-up and each phase's fixed costs (its
first wake-up, its drain). The budgets are in ``bench/perf-budgets.json``, per
Python minor version (instruction counts differ between interpreters); a
workload fails when it costs more than ``tolerance`` (5 %) above its budget.
The child runs with a fixed environment (the environment's size moves the
stack, and the round trip's count with it by ~1 %); where the checkout lives
(the length of its path) may move the counts a little too.

Commands:

- ``python -m bench.perf_guard`` (``make perf-guard``): measure and compare;
  exit status 1 when a workload is over its budget. Skips, with a message and
  status 0, where valgrind is missing or no budgets exist for this Python.
- ``python -m bench.perf_guard --update``: measure and write the figures as the
  new budgets (re-baseline after a change that is meant to cost or save
  instructions; commit the JSON with the change).
- ``python -m bench.perf_guard --workload NAME`` runs one workload in this
  process without valgrind (what each callgrind run executes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUDGETS = HERE / "perf-budgets.json"
TOLERANCE = 0.05


@dataclass(frozen=True)
class Workload:
    """A fixed workload: *n* events per measured step (the guard runs n and 2n)."""

    name: str
    title: str
    n: int
    n_types: int = 1
    n_handlers: int = 1
    roundtrip: bool = False
    #: a reference figure (the bare runtime), printed beside, with no budget
    reference: bool = False


WORKLOADS = (
    Workload("1type", "1 type, 1 handler", 4_000),
    Workload("fanout10", "fan-out 10 handlers", 2_000, n_handlers=10),
    Workload("types1000", "1,000 types round-robin", 4_000, n_types=1_000),
    Workload("roundtrip", "publish_and_wait round trip", 2_000, roundtrip=True),
    Workload("bare-1type", "bare asyncio.Queue, 1 type (reference)", 4_000, reference=True),
    Workload("anyio-1type", "anyio memory stream, 1 type (reference)", 4_000, reference=True),
    Workload(
        "bare-loop-fanout10",
        "bare `await handler(ev)` x 10 (reference)",
        2_000,
        n_handlers=10,
        reference=True,
    ),
    Workload(
        "bare-roundtrip",
        "bare asyncio.Queue + future (reference)",
        2_000,
        roundtrip=True,
        reference=True,
    ),
)
BY_NAME = {w.name: w for w in WORKLOADS}


# -- the workloads (run inside callgrind) ------------------------------------------------


def _marker() -> None:
    """Callgrind dumps its counters here (``--dump-before=getppid``)."""
    os.getppid()


class _Ev:
    __slots__ = ()


def _run_workload(workload: Workload) -> None:
    """Warm up, then the N and the 2N phase, each ended by a marker."""
    import anyio

    types = [type(f"Ev{i}", (_Ev,), {"__slots__": ()}) for i in range(workload.n_types)]
    calls = 0

    async def handler(event: Any) -> None:
        nonlocal calls
        calls += 1

    async def main() -> None:
        if workload.reference and workload.name.startswith("bare-loop"):
            publish, drain, close = _bare_loop(workload, handler)
        elif workload.reference and workload.name.startswith("anyio"):
            publish, drain, close = await _anyio_stream(handler)
        elif workload.reference:
            publish, drain, close = await _bare(workload, handler)
        else:
            publish, drain, close = await _eventcore(workload, types, handler)
        try:
            n_types = len(types)
            warm_up = max(2 * n_types, workload.n // 2)
            for phase in (warm_up, workload.n, 2 * workload.n):
                events = [types[i % n_types]() for i in range(phase)]
                _marker()  # the phase starts (the events exist already)
                for event in events:
                    await publish(event)
                await drain()
                _marker()  # the phase ends
                del events
        finally:
            await close()

    anyio.run(main, backend="asyncio")
    expected = (max(2 * len(types), workload.n // 2) + 3 * workload.n) * workload.n_handlers
    if calls != expected:
        raise SystemExit(f"{workload.name}: {calls} handler calls, expected {expected}")


Publish = Callable[[Any], Awaitable[Any]]
Step = Callable[[], Awaitable[None]]


async def _eventcore(
    workload: Workload, types: Sequence[type], handler: Callable[[Any], Awaitable[None]]
) -> tuple[Publish, Step, Step]:
    from contextlib import AsyncExitStack

    from eventcore import Dispatcher

    bus = Dispatcher(queue_size=1024)
    for cls in types:
        for _ in range(workload.n_handlers):
            bus.subscribe(cls, handler)
    stack = AsyncExitStack()
    await stack.enter_async_context(bus)
    publish: Publish = bus.publish_and_wait if workload.roundtrip else bus.publish
    return publish, bus.drain, stack.aclose


def _bare_loop(
    workload: Workload, handler: Callable[[Any], Awaitable[None]]
) -> tuple[Publish, Step, Step]:
    handlers = (handler,) * workload.n_handlers

    async def fan_out(event: Any) -> None:
        for each in handlers:
            await each(event)

    async def nothing() -> None:
        pass

    return fan_out, nothing, nothing


async def _anyio_stream(
    handler: Callable[[Any], Awaitable[None]],
) -> tuple[Publish, Step, Step]:
    """The bench's anyio floor: ``send_nowait`` (``send`` when full), ``receive_nowait``."""
    import anyio

    send, receive = anyio.create_memory_object_stream[Any](1024)
    would_block = anyio.WouldBlock
    handled = 0
    idle = anyio.Event()
    wanted = 0

    async def publish(event: Any) -> None:
        nonlocal wanted
        wanted += 1
        try:
            send.send_nowait(event)
        except would_block:
            await send.send(event)

    async def worker() -> None:
        nonlocal handled, idle
        while True:
            try:
                event = receive.receive_nowait()
            except would_block:
                try:
                    event = await receive.receive()
                except anyio.EndOfStream:
                    return
            except anyio.EndOfStream:
                return
            await handler(event)
            handled += 1
            if handled == wanted:
                idle.set()

    async def drain() -> None:
        nonlocal idle
        if handled < wanted:
            await idle.wait()
        idle = anyio.Event()

    group = anyio.create_task_group()
    await group.__aenter__()
    group.start_soon(worker)

    async def close() -> None:
        await send.aclose()
        await group.__aexit__(None, None, None)
        await receive.aclose()

    return publish, drain, close


async def _bare(
    workload: Workload, handler: Callable[[Any], Awaitable[None]]
) -> tuple[Publish, Step, Step]:
    import asyncio

    queue: asyncio.Queue[Any] = asyncio.Queue(1024)
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        while True:
            item = await queue.get()
            if workload.roundtrip:
                await handler(item[0])
                item[1].set_result(None)
            else:
                await handler(item)
            queue.task_done()

    async def publish_and_wait(event: Any) -> None:
        future = loop.create_future()
        await queue.put((event, future))
        await future

    task = asyncio.create_task(worker())

    async def close() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return (publish_and_wait if workload.roundtrip else queue.put), queue.join, close


# -- measuring ---------------------------------------------------------------------------

_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def parse_dumps(paths: Sequence[Path]) -> list[int]:
    """The instruction count of each callgrind dump, in dump order.

    Dumps are named ``base.1``, ``base.2``, ... (the markers) and ``base`` (the end
    of the program, last).
    """

    def order(path: Path) -> int:
        suffix = path.name.rsplit(".", 1)[-1]
        return int(suffix) if suffix.isdigit() else sys.maxsize

    counts = []
    for path in sorted(paths, key=order):
        found = _TOTALS.search(path.read_text())
        if found is None:
            raise ValueError(f"no totals in callgrind dump {path.name}")
        counts.append(int(found.group(1)))
    return counts


def per_event(counts: Sequence[int], n: int) -> float:
    """Instructions per event from the dumps of one run.

    The markers split the run into: start-up and set-up | warm-up | between |
    the N phase | between | the 2N phase | the end (6 markers, 7 dumps).
    """
    if len(counts) != 7:
        raise ValueError(
            f"expected 7 callgrind dumps (6 markers and the end), got {len(counts)}: "
            "does this valgrind see the getppid marker?"
        )
    return (counts[5] - counts[3]) / n


def measure(workload: Workload, valgrind: str) -> float:
    """Run *workload* under callgrind; return its instructions per event."""
    with tempfile.TemporaryDirectory(prefix="perf-guard-") as tmp:
        base = Path(tmp) / "callgrind.out"
        # A fixed environment: its size moves the stack, and with it the counts (by
        # ~1 % on the round trip when the caller's environment grew by 3 KB).
        env = {
            "PATH": "/usr/bin:/bin",
            "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        command = [
            valgrind,
            "--tool=callgrind",
            f"--callgrind-out-file={base}",
            "--dump-before=getppid",
            "--collect-systime=no",
            sys.executable,
            "-m",
            "bench.perf_guard",
            "--workload",
            workload.name,
        ]
        done = subprocess.run(
            command, cwd=HERE.parent, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{workload.name} failed under callgrind (status {done.returncode}):\n"
                + done.stderr[-3000:]
            )
        return per_event(parse_dumps(list(Path(tmp).glob("callgrind.out*"))), workload.n)


def python_key() -> str:
    """Budgets are kept per interpreter: ``CPython 3.11``."""
    return f"{platform.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]}"


def load_budgets(path: Path = BUDGETS) -> dict[str, Any]:
    """The committed budgets file (an empty one when it does not exist)."""
    if not path.exists():
        return {"tolerance": TOLERANCE, "budgets": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@dataclass(frozen=True)
class Verdict:
    """One workload's figure beside its budget."""

    name: str
    title: str
    measured: float
    budget: float | None
    tolerance: float

    @property
    def headroom(self) -> float | None:
        """How far below the budget (positive) or above it (negative), as a fraction."""
        if self.budget is None:
            return None
        return 1.0 - self.measured / self.budget

    @property
    def over(self) -> bool:
        """Whether the figure exceeds the budget by more than the tolerance."""
        return self.budget is not None and self.measured > self.budget * (1.0 + self.tolerance)


def compare(
    measured: dict[str, float], budgets: dict[str, float], tolerance: float
) -> list[Verdict]:
    """Each measured workload beside its budget (None for the reference workloads)."""
    return [
        Verdict(
            name,
            BY_NAME[name].title if name in BY_NAME else name,
            value,
            None if BY_NAME.get(name, WORKLOADS[0]).reference else budgets.get(name),
            tolerance,
        )
        for name, value in measured.items()
    ]


def table(verdicts: Sequence[Verdict]) -> str:
    """The verdicts as a text table."""
    lines = [
        f"{'workload':<42} {'instr/event':>12} {'budget':>10} {'headroom':>12}  verdict",
    ]
    for v in verdicts:
        if v.budget is None or v.headroom is None:
            reference = v.name in BY_NAME and BY_NAME[v.name].reference
            budget, headroom, word = "-", "-", "reference" if reference else "no budget"
        else:
            budget = f"{v.budget:,.0f}"
            headroom = (
                "at budget"
                if abs(v.headroom) < 0.0005
                else f"{abs(v.headroom):.1%} " + ("under" if v.headroom >= 0 else "over")
            )
            word = "OVER BUDGET" if v.over else "ok"
        lines.append(f"{v.title:<42} {v.measured:>12,.0f} {budget:>10} {headroom:>12}  {word}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every workload; compare with (or, ``--update``, write) the budgets."""
    parser = argparse.ArgumentParser(prog="python -m bench.perf_guard", description=__doc__)
    parser.add_argument("--update", action="store_true", help="write the figures as budgets")
    parser.add_argument("--workload", help="run one workload here, without valgrind")
    parser.add_argument("--only", nargs="*", default=(), help="workload names to measure")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time")
    args = parser.parse_args(argv)

    if args.workload:
        _run_workload(BY_NAME[args.workload])
        return 0

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print(
            "perf-guard SKIPPED: valgrind is not installed (apt-get install valgrind); "
            "instructions per event were not checked"
        )
        return 0
    data = load_budgets()
    key = python_key()
    budgets: dict[str, float] = data["budgets"].get(key, {})
    tolerance = float(data.get("tolerance", TOLERANCE))
    if not budgets and not args.update:
        print(
            f"perf-guard SKIPPED: no budgets for {key} in {BUDGETS.name} (they are kept per "
            "interpreter); record them with `python -m bench.perf_guard --update`"
        )
        return 0

    chosen = [w for w in WORKLOADS if not args.only or w.name in args.only]
    started = time.monotonic()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        figures = list(pool.map(lambda w: measure(w, valgrind), chosen))
    measured = {w.name: figure for w, figure in zip(chosen, figures, strict=True)}
    elapsed = time.monotonic() - started

    if args.update:
        updated = {
            name: math.ceil(value)
            for name, value in measured.items()
            if not BY_NAME[name].reference
        }
        data.setdefault("budgets", {})[key] = {**budgets, **updated}
        data["tolerance"] = tolerance
        BUDGETS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        budgets = data["budgets"][key]
    verdicts = compare(measured, budgets, tolerance)
    print(
        f"perf-guard: instructions per event under callgrind ({key}, asyncio, "
        f"PYTHONHASHSEED=0; fail above budget + {tolerance:.0%}; {elapsed:.0f} s)"
    )
    print(table(verdicts))
    over = [v for v in verdicts if v.over]
    if args.update:
        print(f"wrote the budgets of {key} to {BUDGETS.name}")
        return 0
    if over:
        names = ", ".join(v.name for v in over)
        print(
            f"perf-guard FAILED: {names} over budget. Find the cause (bench/PROFILE.md), or "
            "if the cost is intended, re-baseline with `python -m bench.perf_guard --update` "
            "and commit bench/perf-budgets.json with the reason."
        )
        return 1
    slack = [v for v in verdicts if v.headroom is not None and v.headroom > tolerance]
    if slack:
        print(
            "perf-guard: "
            + ", ".join(v.name for v in slack)
            + " well under budget: lower the budgets with `python -m bench.perf_guard --update`"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
