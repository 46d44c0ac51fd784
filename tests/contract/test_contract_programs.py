"""Random programs against the reference model: promises 1-8 of docs/CONTRACT.md.

A program is an event class hierarchy, per-type settings, subscriptions (with and
without filters, some unsubscribed again), handlers that succeed, raise, yield,
hang or publish follow-on events, and several concurrent publishers. Each example
runs in a fresh event loop of one backend, bounded by ``RUN_LIMIT``.
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

from eventcore import Dispatcher, DispatcherClosed, DropReason, Overflow, PublishTimeout, QueueFull

from .contract_support import BACKENDS, FILTERS, RUN_LIMIT, Event, QueueModel, matches, run_on
from .contract_support import make_hierarchy as make_hierarchy

pytestmark = pytest.mark.contract


class Boom(Exception):
    """What a failing handler raises."""


@dataclass(frozen=True)
class ConfigSpec:
    cls: int
    queue_size: int | None
    concurrency: int | None
    overflow: Overflow | None


@dataclass(frozen=True)
class SubSpec:
    cls: int
    filter: str
    #: "ok", "raise", "yield", "hang" or "follow" (publish one follow-on event)
    action: str
    follow_cls: int
    #: "publish", "nowait" or "timeout" (publish with timeout=0)
    follow_mode: str
    unsubscribed: bool


@dataclass(frozen=True)
class PublishSpec:
    cls: int
    mode: str
    checkpoint: bool


@dataclass(frozen=True)
class Program:
    parents: tuple[int | None, ...]
    #: the dispatcher's defaults (``cls`` unused): small queues make overflow common
    default: ConfigSpec
    configs: tuple[ConfigSpec, ...]
    subs: tuple[SubSpec, ...]
    publishers: tuple[tuple[PublishSpec, ...], ...]
    #: graceful: drain() before leaving ``async with``; forced: let the handlers settle
    settle: bool
    max_depth: int


@st.composite
def programs(
    draw: st.DrawFn,
    *,
    forced: bool = False,
    reentrant: bool = False,
    max_events: int = 12,
) -> Program:
    """A random program. *forced*: handlers may hang, so close will cut them off.
    *reentrant*: small BLOCK queues whose handlers publish into full queues."""
    n = draw(st.integers(1, 4))
    parents = tuple(
        draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None for i in range(n)
    )
    classes = st.integers(0, n - 1)
    overflows = st.just(Overflow.BLOCK) if reentrant else st.sampled_from(Overflow)
    sizes = st.integers(1, 2) if reentrant else st.integers(1, 4)
    default = draw(
        st.builds(
            ConfigSpec,
            cls=st.just(0),
            queue_size=sizes,
            concurrency=st.integers(1, 3),
            overflow=overflows,
        )
    )
    configs = draw(
        st.lists(
            st.builds(
                ConfigSpec,
                cls=classes,
                queue_size=st.none() | sizes,
                concurrency=st.none() | st.integers(1, 3),
                overflow=st.none() | overflows,
            ),
            max_size=n,
        )
    )
    actions = ["follow"] if reentrant else ["ok", "raise", "yield", "follow"]
    if forced:
        actions.append("hang")
    subs = draw(
        st.lists(
            st.builds(
                SubSpec,
                cls=classes,
                filter=st.sampled_from(sorted(FILTERS)),
                action=st.sampled_from(actions),
                follow_cls=classes,
                follow_mode=st.just("publish")
                if reentrant
                else st.sampled_from(["publish", "nowait", "timeout"]),
                unsubscribed=st.booleans() if not reentrant else st.just(False),
            ),
            min_size=1,
            max_size=6,
        )
    )
    # External publishers never wait in a forced run: a blocked one would outlive close.
    modes = ["nowait"] if forced else ["publish", "nowait", "timeout"]
    publishers = draw(
        st.lists(
            st.lists(
                st.builds(
                    PublishSpec,
                    cls=classes,
                    mode=st.just("publish") if reentrant else st.sampled_from(modes),
                    checkpoint=st.booleans(),
                ),
                min_size=1,
                max_size=max_events,
            ).map(tuple),
            min_size=1,
            max_size=3,
        ).map(tuple)
    )
    return Program(
        parents=parents,
        default=default,
        configs=tuple(configs),
        subs=tuple(subs),
        publishers=publishers,
        settle=draw(st.booleans()),
        max_depth=draw(st.integers(1, 3) if reentrant else st.integers(0, 2)),
    )


@dataclass
class Run:
    """What one run of a program produced, for the checks."""

    program: Program
    classes: list[type[Event]]
    model: QueueModel
    bus: Dispatcher
    #: (subscription index, uid) -> how many times that handler saw that event
    seen: Counter[tuple[int, int]]
    #: (subscription index, event) in the order handlers were entered
    order: list[tuple[int, Event]]
    raised: Counter[tuple[int, int]]
    #: (subscription index, uid) per on_error call
    errors: Counter[tuple[int, int]]
    closed_errors: list[str]


async def execute(program: Program, *, forced: bool) -> Run:
    classes = make_hierarchy(program.parents)
    uids = itertools.count()
    seen: Counter[tuple[int, int]] = Counter()
    raised: Counter[tuple[int, int]] = Counter()
    errors: Counter[tuple[int, int]] = Counter()
    order: list[tuple[int, Event]] = []
    handler_index: dict[Callable[..., Any], int] = {}

    def on_error(event: Any, handler: Callable[..., Any], exc: BaseException) -> None:
        if not isinstance(exc, Boom):
            model.fail(f"on_error got an unexpected {exc!r} from {handler!r} on {event!r}")
        errors[handler_index.get(handler, -1), event.uid] += 1

    default = program.default
    bus = Dispatcher(
        queue_size=default.queue_size or 1024,
        concurrency=default.concurrency or 1,
        overflow=default.overflow or Overflow.BLOCK,
        shutdown_timeout=0 if forced else RUN_LIMIT / 2,
        on_error=on_error,
        on_drop=lambda event, reason: model.on_drop(event, reason),
    )
    model = QueueModel(bus)
    for config in program.configs:
        bus.configure(
            classes[config.cls],
            queue_size=config.queue_size,
            concurrency=config.concurrency,
            overflow=config.overflow,
        )

    async def publish(event: Event, mode: str, inside: Event | None) -> None:
        # A publish that waits for room is accepted when room is handed to it, before
        # it returns: see QueueModel.
        model.publishing(event, floating=mode != "nowait" and model.full(type(event)))
        if inside is not None:
            model.suspend(inside)  # waiting in publish is not running (the deadlock escape)
        try:
            if mode == "nowait":
                accepted = bus.publish_nowait(event)
            elif mode == "timeout":
                accepted = await bus.publish(event, timeout=0)
            else:
                accepted = await bus.publish(event)
        except QueueFull:
            model.published(event, "refused")
        except PublishTimeout:
            model.published(event, "timeout")
        else:
            model.published(event, "accepted" if accepted else "dropped")
        finally:
            if inside is not None:
                model.resume(inside)

    def make_handler(index: int, spec: SubSpec) -> Callable[[Event], Any]:
        async def handler(event: Event) -> None:
            seen[index, event.uid] += 1
            order.append((index, event))
            if spec.action == "raise":
                raised[index, event.uid] += 1
                raise Boom(f"handler {index} fails on {event!r}")
            if spec.action == "yield":
                await anyio.lowlevel.checkpoint()
                await anyio.lowlevel.checkpoint()
            elif spec.action == "hang":
                await anyio.sleep_forever()
            elif spec.action == "follow" and event.depth < program.max_depth:
                follow = classes[spec.follow_cls](next(uids), f"h{index}", 0, event.depth + 1)
                await publish(follow, spec.follow_mode, event)

        return handler

    async def probe_start(event: Event) -> None:
        model.taken(event)

    async def probe_end(event: Event) -> None:
        model.done(event)

    bus.subscribe(Event, probe_start)
    for index, spec in enumerate(program.subs):
        handler = make_handler(index, spec)
        handler_index[handler] = index
        subscription = bus.subscribe(classes[spec.cls], handler, filter=FILTERS[spec.filter])
        if spec.unsubscribed:
            subscription.unsubscribe()
    bus.subscribe(Event, probe_end)

    async def publisher(number: int, specs: tuple[PublishSpec, ...]) -> None:
        for seq, spec in enumerate(specs):
            await publish(classes[spec.cls](next(uids), f"p{number}", seq), spec.mode, None)
            if spec.checkpoint:
                await anyio.lowlevel.checkpoint()

    async with bus:
        async with anyio.create_task_group() as publishers:
            for number, specs in enumerate(program.publishers):
                publishers.start_soon(publisher, number, specs)
        if program.settle:
            if forced:
                await anyio.wait_all_tasks_blocked()
            else:
                await bus.drain()
                for klass, stats in bus.stats().items():
                    if stats.queued or stats.in_flight:
                        model.fail(f"drain() returned with {klass.__name__} busy: {stats}")

    closed_errors = []
    for klass in classes:
        try:
            await bus.publish(klass(-1, "late", 0))
        except DispatcherClosed:
            pass
        else:
            closed_errors.append(f"publish({klass.__name__}) after close did not raise")
        try:
            bus.publish_nowait(klass(-1, "late", 0))
        except DispatcherClosed:
            pass
        else:
            closed_errors.append(f"publish_nowait({klass.__name__}) after close did not raise")
    return Run(program, classes, model, bus, seen, order, raised, errors, closed_errors)


def expected_receivers(run: Run, event: Event) -> list[int]:
    """The subscriptions that must see *event*: by class (MRO) and filter."""
    return [
        index
        for index, spec in enumerate(run.program.subs)
        if not spec.unsubscribed
        and isinstance(event, run.classes[spec.cls])
        and matches(spec.filter, event)
    ]


def check_run(run: Run, *, forced: bool) -> None:
    model = run.model
    model.check_counters()
    problems = list(model.violations) + run.closed_errors
    for uid, outcome in model.outcome.items():
        event = model.events[uid]
        fates = (uid in model.finished) + (uid in model.evicted) + (uid in model.shutdown)
        reports = {r: n for (u, r), n in model.drop_reports.items() if u == uid}
        receivers = expected_receivers(run, event)
        if outcome != "accepted":
            # Promise 2: refused events are not handled; DROP_NEWEST ones are reported once.
            if uid in model.started or fates:
                problems.append(f"{event!r} was {outcome} but handled or dropped later")
            want = {DropReason.DROPPED_NEWEST: 1} if outcome == "dropped" else {}
            if reports != want:
                problems.append(f"{event!r} {outcome}: drop reports {reports}")
            continue
        # Promise 1 (and 7): an accepted event ends exactly one way.
        if fates != 1 or any(n != 1 for n in reports.values()):
            problems.append(f"accepted {event!r}: finished/evicted/shutdown {fates}, {reports}")
        if not forced and uid in model.shutdown:
            problems.append(f"accepted {event!r} was cut off by a graceful close")
        for index in range(len(run.program.subs)):
            count = run.seen[index, uid]
            if uid in model.finished:
                want_count = 1 if index in receivers else 0
                if count != want_count:
                    problems.append(f"handler {index} saw {event!r} {count}x, want {want_count}")
            elif uid in model.evicted and count:
                problems.append(f"handler {index} saw the evicted {event!r}")
            elif count > (index in receivers):
                problems.append(f"handler {index} saw cut-off {event!r} {count}x")
    # Promise 6: every failure reported once to on_error, and counted.
    if run.errors != run.raised:
        problems.append(f"on_error calls {dict(run.errors)} != failures {dict(run.raised)}")
    failed: Counter[type] = Counter()
    for (_, uid), n in run.raised.items():
        failed[type(model.events[uid])] += n
    for klass, stats in run.bus.stats().items():
        if stats.failed != failed[klass]:
            problems.append(f"{klass.__name__}: failed {stats.failed}, raised {failed[klass]}")
    problems += check_publisher_fifo(run)
    assert not problems, "\n".join(problems[:20])


def check_publisher_fifo(run: Run) -> list[str]:
    """Promise 5: with concurrency 1 each handler sees a publisher's events of one type
    in publish order (where no handler of the type waits, which would lend its slot)."""
    waits = {
        klass
        for klass in run.classes
        for spec in run.program.subs
        if spec.action == "follow" and issubclass(klass, run.classes[spec.cls])
    }
    last: dict[tuple[int, str, type], int] = {}
    problems = []
    for index, event in run.order:
        klass = type(event)
        if klass in waits or run.bus.config(klass).concurrency != 1:
            continue
        key = (index, event.publisher, klass)
        if event.seq < last.get(key, -1):
            problems.append(f"handler {index} saw {event!r} after seq {last[key]}")
        last[key] = event.seq
    return problems


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(program=programs())
def test_random_programs_keep_the_contract(
    backend: str, options: dict[str, Any], program: Program
) -> None:
    """Promises 1-8 on random programs; a graceful close loses nothing."""
    run = run_on(backend, options, lambda: execute(program, forced=False))
    check_run(run, forced=False)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(program=programs(reentrant=True))
def test_reentrant_publish_into_full_queues_never_deadlocks(
    backend: str, options: dict[str, Any], program: Program
) -> None:
    """Promise 8: handlers publish into their own and each other's full BLOCK queues."""
    run = run_on(backend, options, lambda: execute(program, forced=False))
    check_run(run, forced=False)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(program=programs(forced=True))
def test_forced_shutdown_reports_everything_it_cuts_off(
    backend: str, options: dict[str, Any], program: Program
) -> None:
    """Promises 2 and 7: handlers hang, the shutdown timeout is 0; every accepted event
    is handled, evicted, or reported to on_drop(SHUTDOWN) and counted as abandoned."""
    run = run_on(backend, options, lambda: execute(program, forced=True))
    check_run(run, forced=True)
