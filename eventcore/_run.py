"""One run of a dispatcher: its phase, and what exists only while it runs (the
worker pool, the event loop's token and thread). Written by the lifecycle, read by
the publish paths, the routes and the thread bridge."""

from __future__ import annotations

import enum

import anyio.lowlevel

from ._errors import DispatcherClosed
from ._slot import current_slot
from ._workers import WorkerPool


class Phase(enum.Enum):
    """Where a dispatcher is in its life."""

    NEW = "not started"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Run:
    """The phase of a dispatcher and the objects bound to its current event loop."""

    __slots__ = ("loop_thread", "phase", "pool", "token")

    def __init__(self) -> None:
        self.phase = Phase.NEW
        self.pool: WorkerPool | None = None
        self.token: anyio.lowlevel.EventLoopToken | None = None
        self.loop_thread: int | None = None

    def begin(self, pool: WorkerPool, token: anyio.lowlevel.EventLoopToken, thread: int) -> None:
        """The dispatcher runs, with *pool*, on the loop of *token* in *thread*."""
        self.pool, self.token, self.loop_thread = pool, token, thread
        self.phase = Phase.RUNNING

    def close(self) -> None:
        """Shutdown began: new publishes are refused (but from the dispatcher's handlers)."""
        self.phase = Phase.CLOSING

    def end(self) -> None:
        """The run ended: nothing of it is kept."""
        self.phase = Phase.CLOSED
        self.pool = self.token = self.loop_thread = None

    @property
    def running(self) -> bool:
        """Whether the dispatcher accepts events from any task."""
        return self.phase is Phase.RUNNING

    def in_own_worker(self) -> bool:
        """Whether the current task runs in one of this run's workers."""
        slot = current_slot.get()
        return slot is not None and slot.pool is self.pool and slot.pool is not None

    def closed_message(self, what: str = "publish") -> str:
        """Why *what* (a publish, ``drain()``) is refused now."""
        if self.phase is Phase.NEW:
            return f"the dispatcher is not running: {what} inside `async with dispatcher:`"
        if self.phase is Phase.CLOSED:
            return (
                "the dispatcher is closed (its `async with` block ended): it accepts no new "
                f"events; enter it again (`async with dispatcher:`) to {what}"
            )
        return f"the dispatcher is {self.phase.value}: it accepts no new events"

    def check_running(self) -> None:
        """Refuse publishing unless running (or closing, from one of its own handlers)."""
        if self.phase is not Phase.RUNNING and not (
            self.phase is Phase.CLOSING and self.in_own_worker()
        ):
            raise DispatcherClosed(self.closed_message())
