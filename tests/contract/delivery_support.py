"""Shared pieces of the delivery-control contract tests (issue 4): the event classes,
a bounded runner with its own event loop per example, and the stats identities.

Checks append to a :class:`Problems` list instead of raising, because many of them
run inside handlers and hooks, where the dispatcher isolates errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from eventcore import Dispatcher, TypeStats

T = TypeVar("T")

#: The bound on one example: a hang or a deadlock fails the example instead of the suite.
RUN_LIMIT = 10.0


def run_bounded(backend: str, options: dict[str, Any], fn: Callable[[], Awaitable[T]]) -> T:
    """Run *fn* in a fresh event loop of *backend*, failing after :data:`RUN_LIMIT` s."""

    async def bounded() -> T:
        with anyio.fail_after(RUN_LIMIT):
            return await fn()

    return anyio.run(bounded, backend=backend, backend_options=options)


class Job:
    """An event: ``uid`` identifies one publish, ``key`` is its ordering key."""

    __slots__ = ("key", "publisher", "seq", "uid")

    def __init__(self, uid: int, key: int = 0, publisher: int = 0, seq: int = 0) -> None:
        self.uid = uid
        self.key = key
        self.publisher = publisher
        self.seq = seq

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(uid={self.uid}, key={self.key}, p{self.publisher}#{self.seq})"
        )


class Alpha(Job):
    __slots__ = ()


class Beta(Job):
    __slots__ = ()


class Gamma(Job):
    __slots__ = ()


class Retryable(Exception):
    """A failure listed in ``Retry.on``."""


class Fatal(Exception):
    """A failure that ``Retry.on`` does not list: never retried."""


class Problems(list[str]):
    def fail(self, message: str) -> None:
        self.append(message)

    def check(self) -> None:
        assert not self, "\n".join(self[:20])


def check_identities(problems: Problems, stats: TypeStats, where: str) -> None:
    """The two identities of :class:`~eventcore.TypeStats`."""
    if stats.published != stats.accepted + stats.dropped + stats.refused:
        problems.fail(f"{where}: published identity broken: {stats}")
    if stats.accepted != (
        stats.handled + stats.queued + stats.in_flight + stats.evicted + stats.abandoned
    ):
        problems.fail(f"{where}: accepted identity broken: {stats}")


def check_settled(problems: Problems, bus: Dispatcher, klass: type, **want: int) -> None:
    """After drain: the identities hold, nothing is queued, in flight or abandoned,
    and the named counters have the wanted values."""
    stats = bus.stats(klass)
    check_identities(problems, stats, klass.__name__)
    want = {"queued": 0, "in_flight": 0, "abandoned": 0, **want}
    have = {name: getattr(stats, name) for name in want}
    if have != want:
        problems.fail(f"stats of {klass.__name__}: {have}, want {want}")


def check_failed(problems: Problems, bus: Dispatcher, klass: type, want: int) -> None:
    """``stats(klass).failed`` counts every handler failure."""
    failed = bus.stats(klass).failed
    if failed != want:
        problems.fail(f"stats({klass.__name__}).failed = {failed}, failures {want}")
