"""Features meeting: one hypothesis state machine over keys, re-entrant waits,
cancellation, reconfiguration, short-lived types and shutdown (issue 9).

Several event types - one with a key, two without, and classes generated at run
time - are published from outside (``publish``, ``publish_nowait``,
``publish_and_wait``, some cancelled while they wait) and from handlers (follow-on
events into any type, their own included, so waits form cycles; some of those
publishes are cancelled too). Between publishes the machine reconfigures types
under load, drains, and shuts the dispatcher down at a random point and starts it
again. Key functions and filters fail for some events.

After every step: every type's state satisfies ``TypeState.check()``. While it
runs: no handler starts or resumes beside ``concurrency`` others of its type, no
two handlers of one key start at once (a suspended handler that lent its key
may resume beside the next one), and every wait ends (each step is bounded).
At every drain and shutdown: each accepted event was handled exactly once, or
evicted, or reported cut off by the shutdown; a publish that raised, returned
False or was cancelled had no effect.

Two more types are routed through a fake broker (:class:`~tests.fake_broker.FakeHub`,
bounded, messages encoded as on the wire; one type keyed), published to in bursts,
paused, resumed and cut off by the same shutdowns. For them: the broker never
holds more than its capacity; no handler of a paused routed type starts, none
beside ``concurrency`` others, none beside one of its key; a refused publish had
no effect; nothing accepted is lost (at a drain each was handled, at a shutdown
each was handled or is back on the broker) and it arrives at least once with the
id it was published with, twice at most once per shutdown since.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from eventcore import (
    Dispatcher,
    DispatcherClosed,
    DropReason,
    InvalidEvent,
    Overflow,
    PublishTimeout,
    QueueFull,
)
from tests.fake_broker import FakeHub

from .contract_support import BACKENDS, RUN_LIMIT

pytestmark = pytest.mark.contract

R = TypeVar("R")


class Boom(Exception):
    pass


class Ev:
    """The root of every event class here."""

    __slots__ = ("action", "bad_filter", "bad_key", "depth", "follow", "key", "mode", "uid")

    def __init__(
        self,
        uid: int,
        *,
        action: str = "ok",
        follow: int = 0,
        mode: str = "publish",
        key: int = 0,
        bad_key: bool = False,
        bad_filter: bool = False,
        depth: int = 0,
    ) -> None:
        self.uid = uid
        self.action = action
        self.follow = follow
        self.mode = mode
        self.key = key
        self.bad_key = bad_key
        self.bad_filter = bad_filter
        self.depth = depth

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uid}, {self.action})"


class Keyed(Ev):
    __slots__ = ()


class Plain(Ev):
    __slots__ = ()


class Other(Ev):
    __slots__ = ()


CLASSES: list[type[Ev]] = [Keyed, Plain, Other]
ACTIONS = ["ok", "raise", "yield", "follow", "follow_cancelled"]
MODES = ["publish", "nowait", "wait", "timeout"]


@dataclass(frozen=True)
class RoutedKeyed:
    """Routed through the fake broker, with a key."""

    uid: int
    key: int
    fail: bool = False


@dataclass(frozen=True)
class RoutedPlain:
    """Routed through the fake broker."""

    uid: int
    fail: bool = False


ROUTED: list[type[RoutedKeyed | RoutedPlain]] = [RoutedKeyed, RoutedPlain]
#: how many messages the fake broker holds (pending and fetched) before refusing
HUB_CAPACITY = 6


def key_of(event: Ev) -> int:
    if event.bad_key:
        raise Boom("bad key")
    return event.key


def accepts(event: Ev) -> bool:
    if event.bad_filter:
        raise Boom("bad filter")
    return True


@dataclass
class Record:
    """Written on the event loop's thread, read between steps."""

    outcome: dict[int, str] = field(default_factory=dict)
    events: dict[int, Ev] = field(default_factory=dict)
    seen: Counter[int] = field(default_factory=Counter)
    drops: Counter[tuple[int, DropReason]] = field(default_factory=Counter)
    running: Counter[type] = field(default_factory=Counter)
    keys: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    #: the routed types' publishes and handlings, by uid
    routed_outcome: dict[int, str] = field(default_factory=dict)
    routed_seen: Counter[int] = field(default_factory=Counter)
    routed_keys: Counter[int] = field(default_factory=Counter)
    shutdowns: int = 0


class Composition(RuleBasedStateMachine):
    def __init__(self, backend: str, options: dict[str, Any]) -> None:
        super().__init__()
        self._portal_cm = anyio.from_thread.start_blocking_portal(backend, options)
        self.portal = self._portal_cm.__enter__()
        self.rec = Record()
        self.uids = itertools.count()
        self.closing = False
        self.bus = Dispatcher(
            queue_size=2,
            concurrency=1,
            shutdown_timeout=0.2,
            on_error=lambda event, handler, exc: None,
            on_drop=self._on_drop,
        )
        self.bus.configure(Keyed, key=key_of, concurrency=2)
        self.bus.subscribe(Ev, self._handle, filter=accepts)
        self.hub = FakeHub()
        self.broker = self.hub.transport("machine", "group", capacity=HUB_CAPACITY)
        self.stream = self.hub.spaces["machine"]["group"]
        for routed in ROUTED:
            self.bus.register(routed, name=f"machine.{routed.__name__}")
            self.bus.subscribe(routed, self._handle_routed)
        self.bus.configure(RoutedKeyed, transport=self.broker, key=lambda e: e.key, concurrency=2)
        self.bus.configure(RoutedPlain, transport=self.broker)
        self.session: AbstractContextManager[Any] | None = None
        self.task_group: anyio.abc.TaskGroup | None = None
        self._start()

    # -- plumbing --------------------------------------------------------------------

    def call(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        async def bounded() -> R:
            with anyio.fail_after(RUN_LIMIT):
                return await fn(*args)

        return self.portal.call(bounded)

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start *fn* in the publishers' task group without waiting for it (anyio >= 4.?
        returns an awaitable task handle from ``start_soon``: the portal would await it)."""
        task_group = self.task_group
        assert task_group is not None

        def spawn() -> None:
            task_group.start_soon(fn, *args)

        self.portal.call(_sync, spawn)

    def _start(self) -> None:
        self.closing = False
        self.session = self.portal.wrap_async_context_manager(self._session())
        self.task_group = self.session.__enter__()

    def _stop(self) -> None:
        assert self.session is not None
        self.closing = True
        self.session.__exit__(None, None, None)
        self.session = None
        self.task_group = None

    def _session(self) -> Any:
        machine = self

        class Session:
            async def __aenter__(self) -> anyio.abc.TaskGroup:
                # the publishers' task group outlives the dispatcher: closing it
                # releases every publisher still waiting
                self.tg = anyio.create_task_group()
                task_group = await self.tg.__aenter__()
                await machine.bus.__aenter__()
                return task_group

            async def __aexit__(self, *exc: object) -> None:
                try:
                    await machine.bus.__aexit__(None, None, None)
                finally:
                    await self.tg.__aexit__(None, None, None)

        return Session()

    def _on_drop(self, event: Any, reason: DropReason) -> None:
        if isinstance(event, Ev):
            self.rec.drops[event.uid, reason] += 1

    def _new(self, cls: type[Ev], **fields: Any) -> Ev:
        event = cls(next(self.uids), **fields)
        self.rec.events[event.uid] = event
        return event

    # -- what handlers do ------------------------------------------------------------

    def _enter(self, event: Ev, what: str) -> None:
        klass = type(event)
        limit = self.bus.config(klass).concurrency
        if not self.closing and self.rec.running[klass] >= limit:
            self.rec.violations.append(
                f"{what} {event!r} beside {self.rec.running[klass]} running, limit {limit}"
            )
        if what == "started" and not self.closing and self.bus.paused(klass):
            self.rec.violations.append(f"{event!r} started while its type was paused")
        self.rec.running[klass] += 1
        # A handler suspended in a publish may have lent its key (if its wait closed a
        # cycle): the next event of that key may start meanwhile, so a handler holds
        # its key only until it waits; starts of one key never overlap.
        if what == "started" and isinstance(event, Keyed) and not event.bad_key:
            if not self.closing and self.rec.keys[event.key]:
                self.rec.violations.append(f"{what} {event!r} while its key {event.key} runs")
            self.rec.keys[event.key] += 1

    def _leave(self, event: Ev, *, holds_key: bool = True) -> None:
        self.rec.running[type(event)] -= 1
        if holds_key and isinstance(event, Keyed) and not event.bad_key:
            self.rec.keys[event.key] -= 1

    async def _handle(self, event: Ev) -> None:
        self.rec.seen[event.uid] += 1
        if self.rec.seen[event.uid] > 1:
            self.rec.violations.append(f"{event!r} handled twice")
        self._enter(event, "started")
        resumed = False
        for state in self.bus._live_states():
            self.rec.violations.extend(state.check())
        try:
            if event.action == "raise":
                raise Boom
            for _ in range(3 if event.action == "yield" else 1):
                await anyio.lowlevel.checkpoint()  # let others run beside this handler
            if event.action.startswith("follow") and event.depth < 2:
                child = self._new(
                    CLASSES[event.follow],
                    action="follow" if event.depth == 0 else "ok",
                    follow=(event.follow + event.uid) % len(CLASSES),
                    mode=event.mode,
                    key=event.key,
                    depth=event.depth + 1,
                )
                self._leave(event)  # suspended in the publish: not running
                resumed = True
                try:
                    timeout = 0.001 if event.action == "follow_cancelled" else math.inf
                    await self._publish(child, timeout)
                finally:
                    self._enter(event, "resumed")
        finally:
            self._leave(event, holds_key=not resumed)

    async def _handle_routed(self, event: RoutedKeyed | RoutedPlain) -> None:
        rec, klass = self.rec, type(event)
        rec.routed_seen[event.uid] += 1
        key = event.key if isinstance(event, RoutedKeyed) else None
        if not self.closing:
            limit = self.bus.config(klass).concurrency
            if rec.running[klass] >= limit:
                rec.violations.append(f"{event!r} beside {rec.running[klass]}, limit {limit}")
            if self.bus.paused(klass):
                rec.violations.append(f"{event!r} started while its type was paused")
            if key is not None and rec.routed_keys[key]:
                rec.violations.append(f"{event!r} started while its key runs")
        rec.running[klass] += 1
        if key is not None:
            rec.routed_keys[key] += 1
        try:
            for _ in range(2):
                await anyio.lowlevel.checkpoint()
            if event.fail:
                raise Boom
        finally:
            rec.running[klass] -= 1
            if key is not None:
                rec.routed_keys[key] -= 1

    async def _publish_routed(self, event: RoutedKeyed | RoutedPlain) -> None:
        outcome = "pending"
        try:
            ok = await self.bus.publish(event, timeout=0.05)
            outcome = "accepted" if ok else "dropped"
        except (QueueFull, PublishTimeout):
            outcome = "refused"
        except DispatcherClosed:
            outcome = "closed"
        finally:
            self.rec.routed_outcome[event.uid] = outcome

    async def _publish(self, event: Ev, cancel_after: float) -> None:
        """Publish *event* as its ``mode`` says; record how the publish ended."""
        outcome = "pending"
        with anyio.move_on_after(cancel_after) as scope:
            try:
                if event.mode == "nowait":
                    ok = self.bus.publish_nowait(event)
                elif event.mode == "timeout":
                    ok = await self.bus.publish(event, timeout=0.005)
                elif event.mode == "wait":
                    result = await self.bus.publish_and_wait(event)
                    ok = result.dropped not in (DropReason.DROPPED_NEWEST, DropReason.REJECTED)
                else:
                    ok = await self.bus.publish(event)
                outcome = "accepted" if ok else "dropped"
            except (QueueFull, PublishTimeout):
                outcome = "refused"
            except DispatcherClosed:
                outcome = "closed"
            except InvalidEvent:
                outcome = "invalid"
        if scope.cancelled_caught and outcome == "pending":
            # publish_and_wait's publish is cancel-safe; a wait for the outcome that is
            # cancelled after the event was accepted leaves it to be handled
            outcome = "waited" if event.mode == "wait" else "cancelled"
        self.rec.outcome[event.uid] = outcome

    # -- rules -----------------------------------------------------------------------

    @rule(
        cls=st.integers(0, len(CLASSES) - 1),
        action=st.sampled_from(ACTIONS),
        follow=st.integers(0, len(CLASSES) - 1),
        mode=st.sampled_from(MODES),
        key=st.integers(0, 2),
        bad=st.sampled_from(["", "", "", "key", "filter"]),
        cancel=st.sampled_from([math.inf, math.inf, 0.002]),
        copies=st.integers(1, 4),
    )
    def publish(
        self,
        cls: int,
        action: str,
        follow: int,
        mode: str,
        key: int,
        bad: str,
        cancel: float,
        copies: int,
    ) -> None:
        assert self.task_group is not None
        for copy in range(copies):  # a burst, from as many concurrent publishers
            event = self._new(
                CLASSES[cls], action=action, follow=(follow + copy) % len(CLASSES), mode=mode,
                key=(key + copy) % 3, bad_key=bad == "key", bad_filter=bad == "filter",
            )  # fmt: skip
            self._spawn(self._publish, event, cancel)
        self.call(anyio.lowlevel.checkpoint)

    @rule(
        cls=st.integers(0, len(ROUTED) - 1),
        key=st.integers(0, 2),
        fail=st.booleans(),
        copies=st.integers(1, 4),
    )
    def publish_routed(self, cls: int, key: int, fail: bool, copies: int) -> None:
        for copy in range(copies):  # a burst, from as many concurrent publishers
            uid = next(self.uids)
            event = (
                RoutedKeyed(uid, (key + copy) % 3, fail) if cls == 0 else RoutedPlain(uid, fail)
            )
            self._spawn(self._publish_routed, event)
        self.call(anyio.lowlevel.checkpoint)

    @rule(cls=st.integers(0, len(ROUTED) - 1), pause=st.booleans())
    def pause_or_resume_routed(self, cls: int, pause: bool) -> None:
        klass = ROUTED[cls]
        self.portal.call(_sync, lambda: (self.bus.pause if pause else self.bus.resume)(klass))

    @rule(
        cls=st.integers(0, len(CLASSES) - 1),
        queue_size=st.integers(1, 3),
        concurrency=st.integers(1, 3),
        overflow=st.sampled_from(list(Overflow)),
    )
    def configure(self, cls: int, queue_size: int, concurrency: int, overflow: Overflow) -> None:
        def apply() -> None:
            self.bus.configure(
                CLASSES[cls], queue_size=queue_size, concurrency=concurrency, overflow=overflow
            )

        self.portal.call(apply)

    @rule(cls=st.integers(0, len(CLASSES) - 1), pause=st.booleans())
    def pause_or_resume(self, cls: int, pause: bool) -> None:
        klass = CLASSES[cls]
        self.portal.call(_sync, lambda: (self.bus.pause if pause else self.bus.resume)(klass))

    @rule(action=st.sampled_from(ACTIONS))
    def short_lived_type(self, action: str) -> None:
        klass: type[Ev] = type("ShortLived", (Plain,), {"__slots__": ()})
        event = self._new(klass, action=action, mode="publish")
        assert self.task_group is not None
        self._spawn(self._publish, event, math.inf)

    @rule()
    def settle(self) -> None:
        self.call(self._settle)
        self.check_settled(after_shutdown=False)

    async def _settle(self) -> None:
        for klass in [*CLASSES, *ROUTED]:
            self.bus.resume(klass)  # drain() does not wait for paused types
        await self.bus.drain()
        await anyio.wait_all_tasks_blocked()
        await self.bus.drain()
        stream = self.stream
        while stream.pending or stream.in_flight:  # what is on the broker comes back
            await anyio.wait_all_tasks_blocked()
            await self.bus.drain()

    @rule()
    def shutdown_and_restart(self) -> None:
        self._stop()
        self.check_settled(after_shutdown=True)
        self.rec.shutdowns += 1
        self._start()

    @invariant()
    def states_hold(self) -> None:
        def check() -> list[str]:
            return [problem for state in self.bus._live_states() for problem in state.check()]

        problems = self.portal.call(_sync, check)
        assert not problems, problems
        assert not self.rec.violations, self.rec.violations
        held = len(self.stream.pending) + self.stream.in_flight
        assert held <= HUB_CAPACITY, f"the broker holds {held} > {HUB_CAPACITY}"

    # -- the checks at rest ----------------------------------------------------------

    def check_settled(self, *, after_shutdown: bool) -> None:
        rec = self.rec
        for uid, outcome in rec.outcome.items():
            event = rec.events[uid]
            seen = rec.seen[uid]
            evicted = rec.drops[uid, DropReason.EVICTED]
            cut_off = rec.drops[uid, DropReason.SHUTDOWN]
            if outcome == "accepted":
                if event.bad_filter:
                    assert seen == 0, f"{event!r} passed a failing filter"
                elif evicted or cut_off:
                    assert seen <= 1, f"{event!r} handled {seen} times and dropped"
                    assert evicted + cut_off == 1, f"{event!r} reported dropped twice"
                else:
                    assert seen == 1, f"accepted {event!r} handled {seen} times"
            elif outcome == "waited":
                assert seen <= 1, f"{event!r} handled {seen} times"
            elif outcome != "pending":
                assert seen == 0, f"{event!r} {outcome}, yet handled"
                assert not evicted, f"{event!r} {outcome}, yet evicted"
                assert not cut_off, f"{event!r} {outcome}, yet cut off by shutdown"
        self.check_routed(after_shutdown=after_shutdown)
        stats = self.bus.stats()
        for klass, got in stats.items():
            if klass in ROUTED:  # counted per process: see check_routed
                continue
            assert got.accepted == (
                got.handled + got.queued + got.in_flight + got.evicted + got.abandoned
            ), got
            if after_shutdown:
                assert (got.queued, got.in_flight) == (0, 0), got

    def check_routed(self, *, after_shutdown: bool) -> None:
        """Nothing accepted lost, at least once with its id, duplicates bounded."""
        rec, stream = self.rec, self.stream
        codec = self.broker.codec
        on_broker = {codec.decode(data).event.uid for data in stream.pending}
        if after_shutdown:
            assert stream.in_flight == 0, "a fetched message was not settled at shutdown"
        for uid, outcome in rec.routed_outcome.items():
            seen = rec.routed_seen[uid]
            assert seen <= 1 + rec.shutdowns, f"routed {uid} handled {seen} times"
            if outcome == "accepted":
                assert seen or uid in on_broker, f"accepted routed {uid} lost"
            elif outcome != "pending":
                assert not seen, f"routed {uid} {outcome}, yet handled"
                assert uid not in on_broker, f"routed {uid} {outcome}, yet on the broker"

    def teardown(self) -> None:
        try:
            if self.session is not None:
                self._stop()
        finally:
            self._portal_cm.__exit__(None, None, None)


async def _sync(fn: Callable[[], R]) -> R:
    return fn()


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
def test_features_meeting_keep_every_promise(backend: str, options: dict[str, Any]) -> None:
    class OnBackend(Composition):
        def __init__(self) -> None:
            super().__init__(backend, options)

    run_state_machine_as_test(
        OnBackend,
        settings=settings(stateful_step_count=30, max_examples=settings().max_examples // 2),
    )
