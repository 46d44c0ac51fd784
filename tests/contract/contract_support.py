"""Shared machinery of the contract suite: the backends, generated event classes and
a reference model of the per-type queues that the dispatcher must agree with.

The model is exact, not statistical: a publisher records an acceptance right after
``publish`` returns (nothing yields between the append and the return), and the
first subscription of every run, a probe on the common root class, records the
start of each event's handling right after the worker took it out of the queue
(nothing yields there either). So the model queue of each type must match the real
one at every observation: same order, same length, never longer than queue_size.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import anyio
import pytest

from eventcore import Dispatcher, DropReason

T = TypeVar("T")

#: Every backend the contract is proved on, one event loop per example.
BACKENDS = [
    pytest.param("asyncio", {"use_uvloop": False}, id="asyncio"),
    pytest.param("asyncio", {"use_uvloop": True}, id="uvloop"),
    pytest.param("trio", {}, id="trio"),
]

#: The bound on one example: a deadlock fails the example instead of hanging the suite.
RUN_LIMIT = 20.0


def run_on(backend: str, options: dict[str, Any], fn: Callable[[], Awaitable[T]]) -> T:
    """Run *fn* in a fresh event loop of *backend*, bounded by :data:`RUN_LIMIT`."""

    async def bounded() -> T:
        with anyio.fail_after(RUN_LIMIT):
            return await fn()

    return anyio.run(bounded, backend=backend, backend_options=options)


class Event:
    """The root of every generated event class. ``uid`` identifies one publish."""

    __slots__ = ("depth", "publisher", "seq", "uid")

    def __init__(self, uid: int, publisher: str, seq: int, depth: int = 0) -> None:
        self.uid = uid
        self.publisher = publisher
        self.seq = seq
        self.depth = depth

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uid={self.uid}, {self.publisher}#{self.seq})"


def make_hierarchy(parents: Sequence[int | None]) -> list[type[Event]]:
    """Classes ``E0, E1, ...``: ``Ei`` subclasses ``E{parents[i]}`` (or the root)."""
    classes: list[type[Event]] = []
    for index, parent in enumerate(parents):
        base = Event if parent is None else classes[parent]
        klass = type(f"E{index}", (base,), {"__slots__": (), "__module__": __name__})
        classes.append(cast("type[Event]", klass))
    return classes


FILTERS: dict[str, Callable[[Event], bool] | None] = {
    "all": None,
    "even": lambda event: event.uid % 2 == 0,
    "not_third": lambda event: event.uid % 3 != 0,
}


def matches(filter_name: str, event: Event) -> bool:
    check = FILTERS[filter_name]
    return check is None or check(event)


class QueueModel:
    """The reference model: per concrete type, the FIFO of accepted events not yet taken.

    A publish is recorded when it returns: nothing yields between the append and the
    return, except in a publish that found the queue full and waited: room is handed
    to it (its event enters the queue) before it runs again, so its event may be
    taken, or followed by others, before its publish returns. Such a publish is
    *floating*: the model knows it is somewhere in the queue, and checks the order
    exactly among the other events.

    Every check appends a message to :attr:`violations` instead of raising, because
    a check may run inside a handler or a hook, where the dispatcher isolates errors.
    """

    def __init__(self, bus: Dispatcher) -> None:
        self.bus = bus
        self.queues: dict[type, deque[int]] = {}
        self.events: dict[int, Event] = {}
        #: uid -> "accepted" | "dropped" | "refused" | "timeout"
        self.outcome: dict[int, str] = {}
        #: floating events (see above) that may be queued
        self.floating: set[int] = set()
        #: floating events that left the queue before their publish returned
        self.early: set[int] = set()
        self.evicted: set[int] = set()
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.shutdown: Counter[int] = Counter()
        self.drop_reports: Counter[tuple[int, DropReason]] = Counter()
        self.running: Counter[type] = Counter()
        self.violations: list[str] = []

    def fail(self, message: str) -> None:
        self.violations.append(message)

    def _queue(self, event: Event) -> deque[int]:
        return self.queues.setdefault(type(event), deque())

    def check_bound(self, klass: type, where: str, *, known: bool = True) -> None:
        """Promise 3, observed through the public stats: never above queue_size, and
        (unless *known* is false) every event the model knows to be waiting is counted."""
        queued = self.bus.stats(klass).queued
        size = self.bus.config(klass).queue_size
        if queued > size:
            self.fail(f"{where}: {klass.__name__} holds {queued} > queue_size {size}")
        if known and queued < len(self.queues.get(klass, ())):
            self.fail(f"{where}: {klass.__name__} stats queued={queued} < model")

    def _leave(self, event: Event, what: str) -> None:
        """*event* left the queue from its head (taken by a worker, or evicted)."""
        queue = self._queue(event)
        if event.uid in queue:
            if queue[0] != event.uid:
                self.fail(f"{what} {event!r} out of FIFO order: queue head {list(queue)[:3]}")
            queue.remove(event.uid)
        elif event.uid in self.floating:
            self.floating.discard(event.uid)
            if event.uid not in self.outcome:
                self.early.add(event.uid)
        else:
            self.fail(f"{what} {event!r}, which is not in the queue")

    # -- what publishers see ---------------------------------------------------------

    def full(self, klass: type) -> bool:
        """Whether a publish of *klass* would find the queue full now (and may wait)."""
        return self.bus.stats(klass).queued >= self.bus.config(klass).queue_size

    def publishing(self, event: Event, *, floating: bool) -> None:
        """Record that a publish of *event* begins."""
        self.events[event.uid] = event
        if floating:
            self.floating.add(event.uid)

    def published(self, event: Event, outcome: str) -> None:
        """Record the result of one publish, right after it returned or raised."""
        if event.uid in self.outcome:
            self.fail(f"{event!r} published twice")
        self.outcome[event.uid] = outcome
        klass = type(event)
        if outcome != "accepted":
            self.floating.discard(event.uid)
        if outcome == "accepted":
            if event.uid not in self.early and event.uid not in self.floating:
                self._queue(event).append(event.uid)
        elif event.uid in self.early:
            self.fail(f"{event!r} was {outcome}, yet handled or evicted")
        elif outcome in ("dropped", "refused"):
            # DROP_NEWEST, RAISE and publish_nowait decide without waiting.
            queued = self.bus.stats(klass).queued
            if queued < self.bus.config(klass).queue_size:
                self.fail(f"{event!r} {outcome} while the queue had room ({queued})")
        self.check_bound(klass, f"after publishing {event!r}")

    # -- what the dispatcher reports -------------------------------------------------

    def taken(self, event: Event) -> None:
        """The probe: the event's handling starts (the worker just took it out)."""
        self._leave(event, "took")
        if event.uid in self.started:
            self.fail(f"{event!r} handled twice")
        self.started.add(event.uid)
        self.resume(event)
        self.check_bound(type(event), f"taking {event!r}")

    def done(self, event: Event) -> None:
        """The last probe: every other handler of the event has run."""
        self.running[type(event)] -= 1
        self.finished.add(event.uid)

    def suspend(self, event: Event) -> None:
        """A handler is about to wait in a publish: it does not count as running."""
        self.running[type(event)] -= 1

    def resume(self, event: Event) -> None:
        """Promise 4: a handler (re)starts running."""
        klass = type(event)
        self.running[klass] += 1
        limit = self.bus.config(klass).concurrency
        # past the shutdown deadline suspended handlers take their slots back at once
        # to unwind, beyond the limit (docs/CONTRACT.md, promise 13): not a breach
        if self.running[klass] > limit and not self.bus._delivery.halted:
            self.fail(f"{self.running[klass]} handlers of {klass.__name__} run, limit {limit}")

    def on_drop(self, event: Any, reason: DropReason) -> None:
        if not isinstance(event, Event):
            self.fail(f"on_drop got {event!r}")
            return
        self.drop_reports[event.uid, reason] += 1
        if reason is DropReason.EVICTED:
            # DROP_OLDEST takes the head of the queue.
            self._leave(event, "evicted")
            self.evicted.add(event.uid)
        elif reason is DropReason.SHUTDOWN:
            self.shutdown[event.uid] += 1
            if event.uid in self._queue(event) or event.uid in self.floating:
                self._leave(event, "shutdown reported")
            elif event.uid not in self.started or event.uid in self.finished:
                self.fail(f"shutdown reported {event!r}, neither queued nor in flight")
            else:
                self.running[type(event)] -= 1
        # Shutdown may take the whole queue out before it reports the events one by one.
        known = reason is not DropReason.SHUTDOWN
        self.check_bound(type(event), f"on_drop({event!r}, {reason.name})", known=known)

    # -- the end of a run ------------------------------------------------------------

    def accepted(self) -> list[Event]:
        return [self.events[u] for u, o in self.outcome.items() if o == "accepted"]

    def check_counters(self) -> None:
        """Promise 2: the stats of each type agree with the model, identities hold."""
        per_type: dict[type, Counter[str]] = {}
        for uid, outcome in self.outcome.items():
            per_type.setdefault(type(self.events[uid]), Counter())[outcome] += 1
        stats = self.bus.stats()
        if set(stats) != set(per_type):
            self.fail(f"stats() has types {set(stats)}, published {set(per_type)}")
        for klass, counts in per_type.items():
            got = stats.get(klass)
            if got is None:
                continue
            evicted = sum(1 for u in self.evicted if type(self.events[u]) is klass)
            abandoned = sum(1 for u in self.shutdown if type(self.events[u]) is klass)
            handled = sum(1 for u in self.finished if type(self.events[u]) is klass)
            want = {
                "accepted": counts["accepted"],
                "dropped": counts["dropped"],
                "refused": counts["refused"] + counts["timeout"],
                "evicted": evicted,
                "abandoned": abandoned,
                "handled": handled,
                "queued": 0,
                "in_flight": 0,
            }
            have = {name: getattr(got, name) for name in want}
            if have != want:
                self.fail(f"stats of {klass.__name__}: {have}, model {want}")
            if got.published != sum(counts.values()):
                self.fail(f"{klass.__name__}: published {got.published} != {sum(counts.values())}")
            if got.accepted != got.handled + got.queued + got.in_flight + got.evicted + (
                got.abandoned
            ):
                self.fail(f"{klass.__name__}: accepted identity broken: {got}")
