"""The lifecycle as a hypothesis state machine: subscribe, unsubscribe, configure,
publish (three ways), drain, close and start again, interleaved at random.

The dispatcher runs in an event loop of its own, behind an anyio blocking portal;
each rule is one ``portal.call`` bounded by ``RUN_LIMIT``. Handlers run between
rules, so the model gives each subscription a window: one that was active from
before an event's publish until the event was settled (by a drain or a close) must
have seen it exactly once; one that ended before the publish or began after the
settling must not have seen it; any other at most once.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from eventcore import (
    Dispatcher,
    DispatcherClosed,
    DropReason,
    Outcome,
    Overflow,
    PublishTimeout,
    QueueFull,
    Subscription,
)

from .contract_support import BACKENDS, FILTERS, RUN_LIMIT, Event, make_hierarchy, matches

pytestmark = pytest.mark.contract

R = TypeVar("R")

#: E0 > E1 > E2, and E3 on its own
CLASSES = make_hierarchy([None, 0, 1, None])
class_indices = st.integers(0, len(CLASSES) - 1)


class Boom(Exception):
    pass


@dataclass
class Sub:
    index: int
    cls: int
    filter: str
    fails: bool
    created: int
    subscription: Subscription[Event]
    removed: int | None = None


@dataclass
class Published:
    event: Event
    at: int
    outcome: str
    settled: int | None = None
    waited: Outcome[Event] | None = None


@dataclass
class Seen:
    """Written on the event loop's thread, read between rules."""

    counts: Counter[tuple[int, int]] = field(default_factory=Counter)
    failures: Counter[tuple[int, int]] = field(default_factory=Counter)
    drops: Counter[tuple[int, DropReason]] = field(default_factory=Counter)
    errors: Counter[tuple[int, int]] = field(default_factory=Counter)


class Lifecycle(RuleBasedStateMachine):
    subs = Bundle("subs")

    def __init__(self, backend: str, options: dict[str, Any]) -> None:
        super().__init__()
        self._portal_cm = anyio.from_thread.start_blocking_portal(backend, options)
        self.portal = self._portal_cm.__enter__()
        self.seen = Seen()
        self.handler_index: dict[Callable[..., Any], int] = {}
        self.bus = Dispatcher(
            shutdown_timeout=RUN_LIMIT / 2,
            on_error=self._on_error,
            on_drop=lambda event, reason: self.seen.drops.update([(event.uid, reason)]),
        )
        self.running: AbstractContextManager[Dispatcher] | None = None
        self.clock = 0
        self.uids = itertools.count()
        self.all_subs: list[Sub] = []
        self.published: dict[int, Published] = {}
        #: per class, the largest queue_size in force since the last start
        self.bounds: dict[type, int] = {}

    def _on_error(self, event: Any, handler: Callable[..., Any], exc: BaseException) -> None:
        self.seen.errors[self.handler_index.get(handler, -1), event.uid] += 1

    def call(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        async def bounded() -> R:
            with anyio.fail_after(RUN_LIMIT):
                return await fn(*args)

        return self.portal.call(bounded)

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    # -- rules -----------------------------------------------------------------------

    @rule(
        target=subs,
        cls=class_indices,
        filter=st.sampled_from(sorted(FILTERS)),
        fails=st.booleans(),
    )
    def subscribe(self, cls: int, filter: str, fails: bool) -> Sub:
        index = len(self.all_subs)
        seen = self.seen

        async def handler(event: Event) -> None:
            seen.counts[index, event.uid] += 1
            await anyio.lowlevel.checkpoint()
            if fails:
                seen.failures[index, event.uid] += 1
                raise Boom(index)

        self.handler_index[handler] = index
        subscription = self.portal.call(
            lambda: self.bus.subscribe(CLASSES[cls], handler, filter=FILTERS[filter])
        )
        sub = Sub(index, cls, filter, fails, self.tick(), subscription)
        self.all_subs.append(sub)
        return sub

    @rule(sub=consumes(subs))
    def unsubscribe(self, sub: Sub) -> None:
        self.portal.call(sub.subscription.unsubscribe)
        sub.removed = self.tick()
        assert not sub.subscription.active

    @rule(
        cls=class_indices,
        queue_size=st.none() | st.integers(1, 3),
        concurrency=st.none() | st.integers(1, 3),
        overflow=st.none() | st.sampled_from(Overflow),
    )
    def configure(
        self, cls: int, queue_size: int | None, concurrency: int | None, overflow: Overflow | None
    ) -> None:
        self.portal.call(
            lambda: self.bus.configure(
                CLASSES[cls], queue_size=queue_size, concurrency=concurrency, overflow=overflow
            )
        )
        self.tick()
        for klass in CLASSES:
            size = self.bus.config(klass).queue_size
            self.bounds[klass] = max(self.bounds.get(klass, size), size)

    @rule(cls=class_indices, how=st.sampled_from(["publish", "nowait", "timeout", "wait"]))
    def publish(self, cls: int, how: str) -> None:
        uid = next(self.uids)
        event = CLASSES[cls](uid, "machine", uid)
        at = self.tick()
        waited = None
        try:
            if how == "nowait":
                accepted = self.portal.call(self.bus.publish_nowait, event)
            elif how == "timeout":
                accepted = self.call(lambda: self.bus.publish(event, timeout=0))
            elif how == "wait":
                waited = self.call(self.bus.publish_and_wait, event)
                accepted = waited.dropped is not DropReason.DROPPED_NEWEST
            else:
                accepted = self.call(self.bus.publish, event)
        except DispatcherClosed:
            assert self.running is None, "DispatcherClosed while running"
            return
        except (QueueFull, PublishTimeout):
            outcome = "refused"
        else:
            outcome = "accepted" if accepted else "dropped"
        assert self.running is not None, "a publish outside `async with` did not raise"
        self.published[uid] = Published(event, at, outcome, waited=waited)
        if waited is not None and waited.delivered:
            self.settle([uid])  # publish_and_wait returns once every handler ran

    @precondition(lambda self: self.running is not None)
    @rule()
    def drain(self) -> None:
        self.call(self.bus.drain)
        self.settle(list(self.published))
        for stats in self.stats().values():
            assert (stats.queued, stats.in_flight) == (0, 0), stats

    @precondition(lambda self: self.running is not None)
    @rule()
    def close(self) -> None:
        assert self.running is not None
        self.running.__exit__(None, None, None)
        self.running = None
        self.settle(list(self.published))
        assert not self.bus.running
        shutdown = [u for (u, reason) in self.seen.drops if reason is DropReason.SHUTDOWN]
        assert not shutdown, f"a graceful close cut off {shutdown}"

    @precondition(lambda self: self.running is None)
    @rule()
    def start(self) -> None:
        self.running = self.portal.wrap_async_context_manager(self.bus)
        self.running.__enter__()
        self.bounds = {k: self.bus.config(k).queue_size for k in CLASSES}
        assert self.bus.running

    # -- the model -------------------------------------------------------------------

    def stats(self) -> dict[type, Any]:
        return dict(self.portal.call(self.bus.stats))

    def snapshot(self) -> tuple[dict[type, Any], Seen]:
        """The stats and what handlers and hooks saw, read together on the loop's
        thread: handlers keep running between rules."""

        def take() -> tuple[dict[type, Any], Seen]:
            seen = self.seen
            copy = Seen(
                Counter(seen.counts),
                Counter(seen.failures),
                Counter(seen.drops),
                Counter(seen.errors),
            )
            return dict(self.bus.stats()), copy

        return self.portal.call(take)

    def settle(self, uids: list[int]) -> None:
        now = self.tick()
        for uid in uids:
            record = self.published[uid]
            if record.settled is None:
                record.settled = now

    @invariant()
    def deliveries_match_the_model(self) -> None:
        _, seen = self.snapshot()
        counts = seen.counts
        evicted = {u for (u, r) in seen.drops if r is DropReason.EVICTED}
        for uid, record in self.published.items():
            event = record.event
            if record.outcome != "accepted" or uid in evicted:
                for sub in self.all_subs:
                    assert counts[sub.index, uid] == 0, f"{sub} saw unaccepted {event!r}"
                continue
            if record.waited is not None:
                assert record.waited.dropped in (None, DropReason.EVICTED), record.waited
            for sub in self.all_subs:
                count = counts[sub.index, uid]
                receives = isinstance(event, CLASSES[sub.cls]) and matches(sub.filter, event)
                settled = record.settled
                assert count <= receives, f"{sub} saw {event!r} {count} times"
                if not receives:
                    continue
                if sub.removed is not None and sub.removed < record.at:
                    assert count == 0, f"{sub} saw {event!r} after it unsubscribed"
                elif settled is not None and sub.created > settled:
                    assert count == 0, f"{sub} saw {event!r}, handled before it subscribed"
                elif (
                    settled is not None
                    and sub.created < record.at
                    and (sub.removed is None or sub.removed > settled)
                ):
                    assert count == 1, f"{sub} missed {event!r} (settled at {settled})"

    @invariant()
    def counters_match_the_model(self) -> None:
        stats, seen = self.snapshot()
        want: dict[type, Counter[str]] = {}
        for record in self.published.values():
            want.setdefault(type(record.event), Counter())[record.outcome] += 1
        evicted = Counter(
            type(self.published[u].event) for (u, r) in seen.drops if r is DropReason.EVICTED
        )
        dropped = Counter(
            type(self.published[u].event)
            for (u, r) in seen.drops
            if r is DropReason.DROPPED_NEWEST
        )
        failures = Counter(type(self.published[u].event) for (_, u) in seen.failures.elements())
        for klass, got in stats.items():
            counts = want.get(klass, Counter())
            assert (got.accepted, got.dropped, got.refused) == (
                counts["accepted"],
                counts["dropped"],
                counts["refused"],
            ), got
            assert got.dropped == dropped[klass]
            assert got.evicted == evicted[klass]
            assert got.failed == failures[klass]
            assert got.abandoned == 0
            assert got.handled >= 0
            if self.running is not None:
                assert got.queued <= self.bounds[klass], (got, self.bounds[klass])
        assert seen.errors == seen.failures

    def teardown(self) -> None:
        try:
            if self.running is not None:
                self.running.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
def test_lifecycle_state_machine(backend: str, options: dict[str, Any]) -> None:
    class OnBackend(Lifecycle):
        def __init__(self) -> None:
            super().__init__(backend, options)

    run_state_machine_as_test(OnBackend, settings=settings(stateful_step_count=30))
