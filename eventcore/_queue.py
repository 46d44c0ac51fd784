"""The queue part of a type's state: the bounded queue, the publishers waiting for
room, and the events held back behind their key.

Fairness (contract 10) comes from the hand-over: when room appears while
publishers wait, the oldest waiting publisher's event enters the queue at once,
on its behalf. So the queue stays full for newcomers as long as anyone waits,
and the fast path needs no extra test to stay behind them.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable
from typing import Any

import anyio

from ._config import Overflow
from ._counters import Counters
from ._envelope import NO_KEY, Envelope
from ._wake import Wake


class Putter:
    """A publisher waiting for room, with the item it wants to queue."""

    __slots__ = ("closed", "entered", "item", "room_only", "wake")

    def __init__(self, item: Any, room_only: bool = False, wake: Wake | None = None) -> None:
        self.item = item
        #: only wants to hear of room (a transport's pump), has nothing to queue
        self.room_only = room_only
        #: set by ``hand_over``: the item is in the queue, the publish took effect
        self.entered = False
        #: set by ``abandon``: the dispatcher closed before there was room
        self.closed = False
        #: set when the publisher may go on (one waiter: the publisher)
        self.wake: Wake = anyio.Event() if wake is None else wake


class TypeQueue:
    """Accepted events waiting for a worker, in order, under a bound.

    ``held`` counts events a worker took out of ``items`` but may not start yet
    (an earlier event with their key is being handled); they still count as
    waiting, so the room left is ``limit - len(items)`` with ``limit = maxsize - held``.
    """

    __slots__ = (
        "counts",
        "held",
        "held_order",
        "items",
        "keys",
        "limit",
        "maxsize",
        "orphans",
        "overflow",
        "putters",
    )

    def __init__(self, maxsize: int, overflow: Overflow, counts: Counters) -> None:
        self.items: deque[Any] = deque()
        self.maxsize = maxsize
        #: how many events may be in ``items`` now: ``maxsize - held``
        self.limit = maxsize
        self.overflow = overflow
        #: where acceptance, eviction and abandonment are counted
        self.counts = counts
        #: publishers waiting for room, oldest first
        self.putters: deque[Putter] = deque()
        #: active keys (an event with this key is being handled, or its backlog waits
        #: for a worker) -> the events held back behind it, as (hold number, item)
        self.keys: dict[Hashable, deque[tuple[int, Any]]] = {}
        #: active keys whose backlog no worker serves (its holder left or lent it)
        self.orphans: deque[Hashable] = deque()
        #: events held back in ``keys`` (they count as queued)
        self.held = 0
        self.held_order = itertools.count()

    @property
    def queued(self) -> int:
        """Accepted events waiting: in the queue, or held back behind their key."""
        return len(self.items) + self.held

    @property
    def waiting(self) -> bool:
        """Whether anything is queued or waiting to enter."""
        return bool(self.items) or self.held > 0 or bool(self.putters)

    def full(self) -> bool:
        """Whether a new event would exceed the bound."""
        return len(self.items) >= self.limit

    def resize(self, maxsize: int, overflow: Overflow) -> None:
        """Take a new bound and policy: queued events stay (a smaller bound applies to
        new publishes); waiting publishers enter if there is room now, or retry under
        a policy that is no longer BLOCK."""
        self.maxsize = maxsize
        self.limit = maxsize - self.held
        self.overflow = overflow
        if overflow is not Overflow.BLOCK:
            for putter in self.putters:
                putter.wake.set()
            self.putters.clear()
        self.hand_over()

    def accept(self, item: Any) -> None:
        """*item* enters the queue (the caller checked there is room)."""
        self.items.append(item)
        self.counts.accept()

    def park(self, item: Any, room_only: bool = False, wake: Wake | None = None) -> Putter:
        """A publisher waits for room for *item*, behind every earlier one (on *wake*,
        default a new ``anyio.Event``)."""
        putter = Putter(item, room_only, wake)
        self.putters.append(putter)
        return putter

    def hand_over(self) -> None:
        """Room appeared: queue waiting publishers' events, oldest first, and wake them."""
        putters = self.putters
        items = self.items
        while putters and len(items) < self.limit:
            putter = putters.popleft()
            if putter.room_only:
                putter.wake.set()
                continue
            items.append(putter.item)
            self.counts.accept()
            putter.entered = True
            putter.wake.set()

    def withdraw(self, putter: Putter) -> bool:
        """Take a handed-over event back out for a publisher that was cancelled first.

        Found by identity: if the same object was published twice, either copy may go;
        the object is then handled once per publish that returned normally.

        :return: whether it was still waiting (then the publish had no effect);
            False when its handling has started (then the publish took effect)
        """
        item = putter.item
        items = self.items
        for index in range(len(items) - 1, -1, -1):
            if items[index] is item:
                del items[index]
                self.counts.unaccept()
                self.hand_over()
                return True
        for key, waiting in self.keys.items():
            for index, (_, held) in enumerate(waiting):
                if held is item:
                    del waiting[index]
                    self._unhold()
                    self.counts.unaccept()
                    if not waiting and key in self.orphans:
                        self.orphans.remove(key)
                        del self.keys[key]
                    return True
        return False

    def forget(self, putter: Putter) -> bool:
        """A waiting publisher gave up before it got room; whether it was waiting."""
        try:
            self.putters.remove(putter)
        except ValueError:
            return False
        return True

    def take(self, holder_key: Any) -> tuple[Any, Any]:
        """The next event a worker may start, and its key.

        Backlogs without a holder come first (they were taken out of the queue
        before everything in it); an event whose key is active is held back
        behind it and the next one is looked at.

        :param holder_key: the key the worker holds (NO_KEY: none); its backlog
            comes before anything else
        :return: (item, key), or (None, NO_KEY) when nothing can start
        """
        if holder_key is not NO_KEY:
            waiting = self.keys.get(holder_key)
            if waiting:
                item = waiting.popleft()[1]
                self._unhold()
                return item, holder_key
            self.keys.pop(holder_key, None)
        if self.orphans:
            key = self.orphans.popleft()
            item = self.keys[key].popleft()[1]
            self._unhold()
            return item, key
        items = self.items
        while items:
            item = items.popleft()
            key = item.key if item.__class__ is Envelope else NO_KEY
            if key is NO_KEY:
                if self.putters:
                    self.hand_over()
                return item, NO_KEY
            waiting = self.keys.get(key)
            if waiting is None:
                self.keys[key] = deque()
                if self.putters:
                    self.hand_over()
                return item, key
            waiting.append((next(self.held_order), item))
            self.held += 1
            self.limit -= 1
        return None, NO_KEY

    def _unhold(self) -> None:
        self.held -= 1
        self.limit += 1
        if self.putters:
            self.hand_over()

    def let_go(self, key: Any) -> bool:
        """A worker stops serving *key* before its backlog is done: someone else will.

        :return: whether the key's backlog is now an orphan (a worker must look for it)
        """
        if key is NO_KEY:
            return False
        if self.keys.get(key):
            self.orphans.append(key)
            return True
        self.keys.pop(key, None)
        return False

    def evict(self) -> Any:
        """Take the oldest waiting event out (DROP_OLDEST).

        Events held behind their key left the queue before everything in it, so
        the oldest of them (by the order they were held in) goes first.
        """
        oldest_key: Any = NO_KEY
        oldest: deque[tuple[int, Any]] | None = None
        for key, waiting in self.keys.items():
            if waiting and (oldest is None or waiting[0][0] < oldest[0][0]):
                oldest_key, oldest = key, waiting
        if oldest is None:
            item = self.items.popleft()
        else:
            item = oldest.popleft()[1]
            self.held -= 1
            self.limit += 1
            if not oldest and oldest_key in self.orphans:
                self.orphans.remove(oldest_key)
                del self.keys[oldest_key]
        self.counts.evict()
        return item

    def abandon(self) -> list[Any]:
        """Take every waiting event out (at shutdown), count it abandoned, and release
        the waiting publishers (they raise ``DispatcherClosed``, counted as refused)."""
        lost = list(self.items)
        self.items.clear()
        for waiting in self.keys.values():
            lost.extend(item for _, item in waiting)
        self.keys.clear()
        self.orphans.clear()
        self.held = 0
        self.limit = self.maxsize
        self.counts.abandon(len(lost))
        for putter in self.putters:
            putter.closed = True
            putter.wake.set()
            if not putter.room_only:
                self.counts.refuse()  # its publish raises DispatcherClosed
        self.putters.clear()
        return lost

    def check(self) -> list[str]:
        """The queue's invariants; an empty list when they hold."""
        problems = []
        held = sum(len(waiting) for waiting in self.keys.values())
        if self.held != held:
            problems.append(f"held={self.held} but {held} events wait behind keys")
        if self.limit != self.maxsize - self.held:
            problems.append("limit != maxsize - held")
        if self.putters and len(self.items) < self.limit:
            problems.append(f"{len(self.putters)} publisher(s) wait while the queue has room")
        if not all(key in self.keys for key in self.orphans):
            problems.append("an orphan key is not active")
        if len(set(map(id, self.orphans))) != len(self.orphans):
            problems.append("an orphan twice")
        if self.held < 0:
            problems.append("held < 0")
        return problems
