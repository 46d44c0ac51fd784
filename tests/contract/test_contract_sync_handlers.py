"""Plain ``def`` handlers keep the contract: delivered exactly once, isolated, limited,
ordered with concurrency 1, counted - mixed with async handlers, on every backend."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore import Dispatcher, Retry

from .contract_support import BACKENDS, run_on

pytestmark = pytest.mark.contract


@dataclass(frozen=True)
class Job:
    n: int


@dataclass(frozen=True)
class HandlerSpec:
    sync: bool
    fails: bool
    retries: int


@dataclass(frozen=True)
class Program:
    concurrency: int
    queue_size: int
    handlers: tuple[HandlerSpec, ...]
    events: int


programs = st.builds(
    Program,
    concurrency=st.integers(1, 3),
    queue_size=st.integers(1, 4),
    handlers=st.lists(
        st.builds(HandlerSpec, st.booleans(), st.booleans(), st.integers(0, 2)),
        min_size=1,
        max_size=4,
    ).map(tuple),
    events=st.integers(1, 12),
)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(program=programs)
def test_plain_handlers_keep_the_contract(
    backend: str, options: dict[str, Any], program: Program
) -> None:
    lock = threading.Lock()
    calls: Counter[tuple[int, int]] = Counter()
    order: dict[int, list[int]] = {}
    running = [0, 0]  # now, peak (handler calls of Job, threads and tasks alike)
    errors: list[int] = []

    def enter(index: int, job: Job) -> None:
        with lock:
            calls[index, job.n] += 1
            order.setdefault(index, []).append(job.n)
            running[0] += 1
            running[1] = max(running)

    def leave() -> None:
        with lock:
            running[0] -= 1

    def make(index: int, spec: HandlerSpec) -> Any:
        def plain(job: Job) -> None:
            enter(index, job)
            try:
                if spec.fails:
                    raise ValueError(index)
            finally:
                leave()

        async def coroutine(job: Job) -> None:
            enter(index, job)
            try:
                await anyio.lowlevel.checkpoint()
                if spec.fails:
                    raise ValueError(index)
            finally:
                leave()

        return plain if spec.sync else coroutine

    async def main() -> None:
        bus = Dispatcher(
            concurrency=program.concurrency,
            queue_size=program.queue_size,
            on_error=lambda job, handler, exc: errors.append(handlers.index(handler)),
        )
        handlers = [make(i, spec) for i, spec in enumerate(program.handlers)]
        for handler, spec in zip(handlers, program.handlers, strict=True):
            retry = Retry(attempts=spec.retries + 1, backoff=0) if spec.retries else None
            bus.subscribe(Job, handler, retry=retry)
        async with bus:
            for n in range(program.events):
                await bus.publish(Job(n))
            await bus.drain()
            stats = bus.stats(Job)
        assert (stats.accepted, stats.handled) == (program.events, program.events)
        assert stats.failed == program.events * sum(s.fails for s in program.handlers)

    run_on(backend, options, main)
    for index, spec in enumerate(program.handlers):
        attempts = spec.retries + 1 if spec.fails else 1
        for n in range(program.events):
            assert calls[index, n] == attempts, (index, n, calls[index, n])
        if program.concurrency == 1:
            firsts = list(dict.fromkeys(order[index]))
            assert firsts == list(range(program.events))
    # handlers of one event run one after another, so the limit bounds handler calls
    assert running[1] <= program.concurrency
    assert sorted(errors) == sorted(
        i for i, s in enumerate(program.handlers) if s.fails for _ in range(program.events)
    )
