"""Delivery control (issue 4) on random programs: per-key order, retries, timeouts
and dead letters, each against a small reference model, on asyncio, uvloop and trio.

Acceptance order is exact: a publisher records an acceptance right after
``publish`` returns, and nothing yields between the event entering the queue and
that return for a publisher outside the dispatcher's handlers.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore import (
    DeadLetter,
    DeadLetterReason,
    Dispatcher,
    DropReason,
    HandlerTimeout,
    Overflow,
    QueueFull,
    Retry,
)

from .contract_support import BACKENDS
from .delivery_support import (
    Alpha,
    Beta,
    Fatal,
    Gamma,
    Job,
    Problems,
    Retryable,
    check_failed,
    check_settled,
    run_bounded,
)

pytestmark = pytest.mark.contract

Handler = Callable[[Job], Any]

# -- 1. per-key order --------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    key: int
    #: how many times the handler yields to the event loop on this event
    yields: int
    #: publish_nowait (QueueFull under BLOCK when full) instead of publish
    nowait: bool
    #: the publisher yields after this publish
    checkpoint: bool


@dataclass(frozen=True)
class KeyedProgram:
    concurrency: int
    queue_size: int
    overflow: Overflow
    publishers: tuple[tuple[Step, ...], ...]
    #: the queue holds every event: nothing is refused, and the first events of the
    #: first ``min(concurrency, keys)`` keys wait for each other (they must overlap)
    roomy: bool


@st.composite
def keyed_programs(draw: st.DrawFn) -> KeyedProgram:
    keys = draw(st.integers(1, 4))
    steps = st.builds(
        Step,
        key=st.integers(0, keys - 1),
        yields=st.integers(0, 3),
        nowait=st.booleans(),
        checkpoint=st.booleans(),
    )
    publishers = draw(
        st.lists(st.lists(steps, min_size=1, max_size=12).map(tuple), min_size=1, max_size=3)
    )
    total = sum(map(len, publishers))
    roomy = draw(st.booleans())
    return KeyedProgram(
        concurrency=draw(st.integers(1, 6)),
        queue_size=total if roomy else draw(st.integers(1, 6)),
        overflow=Overflow.BLOCK
        if roomy
        else draw(st.sampled_from([Overflow.BLOCK, Overflow.DROP_NEWEST, Overflow.DROP_OLDEST])),
        publishers=tuple(publishers),
        roomy=roomy,
    )


async def run_keyed(program: KeyedProgram, problems: Problems) -> None:
    evicted: set[int] = set()
    drops: Counter[DropReason] = Counter()

    def on_drop(event: Any, reason: DropReason) -> None:
        drops[reason] += 1
        if reason is DropReason.EVICTED:
            evicted.add(event.uid)

    bus = Dispatcher(
        queue_size=program.queue_size,
        concurrency=program.concurrency,
        overflow=program.overflow,
        on_drop=on_drop,
    )
    bus.configure(Job, key=lambda job: job.key)
    uids = itertools.count()
    #: uid -> its place in the global acceptance order (when its publish returned)
    accepted: dict[int, int] = {}
    #: uid -> when its publish was called, on the same clock: a publish that waited
    #: for room was accepted somewhere between the two (the room is handed to it)
    called: dict[int, int] = {}
    outcomes: Counter[str] = Counter()
    events: dict[int, Job] = {}
    first_of_key: dict[int, int] = {}
    key_rank: dict[int, int] = {}
    handled: list[Job] = []
    seen: Counter[int] = Counter()
    running_keys: set[int] = set()
    running = [0, 0]  # now, peak
    all_keys = {step.key for steps in program.publishers for step in steps}
    barrier_size = min(program.concurrency, len(all_keys)) if program.roomy else 0
    arrived = [0]
    everyone_there = anyio.Event()
    step_yields: dict[int, int] = {}

    @bus.on(Job)
    async def handler(job: Job) -> None:
        seen[job.uid] += 1
        handled.append(job)
        if job.key in running_keys:
            problems.fail(f"{job!r} started while another event of key {job.key} runs")
        running_keys.add(job.key)
        running[0] += 1
        running[1] = max(running)
        if running[0] > program.concurrency:
            problems.fail(f"{running[0]} handlers run, concurrency {program.concurrency}")
        queued = bus.stats(Job).queued
        if queued > program.queue_size:
            problems.fail(f"handling {job!r}: queued {queued} > queue_size {program.queue_size}")
        try:
            if first_of_key.get(job.key) == job.uid and key_rank[job.key] < barrier_size:
                arrived[0] += 1
                if arrived[0] == barrier_size:
                    everyone_there.set()
                await everyone_there.wait()
            for _ in range(step_yields[job.uid]):
                await anyio.lowlevel.checkpoint()
        finally:
            running_keys.discard(job.key)
            running[0] -= 1

    async def publisher(number: int, steps: tuple[Step, ...]) -> None:
        for seq, step in enumerate(steps):
            job = Job(next(uids), step.key, number, seq)
            events[job.uid] = job
            step_yields[job.uid] = step.yields
            called[job.uid] = len(accepted)
            try:
                ok = bus.publish_nowait(job) if step.nowait else await bus.publish(job)
            except QueueFull:
                outcomes["refused"] += 1
            else:
                if ok:
                    outcomes["accepted"] += 1
                    accepted[job.uid] = len(accepted)
                    first_of_key.setdefault(job.key, job.uid)
                    key_rank.setdefault(job.key, len(key_rank))
                else:
                    outcomes["dropped"] += 1
            if step.checkpoint:
                await anyio.lowlevel.checkpoint()

    async with bus:
        async with anyio.create_task_group() as tg:
            for number, steps in enumerate(program.publishers):
                tg.start_soon(publisher, number, steps)
        await bus.drain()

    # Exactly once: every accepted event is handled once, unless it was evicted.
    for uid in accepted:
        want = 0 if uid in evicted else 1
        if seen[uid] != want:
            problems.fail(f"{events[uid]!r} handled {seen[uid]}x, want {want}")
    if set(seen) - set(accepted):
        problems.fail(f"handled events never accepted: {set(seen) - set(accepted)}")
    if not evicted <= set(accepted):
        problems.fail(f"evicted events never accepted: {evicted - set(accepted)}")
    # Per-key order: each key's events start in accepted order (so, with one
    # publisher, in publish order). An event handled earlier must not have been
    # published only after the later one was accepted.
    last: dict[int, Job] = {}
    for job in handled:
        before = last.get(job.key)
        if before is not None and called.get(before.uid, -1) > accepted.get(job.uid, -1):
            problems.fail(f"key {job.key}: {job!r} handled after the later {before!r}")
        last[job.key] = job
    if running[1] > program.concurrency:
        problems.fail(f"peak {running[1]} > concurrency {program.concurrency}")
    if running[1] < barrier_size:
        problems.fail(f"peak {running[1]}, yet {barrier_size} keys were ready to run at once")
    if drops[DropReason.DROPPED_NEWEST] != outcomes["dropped"]:
        problems.fail(f"DROPPED_NEWEST reports {drops}, publishes refused {outcomes['dropped']}")
    check_settled(
        problems,
        bus,
        Job,
        accepted=outcomes["accepted"],
        dropped=outcomes["dropped"],
        refused=outcomes["refused"],
        evicted=len(evicted),
        handled=outcomes["accepted"] - len(evicted),
        failed=0,
    )


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(program=keyed_programs())
def test_per_key_order_one_at_a_time_and_concurrent_across_keys(
    backend: str, options: dict[str, Any], program: KeyedProgram
) -> None:
    """Promises 3, 4, 5: with a key, events of one key run one at a time in accepted
    order; different keys overlap up to the limit and never beyond it; the bound and
    the counters hold; every accepted event is handled exactly once or evicted."""
    problems = Problems()
    run_bounded(backend, options, lambda: run_keyed(program, problems))
    problems.check()


# -- 2. retries --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySub:
    #: the subscription's own Retry(attempts=...), or None for the type's default
    attempts: int | None
    #: whether its failures are listed in Retry.on
    retryable: bool
    #: per event: how many first calls fail
    fails: tuple[int, ...]


@dataclass(frozen=True)
class RetryProgram:
    concurrency: int
    #: the type's default Retry(attempts=...), or None
    type_attempts: int | None
    backoff: float
    multiplier: float
    jitter: float
    subs: tuple[RetrySub, ...]
    #: per event: published with publish_and_wait (its outcome is checked too)
    waited: tuple[bool, ...]

    def retry(self, attempts: int | None) -> Retry | None:
        if attempts is None:
            return None
        return Retry(
            attempts=attempts,
            backoff=self.backoff,
            multiplier=self.multiplier,
            max_backoff=0.002,
            jitter=self.jitter,
            on=(Retryable,),
        )

    def calls(self, sub: RetrySub, event: int) -> int:
        """The reference model: how many times *sub*'s handler is called on *event*."""
        attempts = sub.attempts if sub.attempts is not None else self.type_attempts
        fails = sub.fails[event]
        if fails == 0 or not sub.retryable or attempts is None:
            return 1
        return min(fails + 1, attempts)


@st.composite
def retry_programs(draw: st.DrawFn) -> RetryProgram:
    events = draw(st.integers(1, 6))
    attempts = st.none() | st.integers(1, 4)
    subs = draw(
        st.lists(
            st.builds(
                RetrySub,
                attempts=attempts,
                retryable=st.booleans(),
                fails=st.lists(st.integers(0, 4), min_size=events, max_size=events).map(tuple),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return RetryProgram(
        concurrency=draw(st.integers(1, 3)),
        type_attempts=draw(attempts),
        backoff=draw(st.sampled_from([0.0, 0.0001, 0.001])),
        multiplier=draw(st.sampled_from([1.0, 2.0])),
        jitter=draw(st.floats(0, 1)),
        subs=tuple(subs),
        waited=tuple(draw(st.lists(st.booleans(), min_size=events, max_size=events))),
    )


async def run_retries(program: RetryProgram, problems: Problems) -> None:
    handlers: dict[Handler, int] = {}
    errors: Counter[tuple[int, int]] = Counter()
    letters: list[DeadLetter] = []
    #: (sub, uid) -> the exception its last call raised
    last_raised: dict[tuple[int, int], BaseException] = {}
    calls: Counter[tuple[int, int]] = Counter()
    #: the event of every call, in call order
    call_order: list[int] = []
    accept_order: list[int] = []

    def on_error(event: Any, handler: Handler, exc: BaseException) -> None:
        index = handlers.get(handler, -1)
        errors[index, event.uid] += 1
        if exc is not last_raised.get((index, event.uid)):
            problems.fail(f"on_error({event!r}, sub {index}) got {exc!r}, not the last failure")

    bus = Dispatcher(
        concurrency=program.concurrency, on_error=on_error, on_dead_letter=letters.append
    )
    bus.configure(Job, retry=program.retry(program.type_attempts))

    def make_handler(index: int, spec: RetrySub) -> Handler:
        async def handler(job: Job) -> str:
            calls[index, job.uid] += 1
            call_order.append(job.uid)
            if calls[index, job.uid] <= spec.fails[job.uid]:
                kind = Retryable if spec.retryable else Fatal
                exc = kind(f"sub {index} fails call {calls[index, job.uid]} on {job!r}")
                last_raised[index, job.uid] = exc
                raise exc
            return f"{index}:{job.uid}"

        return handler

    for index, spec in enumerate(program.subs):
        handler = make_handler(index, spec)
        handlers[handler] = index
        bus.subscribe(Job, handler, retry=program.retry(spec.attempts))

    async def wait_for(job: Job) -> None:
        accept_order.append(job.uid)  # publish_and_wait queues before it first yields
        outcome = await bus.publish_and_wait(job)
        got = [(r.attempts, r.ok) for r in outcome.results]
        want = [
            (program.calls(spec, job.uid), program.calls(spec, job.uid) > spec.fails[job.uid])
            for spec in program.subs
        ]
        if got != want or not outcome.delivered:
            problems.fail(f"outcome of {job!r}: (attempts, ok) {got}, want {want}")
        for index, result in enumerate(outcome.results):
            if not result.ok and result.exception is not last_raised.get((index, job.uid)):
                problems.fail(f"outcome of {job!r}: sub {index} {result.exception!r}")

    async with bus:
        async with anyio.create_task_group() as tg:
            for uid, waited in enumerate(program.waited):
                if waited:
                    tg.start_soon(wait_for, Job(uid))
                    await anyio.lowlevel.checkpoint()
                else:
                    accept_order.append(uid)  # publish never yields while there is room
                    await bus.publish(Job(uid))
        await bus.drain()

    failures: Counter[tuple[int, int]] = Counter()
    for uid in range(len(program.waited)):
        for index, spec in enumerate(program.subs):
            want = program.calls(spec, uid)
            if calls[index, uid] != want:
                problems.fail(
                    f"sub {index} called {calls[index, uid]}x on event {uid}, want {want}"
                )
            if want <= spec.fails[uid]:
                failures[index, uid] += 1
    if errors != failures:
        problems.fail(f"on_error calls {dict(errors)}, failures {dict(failures)}")
    got_letters: Counter[tuple[int, int]] = Counter()
    for letter in letters:
        index = handlers.get(letter.handler, -1)  # type: ignore[arg-type]
        uid = letter.event.uid
        got_letters[index, uid] += 1
        if letter.reason is not DeadLetterReason.HANDLER_FAILED:
            problems.fail(f"dead letter of {letter.event!r} with reason {letter.reason}")
        if letter.attempts != calls[index, uid]:
            problems.fail(f"dead letter of sub {index} on {uid}: attempts {letter.attempts}")
        if letter.exception is not last_raised.get((index, uid)):
            problems.fail(f"dead letter of sub {index} on {uid}: {letter.exception!r}")
    if got_letters != failures:
        problems.fail(f"dead letters {dict(got_letters)}, failures {dict(failures)}")
    # With concurrency 1 an event's calls, retries included, all come before the
    # next event's: the events run one after another, in accepted order.
    runs = [uid for uid, _ in itertools.groupby(call_order)]
    if program.concurrency == 1 and runs != accept_order:
        problems.fail(f"concurrency 1: calls {call_order}, accepted order {accept_order}")
    count = len(program.waited)
    check_settled(problems, bus, Job, accepted=count, handled=count)
    check_failed(problems, bus, Job, sum(failures.values()))


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(program=retry_programs())
def test_retries_call_each_handler_the_modelled_number_of_times(
    backend: str, options: dict[str, Any], program: RetryProgram
) -> None:
    """Promise 6: a handler failing its first k calls is called min(k + 1, attempts)
    times when Retry.on lists its exception, else once; the event is a failure
    (counted, on_error once, one dead letter with the attempts) iff it never
    succeeded; other handlers run exactly once; with concurrency 1 the retries hold
    the slot, so events still run one after another in accepted order."""
    problems = Problems()
    run_bounded(backend, options, lambda: run_retries(program, problems))
    problems.check()


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(concurrency=st.integers(2, 4), failing=st.integers(1, 3), fatal=st.booleans())
def test_failed_counts_failures_of_concurrent_deliveries(
    backend: str, options: dict[str, Any], concurrency: int, failing: int, fatal: bool
) -> None:
    """Promise 6 (counted): event 0's handler waits until the other events, each
    failing, have been handled by other workers; stats.failed must count them all.
    Regression: ``group.failed += await deliver(...)`` read the counter before the
    await and lost those failures (found by this suite, fixed in a340771)."""
    problems = Problems()

    async def main() -> None:
        errors: list[BaseException] = []
        bus = Dispatcher(concurrency=concurrency, on_error=lambda e, h, x: errors.append(x))
        bus.configure(Job, key=lambda job: job.uid)  # anything off the plain path
        others_done = anyio.Event()

        @bus.on(Job)
        async def handler(job: Job) -> None:
            if job.uid == 0:
                await others_done.wait()
                return
            if len(errors) == failing - 1:
                others_done.set()
            raise Fatal(f"{job!r}") if fatal else Retryable(f"{job!r}")

        async with bus:
            for uid in range(failing + 1):
                await bus.publish(Job(uid))
            await bus.drain()
        if len(errors) != failing:
            problems.fail(f"on_error heard {len(errors)} failures, want {failing}")
        if bus.stats(Job).failed != failing:
            problems.fail(f"stats.failed = {bus.stats(Job).failed}, want {failing}")

    run_bounded(backend, options, main)
    problems.check()


# -- 3. timeouts -------------------------------------------------------------------------


@dataclass(frozen=True)
class TimedSub:
    #: its own timeout= (else the type's handler_timeout, if any; else untimed)
    own_timeout: bool
    #: Retry(attempts=...) on TimeoutError, or None
    attempts: int | None
    #: per event: "hang" (sleep_forever), "return" (no await), "yield" (untimed only)
    actions: tuple[str, ...]


@dataclass(frozen=True)
class TimeoutProgram:
    concurrency: int
    queue_size: int
    timeout: float
    type_timeout: bool
    subs: tuple[TimedSub, ...]
    #: the events of each publisher (uids numbered across publishers)
    publishers: tuple[int, ...]

    def timed(self, sub: TimedSub) -> bool:
        return sub.own_timeout or self.type_timeout

    def calls(self, sub: TimedSub, event: int) -> int:
        if sub.actions[event] != "hang":
            return 1
        return 1 if sub.attempts is None else sub.attempts


@st.composite
def timeout_programs(draw: st.DrawFn) -> TimeoutProgram:
    publishers = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    events = sum(publishers)
    type_timeout = draw(st.booleans())
    subs = []
    for _ in range(draw(st.integers(1, 3))):
        own = draw(st.booleans())
        # A timed handler that does not hang never awaits: it cannot run past its
        # timeout however slow the machine is (no timed assertions).
        actions = ["hang", "return"] if own or type_timeout else ["yield", "return"]
        subs.append(
            TimedSub(
                own_timeout=own,
                attempts=draw(st.none() | st.integers(1, 2)),
                actions=tuple(
                    draw(st.lists(st.sampled_from(actions), min_size=events, max_size=events))
                ),
            )
        )
    return TimeoutProgram(
        concurrency=draw(st.integers(1, 3)),
        queue_size=draw(st.integers(1, 4)),
        timeout=draw(st.sampled_from([0.001, 0.005, 0.01])),
        type_timeout=type_timeout,
        subs=tuple(subs),
        publishers=publishers,
    )


async def run_timeouts(program: TimeoutProgram, problems: Problems) -> None:
    handlers: dict[Handler, int] = {}
    errors: Counter[tuple[int, int]] = Counter()
    letters: list[DeadLetter] = []
    calls: Counter[tuple[int, int]] = Counter()
    #: calls that returned, and hanging calls that were cancelled
    returned: Counter[tuple[int, int]] = Counter()
    cancelled: Counter[tuple[int, int]] = Counter()
    #: per publisher, the uids of its events in the order they started
    started: dict[int, list[int]] = {}

    def on_error(event: Any, handler: Handler, exc: BaseException) -> None:
        errors[handlers.get(handler, -1), event.uid] += 1
        if not isinstance(exc, HandlerTimeout):
            problems.fail(f"on_error({event!r}) got {exc!r}, not a HandlerTimeout")

    bus = Dispatcher(
        queue_size=program.queue_size,
        concurrency=program.concurrency,
        on_error=on_error,
        on_dead_letter=letters.append,
    )
    if program.type_timeout:
        bus.configure(Job, handler_timeout=program.timeout)

    def make_handler(index: int, spec: TimedSub) -> Handler:
        async def handler(job: Job) -> None:
            calls[index, job.uid] += 1
            if index == 0 and calls[index, job.uid] == 1:
                started.setdefault(job.publisher, []).append(job.uid)
            action = spec.actions[job.uid]
            if action == "hang":
                try:
                    await anyio.sleep_forever()
                except anyio.get_cancelled_exc_class():
                    cancelled[index, job.uid] += 1
                    raise
            if action == "yield":
                await anyio.lowlevel.checkpoint()
            returned[index, job.uid] += 1

        return handler

    for index, spec in enumerate(program.subs):
        handler = make_handler(index, spec)
        handlers[handler] = index
        retry = None
        if spec.attempts is not None:
            retry = Retry(attempts=spec.attempts, backoff=0, on=(TimeoutError,))
        timeout = program.timeout if spec.own_timeout else None
        bus.subscribe(Job, handler, timeout=timeout, retry=retry)

    uids = itertools.count()
    batches = [
        [Job(next(uids), 0, p, s) for s in range(n)] for p, n in enumerate(program.publishers)
    ]

    async def publisher(jobs: list[Job]) -> None:
        for job in jobs:
            await bus.publish(job)

    async with bus:
        async with anyio.create_task_group() as tg:
            for jobs in batches:
                tg.start_soon(publisher, jobs)
        await bus.drain()

    failures: Counter[tuple[int, int]] = Counter()
    for uid in range(sum(program.publishers)):
        for index, spec in enumerate(program.subs):
            want = program.calls(spec, uid)
            hangs = spec.actions[uid] == "hang"
            if calls[index, uid] != want:
                problems.fail(f"sub {index} called {calls[index, uid]}x on {uid}, want {want}")
            if hangs:
                failures[index, uid] += 1
                if cancelled[index, uid] != want:
                    problems.fail(
                        f"sub {index} on {uid}: {cancelled[index, uid]} of {want} cancelled"
                    )
            elif returned[index, uid] != 1:
                problems.fail(f"sub {index} on {uid} returned {returned[index, uid]}x, want 1")
    if errors != failures:
        problems.fail(f"on_error calls {dict(errors)}, timeouts {dict(failures)}")
    got_letters: Counter[tuple[int, int]] = Counter()
    for letter in letters:
        index = handlers.get(letter.handler, -1)  # type: ignore[arg-type]
        got_letters[index, letter.event.uid] += 1
        if letter.reason is not DeadLetterReason.HANDLER_FAILED:
            problems.fail(f"dead letter of {letter.event!r}: reason {letter.reason}")
        if not isinstance(letter.exception, HandlerTimeout):
            problems.fail(f"dead letter of {letter.event!r}: {letter.exception!r}")
        elif letter.exception.timeout != program.timeout:
            problems.fail(f"dead letter of {letter.event!r}: timeout {letter.exception.timeout}")
        if letter.attempts != calls[index, letter.event.uid]:
            problems.fail(f"dead letter of {letter.event!r}: attempts {letter.attempts}")
    if got_letters != failures:
        problems.fail(f"dead letters {dict(got_letters)}, timeouts {dict(failures)}")
    # Each publisher's events start in its publish order with concurrency 1.
    if program.concurrency == 1:
        for number, uids_started in started.items():
            if uids_started != sorted(uids_started):
                problems.fail(f"concurrency 1: publisher {number}'s events started {uids_started}")
    count = sum(program.publishers)
    check_settled(problems, bus, Job, accepted=count, handled=count)
    check_failed(problems, bus, Job, sum(failures.values()))


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(program=timeout_programs())
def test_hanging_handlers_time_out_and_harm_nothing_else(
    backend: str, options: dict[str, Any], program: TimeoutProgram
) -> None:
    """Promise 6: every call that hangs is cancelled at its timeout (per subscription
    or the type's handler_timeout) and ends as a HandlerTimeout failure, retried as
    configured, reported to on_error once and dead-lettered once (HANDLER_FAILED);
    other handlers and later events run normally, nothing is lost, drain returns."""
    problems = Problems()
    run_bounded(backend, options, lambda: run_timeouts(program, problems))
    problems.check()


# -- 4. dead letters ---------------------------------------------------------------------

CLASSES: tuple[type[Job], ...] = (Alpha, Beta, Gamma)


@dataclass(frozen=True)
class LetterSub:
    #: "never", "always", or "odd" (fails on odd uids)
    fails: str
    #: handles only even uids (odd ones may then match no subscription)
    even_only: bool
    attempts: int


@dataclass(frozen=True)
class LetterType:
    queue_size: int
    overflow: Overflow
    concurrency: int
    subs: tuple[LetterSub, ...]


@dataclass(frozen=True)
class Publish:
    cls: int
    #: publish_nowait (only on a drop policy: under BLOCK it would raise QueueFull)
    nowait: bool
    checkpoint: bool


@dataclass(frozen=True)
class LetterProgram:
    types: tuple[LetterType, ...]
    publishers: tuple[tuple[Publish, ...], ...]
    dead_letter_unmatched: bool
    #: a DeadLetter subscriber at all, and its queue
    subscribed: bool
    letter_queue: int
    letter_overflow: Overflow
    #: the DeadLetter handler fails on letters of uids divisible by this (0: never)
    letter_fails_every: int


@st.composite
def letter_programs(draw: st.DrawFn) -> LetterProgram:
    subs = st.builds(
        LetterSub,
        fails=st.sampled_from(["never", "always", "odd"]),
        even_only=st.booleans(),
        attempts=st.integers(1, 2),
    )
    types = st.builds(
        LetterType,
        queue_size=st.integers(1, 3),
        overflow=st.sampled_from([Overflow.BLOCK, Overflow.DROP_NEWEST, Overflow.DROP_OLDEST]),
        concurrency=st.integers(1, 2),
        subs=st.lists(subs, max_size=2).map(tuple),
    )
    publishes = st.builds(
        Publish, cls=st.integers(0, 2), nowait=st.booleans(), checkpoint=st.booleans()
    )
    big = draw(st.booleans())
    return LetterProgram(
        types=tuple(draw(st.lists(types, min_size=3, max_size=3))),
        publishers=tuple(
            draw(
                st.lists(
                    st.lists(publishes, min_size=1, max_size=8).map(tuple), min_size=1, max_size=2
                )
            )
        ),
        dead_letter_unmatched=draw(st.booleans()),
        subscribed=draw(st.booleans()),
        letter_queue=1000 if big else draw(st.integers(1, 3)),
        letter_overflow=draw(st.sampled_from(Overflow)) if not big else Overflow.BLOCK,
        letter_fails_every=draw(st.integers(0, 3)),
    )


Letter = tuple[int, DeadLetterReason, int]  # uid, reason, subscription (-1: none)


async def run_letters(program: LetterProgram, problems: Problems) -> None:
    handlers: dict[Handler, int] = {}
    hooked: Counter[Letter] = Counter()
    received: Counter[Letter] = Counter()
    attempts: dict[Letter, int] = {}
    errors: Counter[tuple[int, int]] = Counter()
    letter_errors = [0]
    evicted: set[int] = set()
    seen: Counter[tuple[int, int]] = Counter()

    def describe(letter: Any, where: str) -> Letter | None:
        if not isinstance(letter, DeadLetter) or isinstance(letter.event, DeadLetter):
            problems.fail(f"{where} got {letter!r}: a dead letter of a dead letter")
            return None
        index = handlers.get(letter.handler, -1) if letter.handler else -1
        return (letter.event.uid, letter.reason, index)

    def on_dead_letter(letter: DeadLetter) -> None:
        described = describe(letter, "on_dead_letter")
        if described is not None:
            hooked[described] += 1
            attempts[described] = letter.attempts

    def on_error(event: Any, handler: Handler, exc: BaseException) -> None:
        if isinstance(event, DeadLetter):
            letter_errors[0] += 1
        else:
            errors[handlers.get(handler, -1), event.uid] += 1

    def on_drop(event: Any, reason: DropReason) -> None:
        if reason is DropReason.EVICTED and isinstance(event, Job):
            evicted.add(event.uid)

    bus = Dispatcher(
        on_error=on_error,
        on_drop=on_drop,
        on_dead_letter=on_dead_letter,
        dead_letter_unmatched=program.dead_letter_unmatched,
    )
    for klass, type_config in zip(CLASSES, program.types, strict=True):
        bus.configure(
            klass,
            queue_size=type_config.queue_size,
            overflow=type_config.overflow,
            concurrency=type_config.concurrency,
        )
    bus.configure(DeadLetter, queue_size=program.letter_queue, overflow=program.letter_overflow)

    def make_handler(index: int, spec: LetterSub) -> Handler:
        async def handler(job: Job) -> None:
            seen[index, job.uid] += 1
            if spec.fails == "always" or (spec.fails == "odd" and job.uid % 2):
                raise Fatal(f"sub {index} fails on {job!r}")

        return handler

    #: the subscriptions of each class, as (index, spec)
    subs_of: dict[type[Job], list[tuple[int, LetterSub]]] = {}
    for klass, type_spec in zip(CLASSES, program.types, strict=True):
        for spec in type_spec.subs:
            index = len(handlers)
            handler = make_handler(index, spec)
            handlers[handler] = index
            subs_of.setdefault(klass, []).append((index, spec))
            bus.subscribe(
                klass,
                handler,
                filter=(lambda job: job.uid % 2 == 0) if spec.even_only else None,
                retry=Retry(attempts=spec.attempts, backoff=0),
            )

    async def letter_handler(letter: DeadLetter) -> None:
        described = describe(letter, "the DeadLetter subscriber")
        if described is None:
            return
        received[described] += 1
        every = program.letter_fails_every
        if every and letter.event.uid % every == 0:
            raise Fatal(f"the dead letter sink fails on {letter!r}")

    if program.subscribed:
        bus.subscribe(DeadLetter, letter_handler)

    uids = itertools.count()
    outcome: dict[int, bool] = {}
    events: dict[int, Job] = {}

    async def publisher(number: int, steps: tuple[Publish, ...]) -> None:
        for seq, step in enumerate(steps):
            klass = CLASSES[step.cls]
            job = klass(next(uids), 0, number, seq)
            events[job.uid] = job
            if step.nowait and program.types[step.cls].overflow is not Overflow.BLOCK:
                outcome[job.uid] = bus.publish_nowait(job)
            else:
                outcome[job.uid] = await bus.publish(job)
            if step.checkpoint:
                await anyio.lowlevel.checkpoint()

    async with bus:
        async with anyio.create_task_group() as tg:
            for number, steps in enumerate(program.publishers):
                tg.start_soon(publisher, number, steps)
        await bus.drain()

    # The reference model: the dead letters each publish must yield.
    want: Counter[Letter] = Counter()
    for uid, accepted in outcome.items():
        job = events[uid]
        if not accepted:
            want[uid, DeadLetterReason.DROPPED_NEWEST, -1] += 1
            continue
        matched = [
            (index, spec)
            for index, spec in subs_of.get(type(job), [])
            if not (spec.even_only and uid % 2)
        ]
        handled = any(seen[index, uid] for index, _ in matched)
        if uid in evicted:
            want[uid, DeadLetterReason.EVICTED, -1] += 1
            if handled:
                problems.fail(f"{job!r} was evicted, yet handled")
            continue
        if not matched:
            if program.dead_letter_unmatched:
                want[uid, DeadLetterReason.UNMATCHED, -1] += 1
            continue
        if not handled:
            problems.fail(f"{job!r} was accepted, neither evicted nor handled")
        for index, spec in matched:
            calls = seen[index, uid]
            fails = spec.fails == "always" or (spec.fails == "odd" and uid % 2 == 1)
            if calls != (spec.attempts if fails else 1):
                problems.fail(f"sub {index} called {calls}x on {job!r}")
            if fails:
                want[uid, DeadLetterReason.HANDLER_FAILED, index] += 1
                if errors[index, uid] != 1:
                    problems.fail(
                        f"on_error heard sub {index} fail on {job!r} {errors[index, uid]}x"
                    )
    if hooked != want:
        extra, missing = hooked - want, want - hooked
        problems.fail(f"on_dead_letter: extra {dict(extra)}, missing {dict(missing)}")
    for letter, n in attempts.items():
        uid, reason, index = letter
        if reason is DeadLetterReason.HANDLER_FAILED and n != seen[index, uid]:
            problems.fail(f"dead letter {letter}: attempts {n}, calls {seen[index, uid]}")
    if sum(errors.values()) != sum(
        n for (_, r, _), n in want.items() if r is DeadLetterReason.HANDLER_FAILED
    ):
        problems.fail(f"on_error calls {dict(errors)}, want one per failed handler")
    # The DeadLetter subscription: what its queue let through, each exactly once.
    letters = bus.stats(DeadLetter)
    if program.subscribed:
        lost = letters.dropped + letters.refused + letters.evicted
        if received - hooked or sum(received.values()) + lost != sum(hooked.values()):
            problems.fail(
                f"DeadLetter subscriber got {dict(received)}, the hook {dict(hooked)}, "
                f"its queue lost {lost}"
            )
        if program.letter_queue >= sum(want.values()) and received != hooked:
            problems.fail(f"a roomy DeadLetter queue: subscriber {dict(received)} != hook")
        every = program.letter_fails_every
        sink_failures = sum(n for (uid, _, _), n in received.items() if every and uid % every == 0)
        if letter_errors[0] != sink_failures:
            problems.fail(f"the sink failed {sink_failures}x, on_error heard {letter_errors[0]}")
        check_settled(problems, bus, DeadLetter, handled=letters.accepted - letters.evicted)
        check_failed(problems, bus, DeadLetter, sink_failures)
    elif letters.published or letter_errors[0]:
        problems.fail(f"no DeadLetter subscriber, yet {letters}")
    for klass in CLASSES:
        stats = bus.stats(klass)
        mine = [uid for uid, job in events.items() if type(job) is klass]
        n_evicted = len(evicted.intersection(mine))
        check_settled(
            problems,
            bus,
            klass,
            accepted=sum(outcome[uid] for uid in mine),
            dropped=sum(not outcome[uid] for uid in mine),
            refused=0,
            evicted=n_evicted,
            handled=stats.accepted - n_evicted,
        )


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(program=letter_programs())
def test_every_lost_event_yields_exactly_one_dead_letter(
    backend: str, options: dict[str, Any], program: LetterProgram
) -> None:
    """Promises 2 and 6: every event refused under DROP_NEWEST, evicted under
    DROP_OLDEST, failed on its last attempt, or (with dead_letter_unmatched) matched
    by no subscription yields exactly one DeadLetter with that reason, to
    on_dead_letter and to DeadLetter subscribers alike (what the DeadLetter queue's
    own overflow refuses is counted); a failing DeadLetter handler is reported to
    on_error, never dead-lettered again (no loop)."""
    problems = Problems()
    run_bounded(backend, options, lambda: run_letters(program, problems))
    problems.check()
