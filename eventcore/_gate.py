"""The slot gate of a type's state: how many handlers of the type may run, which
hold a slot, which lent theirs and want it back, and whether it is paused or stopping.
"""

from __future__ import annotations

from collections import deque

import anyio


class SlotGate:
    """The ``concurrency`` slots of one event type; only these methods change them."""

    __slots__ = (
        "concurrency",
        "lent",
        "limiter",
        "paused",
        "reclaimers",
        "running",
        "scheduled",
        "stopping",
    )

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        #: slots taken: workers serving this type, plus handlers not suspended
        self.running = 0
        #: handlers that lent their slot while suspended in a wait
        self.lent = 0
        #: handlers that lent their slot and want one back, oldest first
        self.reclaimers: deque[anyio.Event] = deque()
        #: worker threads of plain ``def`` handlers (created on first use; see _threads)
        self.limiter: anyio.CapacityLimiter | None = None
        #: whether the type is on the worker pool's ready line
        self.scheduled = False
        #: ``Dispatcher.pause``: no event of this type starts
        self.paused = False
        #: set by shutdown once its deadline passed: no handler starts any more
        self.stopping = False

    @property
    def threads(self) -> int:
        """Worker threads of plain handlers still running (abandoned ones included)."""
        return 0 if self.limiter is None else self.limiter.borrowed_tokens

    def resize(self, concurrency: int) -> None:
        """A new limit: it applies to handlers that start from now on."""
        self.concurrency = concurrency
        if self.limiter is not None:
            self.limiter.total_tokens = concurrency
        self._grant_reclaimers()

    def thread_limiter(self) -> anyio.CapacityLimiter:
        """The limiter of this type's worker threads: ``concurrency`` at a time."""
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.concurrency)
        return self.limiter

    def line_up(self) -> None:
        """The type was put on the pool's ready line."""
        self.scheduled = True

    def line_up_if_free(self) -> bool:
        """Put the type on the pool's ready line if it is not there, has a free slot,
        and may start events (not paused, not stopping); whether it did."""
        if self.scheduled or self.running >= self.concurrency or self.stopping or self.paused:
            return False
        self.scheduled = True
        return True

    def off_line(self) -> None:
        """The type left the pool's ready line."""
        self.scheduled = False

    def acquire(self) -> None:
        """A worker takes the type off the ready line and a slot (the caller checked
        one is free)."""
        self.scheduled = False
        self.running += 1

    def release(self) -> None:
        """A worker gives its slot back: to a handler that wants one back, if any."""
        if self.reclaimers and not self.stopping and self.running <= self.concurrency:
            self.reclaimers.popleft().set()  # the slot stays counted, for it
        else:
            self.running -= 1

    def lend(self) -> None:
        """A handler suspended in a wait gives its slot away."""
        self.running -= 1
        self.lent += 1
        self._grant_reclaimers()

    def reclaim(self) -> anyio.Event | None:
        """A suspended handler's wait ended: take a slot back now, or line up for one.

        :return: None when a slot was free; else the line entry to wait on (a worker
            passes its slot over at its next event boundary)
        """
        self.lent -= 1
        if self.stopping or (self.running < self.concurrency and not self.reclaimers):
            self.running += 1
            return None
        wanted = anyio.Event()
        self.reclaimers.append(wanted)
        return wanted

    def pass_slot(self) -> None:
        """A worker at an event boundary passes its slot to the oldest reclaimer."""
        self.reclaimers.popleft().set()

    def _grant_reclaimers(self) -> None:
        while self.reclaimers and self.running < self.concurrency:
            self.running += 1
            self.reclaimers.popleft().set()

    def pause(self) -> None:
        """Workers stop taking this type's events."""
        self.paused = True

    def resume(self) -> None:
        """Workers take this type's events again."""
        self.paused = False

    def stop(self) -> None:
        """Shutdown's deadline passed: no handler may start; suspended handlers that
        want their slot back get it at once, so that they can unwind."""
        self.stopping = True
        self.scheduled = False
        while self.reclaimers:
            self.running += 1
            self.reclaimers.popleft().set()

    def reset(self) -> None:
        """Forget everything bound to the event loop that ran (the dispatcher stopped)."""
        self.running = 0
        self.lent = 0
        self.reclaimers.clear()
        self.limiter = None
        self.scheduled = False
        self.stopping = False

    def check(self) -> list[str]:
        """The gate's invariants; an empty list when they hold."""
        problems = [f"{name} < 0" for name in ("running", "lent") if getattr(self, name) < 0]
        if self.reclaimers and self.running < self.concurrency and not self.stopping:
            problems.append("a handler waits for its slot while one is free")
        return problems
