"""The bounded per-type queue and the overflow policies.

A channel is a ``deque`` with a size bound and a line of publishers waiting for
room. It never yields on its own: ``publish`` appends while there is room and
waits only when the queue is full, and a worker takes an event out only when
its handling starts, so the bound holds for everything not yet being handled
(no hidden batch buffer between queue and handler).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any

import anyio


class Overflow(enum.Enum):
    """What ``publish`` does when the event type's queue is full.

    The queue size is the backpressure knob: a full queue is the signal that
    handlers cannot keep up, and the policy says who pays for it.
    """

    #: The publisher waits for room (``timeout=`` bounds the wait: ``PublishTimeout``).
    BLOCK = "block"
    #: The new event is refused: ``publish`` returns ``False`` and ``on_drop`` is told.
    DROP_NEWEST = "drop_newest"
    #: The oldest queued event is evicted to ``on_drop``; the new one is accepted.
    DROP_OLDEST = "drop_oldest"
    #: ``publish`` raises :class:`~eventcore.QueueFull`.
    RAISE = "raise"


class Channel:
    """A bounded FIFO of accepted events plus the publishers waiting for room.

    ``held`` counts accepted events a worker took out of ``items`` but may not
    handle yet (per-key ordering parks them behind an earlier event with the same
    key). They still count as waiting, so the room left is ``limit - len(items)``
    with ``limit = maxsize - held``.
    """

    __slots__ = ("held", "items", "limit", "low_water", "maxsize", "overflow", "putters")

    def __init__(self, maxsize: int, overflow: Overflow) -> None:
        self.items: deque[Any] = deque()
        self.maxsize = maxsize
        self.limit = maxsize
        #: blocked publishers are woken together once the queue is down to this
        self.low_water = maxsize // 2
        self.held = 0
        self.overflow = overflow
        #: one event per publisher blocked on a full queue, oldest first
        self.putters: deque[anyio.Event] = deque()

    @property
    def queued(self) -> int:
        """Accepted events waiting: in the queue, or held back behind their key."""
        return len(self.items) + self.held

    def full(self) -> bool:
        """Whether a new event would exceed the bound."""
        return len(self.items) >= self.limit

    def resize(self, maxsize: int) -> None:
        """Change the bound; events already waiting stay."""
        self.maxsize = maxsize
        self.limit = maxsize - self.held
        self.low_water = maxsize // 2
        self.wake_putters()

    def hold(self) -> None:
        """An event left ``items`` but still waits (behind its key)."""
        self.held += 1
        self.limit -= 1

    def unhold(self) -> None:
        """A held event's handling starts: its room is free again."""
        self.held -= 1
        self.limit += 1
        self.wake_putter()

    def wake_putter(self) -> None:
        """Tell the longest-waiting blocked publisher that room may have appeared."""
        if self.putters:
            self.putters.popleft().set()

    def wake_putters(self) -> None:
        """Wake as many blocked publishers as there is room for, oldest first.

        Called when the queue is down to ``low_water``: each blocked publisher
        then refills many places per wake-up instead of one (no event and task
        switch per event while a fast publisher meets a slow handler); the bound
        is unchanged.
        """
        putters = self.putters
        for _ in range(min(len(putters), self.limit - len(self.items))):
            putters.popleft().set()

    async def wait_for_room(self) -> None:
        """Wait until the queue has room. Cancellation-safe: a wake-up is never lost.

        The caller appends right after this returns, without yielding in between.
        """
        while len(self.items) >= self.limit:
            room = anyio.Event()
            self.putters.append(room)
            try:
                await room.wait()
            except BaseException:
                if room.is_set():
                    # We were told about room but will not use it: pass it on.
                    self.wake_putter()
                else:
                    self.putters.remove(room)
                raise
