"""One model of an event type's state, changed only by the named transitions below.

A :class:`TypeState` holds everything the dispatcher keeps for one concrete event
type: its settings, its resolved subscriptions, the bounded queue, the events held
back behind their key, the publishers waiting for room, the worker slots (held,
lent, wanted back), the waits of its handlers, and its counters. Every other
module reads it and changes it through these transitions:

=============== ==============================================================
``accept``      an event enters the queue (``publish`` with room)
``park_putter`` a publisher waits for room (the queue is full under BLOCK)
``hand_over``   room appeared: waiting publishers' events enter, oldest first
``withdraw``    a cancelled publisher takes its handed-over event back
``take``        a worker takes the next event it may start (or holds it behind
                its key)
``start`` /     an event's handling begins / ends (``in_flight``)
``finish``
``evict``       DROP_OLDEST takes the oldest waiting event out
``abandon``     shutdown takes every waiting event out
``acquire`` /   a worker takes / gives back one of the type's slots (the
``release``     pool inlines the common case: ``WorkerPool._next_state``)
``lend`` /      a handler suspended in a wait gives its slot (and key) away /
``reclaim``     takes a slot back, ahead of new events
``pause`` /     workers stop / go on taking the type's events (handlers running
``resume``      finish; publishers see the overflow policy once the queue fills)
=============== ==============================================================

:meth:`TypeState.check` states the invariants; the test suite calls it after
every step of its state machines.

Fairness (contract 10) comes from the hand-over: when room appears while
publishers wait, the oldest waiting publisher's event enters the queue at once,
on its behalf. So the queue stays full for newcomers as long as anyone waits,
and the fast path needs no extra test to stay behind them.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import anyio

from ._channel import Overflow
from ._config import Retry, TypeConfig
from ._delivery import NO_KEY, Envelope
from ._errors import InvalidEvent

if TYPE_CHECKING:
    from ._registry import Subscription
    from ._waits import Wait
    from ._wake import Wake


#: the counters a type keeps across the retirement of its state
COUNTERS = ("accepted", "handled", "dropped", "refused", "evicted", "failed", "abandoned")


class Putter:
    """A publisher waiting for room, with the item it wants to queue."""

    __slots__ = ("accepted", "closed", "item", "room_only", "wake")

    def __init__(self, item: Any, room_only: bool = False, wake: Wake | None = None) -> None:
        self.item = item
        #: only wants to hear of room (a transport's pump), has nothing to queue
        self.room_only = room_only
        #: set by ``hand_over``: the item is in the queue, the publish took effect
        self.accepted = False
        #: set by ``abandon``: the dispatcher closed before there was room
        self.closed = False
        #: set when the publisher may go on (one waiter: the publisher)
        self.wake: Wake = anyio.Event() if wake is None else wake


class TypeState:
    """Everything the dispatcher keeps for one concrete event type (see the module doc)."""

    __slots__ = (
        "abandoned",
        "accepted",
        "attention",
        "awaits",
        "calls",
        "concurrency",
        "dropped",
        "event_type",
        "evicted",
        "failed",
        "handled",
        "handler_timeout",
        "held",
        "held_order",
        "in_flight",
        "items",
        "key",
        "keys",
        "lent",
        "limit",
        "limiter",
        "maxsize",
        "orphans",
        "overflow",
        "paused",
        "plain",
        "pump",
        "pump_route",
        "putters",
        "quiet",
        "reclaimers",
        "refused",
        "resumed",
        "retry",
        "route",
        "running",
        "scheduled",
        "single",
        "stopping",
        "subs",
        "swept_at",
        "waits",
    )

    def __init__(self, event_type: type, config: TypeConfig) -> None:
        self.event_type = event_type
        self.maxsize = config.queue_size
        self.overflow = config.overflow
        self.concurrency = config.concurrency
        self.key: Callable[[Any], Hashable] | None = config.key
        self.handler_timeout: float | None = config.handler_timeout
        self.retry: Retry | None = config.retry
        #: the transport this type is routed through (None: in memory)
        self.route: Any = None
        #: the pump fetching this type's events (its cancel scope), and the route it reads
        self.pump: anyio.CancelScope | None = None
        self.pump_route: Any = None
        self.subs: tuple[Subscription[Any], ...] = ()
        #: (what to await, filter, the handler as given) of each subscription: what the
        #: hot loop needs, unpacked
        self.calls: tuple[
            tuple[Callable[[Any], Any], Callable[[Any], bool] | None, Callable[..., Any]], ...
        ] = ()
        #: what to await of each subscription when none has a filter (else None): the hot
        #: loop's shortest form of ``calls``
        self.awaits: tuple[Callable[[Any], Any], ...] | None = ()
        #: what to await when there is exactly one subscription, without a filter
        self.single: Callable[[Any], Any] | None = None
        #: whether workers may call handlers inline (no key, timeout, retry, middleware)
        self.plain = True
        #: whether a worker must look beyond its next event (see ``refresh``)
        self.attention = False
        #: set by shutdown once its deadline passed: no handler starts any more
        self.stopping = False
        #: ``Dispatcher.pause``: no event of this type starts (see ``pause``)
        self.paused = False
        #: set by ``resume`` for a pump that waits while the type is paused
        self.resumed: anyio.Event | None = None
        # -- the queue --
        self.items: deque[Any] = deque()
        #: how many events may be in ``items`` now: ``maxsize - held``
        self.limit = config.queue_size
        #: publishers waiting for room, oldest first
        self.putters: deque[Putter] = deque()
        # -- per-key order --
        #: active keys (an event with this key is being handled, or its backlog waits
        #: for a worker) -> the events held back behind it, as (hold number, item)
        self.keys: dict[Hashable, deque[tuple[int, Any]]] = {}
        #: active keys whose backlog no worker serves (its holder left or lent it)
        self.orphans: deque[Hashable] = deque()
        #: events held back in ``keys`` (they count as queued)
        self.held = 0
        self.held_order = itertools.count()
        # -- slots --
        #: slots taken: workers serving this type, plus handlers not suspended
        self.running = 0
        #: handlers that lent their slot while suspended in a wait
        self.lent = 0
        #: worker threads of plain ``def`` handlers (created on first use; see _threads)
        self.limiter: anyio.CapacityLimiter | None = None
        #: handlers that lent their slot and want one back, oldest first
        self.reclaimers: deque[anyio.Event] = deque()
        #: whether the type is on the worker pool's ready line
        self.scheduled = False
        #: the waits of this type's handlers (the deadlock escape's graph)
        self.waits: list[Wait] = []
        #: ``accepted`` at the last sweep of the table (see ``_table``)
        self.swept_at = -1
        #: set when nothing is queued or in flight (for drain)
        self.quiet: anyio.Event | None = None
        # -- counters --
        self.in_flight = 0
        self.accepted = 0
        self.handled = 0
        self.dropped = 0
        self.refused = 0
        self.evicted = 0
        self.failed = 0
        self.abandoned = 0

    # -- settings --------------------------------------------------------------------

    def apply(self, config: TypeConfig) -> None:
        """Take new settings. Queued events stay (a smaller bound applies to new
        publishes); a larger bound or limit lets waiting publishers and handlers in."""
        self.maxsize = config.queue_size
        self.limit = config.queue_size - self.held
        self.overflow = config.overflow
        self.concurrency = config.concurrency
        self.key = config.key
        self.handler_timeout = config.handler_timeout
        self.retry = config.retry
        if self.limiter is not None:
            self.limiter.total_tokens = config.concurrency
        if config.overflow is not Overflow.BLOCK:
            self._release_putters()
        self.hand_over()
        self._grant_reclaimers()
        self.refresh()

    def thread_limiter(self) -> anyio.CapacityLimiter:
        """The limiter of this type's worker threads: ``concurrency`` at a time."""
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.concurrency)
        return self.limiter

    def refresh(self) -> None:
        """Recompute ``attention``: what a worker must check besides its next event."""
        self.attention = (
            not self.plain
            or bool(self.reclaimers)
            or bool(self.orphans)
            or self.running > self.concurrency
            or self.stopping
            or self.paused
        )

    def handler_of(self, call: Callable[[Any], Any]) -> Callable[..., Any]:
        """The handler as given whose subscription awaits *call* (for failure reports)."""
        for awaited, _, handler in self.calls:
            if awaited is call:
                return handler
        return call  # unsubscribed meanwhile: its adapter is the best name left

    def key_of(self, event: Any) -> Hashable:
        """The key of *event* (computed once, when it is published or fetched).

        :raises InvalidEvent: the key function failed, or returned an unhashable value
        """
        key_function = self.key
        assert key_function is not None
        try:
            key = key_function(event)
            hash(key)
        except Exception as exc:
            raise InvalidEvent(
                f"the key function of {self.event_type.__qualname__} failed on {event!r} "
                f"({type(exc).__name__}: {exc}); a key must be a hashable value such as a "
                "str, int or tuple"
            ) from exc
        return key

    # -- the queue -------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Accepted events waiting: in the queue, or held back behind their key."""
        return len(self.items) + self.held

    @property
    def busy(self) -> bool:
        """Whether anything is queued, in flight or waiting to enter."""
        return bool(self.items) or self.held > 0 or self.in_flight > 0 or bool(self.putters)

    @property
    def idle(self) -> bool:
        """Whether nothing refers to this state but the dispatcher's table."""
        return not (
            self.items
            or self.held
            or self.in_flight
            or self.putters
            or self.running
            or self.lent
            or self.scheduled
            or self.waits
            or self.reclaimers
            or self.keys
            or self.pump is not None
        )

    def full(self) -> bool:
        """Whether a new event would exceed the bound."""
        return len(self.items) >= self.limit

    def accept(self, item: Any) -> None:
        """*item* enters the queue (the caller checked there is room)."""
        self.items.append(item)
        self.accepted += 1

    def park_putter(self, item: Any, room_only: bool = False, wake: Wake | None = None) -> Putter:
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
            self.accepted += 1
            putter.accepted = True
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
                self.accepted -= 1
                self.hand_over()
                self.quieted()
                return True
        for key, waiting in self.keys.items():
            for index, (_, held) in enumerate(waiting):
                if held is item:
                    del waiting[index]
                    self._unhold()
                    self.accepted -= 1
                    if not waiting and key in self.orphans:
                        self.orphans.remove(key)
                        del self.keys[key]
                    return True
        return False

    def forget_putter(self, putter: Putter) -> None:
        """A waiting publisher gave up before it got room."""
        try:
            self.putters.remove(putter)
        except ValueError:
            return
        self.quieted()

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
            if not self.orphans:
                self.refresh()
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

    def let_go(self, key: Any) -> None:
        """A worker stops serving *key* before its backlog is done: someone else will."""
        if key is NO_KEY:
            return
        if self.keys.get(key):
            self.orphans.append(key)
            self.attention = True  # the hot loop serves no backlog: the general one does
        else:
            self.keys.pop(key, None)

    def start(self) -> None:
        """An event's handling begins."""
        self.in_flight += 1

    def finish(self) -> None:
        """An event's handling ended: every matching handler ran."""
        self.in_flight -= 1
        self.handled += 1

    def cut_off(self) -> None:
        """An event's handling was cut off by shutdown."""
        self.in_flight -= 1
        self.abandoned += 1

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
        self.evicted += 1
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
        self.abandoned += len(lost)
        for putter in self.putters:
            putter.closed = True
            putter.wake.set()
            if not putter.room_only:
                self.refused += 1  # its publish raises DispatcherClosed
        self.putters.clear()
        return lost

    def _release_putters(self) -> None:
        """The policy stopped being BLOCK: waiting publishers retry under the new one."""
        for putter in self.putters:
            putter.wake.set()
        self.putters.clear()

    # -- slots -----------------------------------------------------------------------

    def release(self) -> None:
        """A worker gives its slot back: to a handler that wants one back, if any."""
        if self.reclaimers and not self.stopping and self.running <= self.concurrency:
            self._grant(self.reclaimers.popleft())
        else:
            self.running -= 1
        self.refresh()

    def lend(self) -> None:
        """A handler suspended in a wait gives its slot away."""
        self.running -= 1
        self.lent += 1
        self._grant_reclaimers()
        self.refresh()

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
        self.refresh()
        return wanted

    def pass_slot(self) -> None:
        """A worker at an event boundary passes its slot to the oldest reclaimer."""
        self._grant(self.reclaimers.popleft())
        self.refresh()

    def _grant(self, wanted: anyio.Event) -> None:
        wanted.set()  # the slot is counted in ``running`` for it already

    def _grant_reclaimers(self) -> None:
        while self.reclaimers and self.running < self.concurrency:
            self.running += 1
            self._grant(self.reclaimers.popleft())

    def pause(self) -> None:
        """Workers stop taking this type's events: a worker serving it leaves at its
        next event boundary (the ``attention`` flag), none is scheduled for it. Handlers
        already running finish, and a suspended one still gets its slot back. Queued
        events stay queued; publishers see the overflow policy once the queue is full."""
        self.paused = True
        self.refresh()
        quiet, self.quiet = self.quiet, None
        if quiet is not None:
            quiet.set()  # drain() does not wait for a paused type: let it look again

    def resumption(self) -> anyio.Event:
        """What a pump waits on while the type is paused (set by ``resume``)."""
        if self.resumed is None:
            self.resumed = anyio.Event()
        return self.resumed

    def resume(self) -> None:
        """Workers take this type's events again (the caller schedules one); a pump
        waiting while the type was paused fetches again."""
        self.paused = False
        self.refresh()
        resumed, self.resumed = self.resumed, None
        if resumed is not None:
            resumed.set()

    def stop(self) -> None:
        """Shutdown's deadline passed: no handler may start; suspended handlers that
        want their slot back get it at once, so that they can unwind."""
        self.stopping = True
        while self.reclaimers:
            self.running += 1
            self._grant(self.reclaimers.popleft())
        self.refresh()

    def quieted(self) -> None:
        """Wake ``drain`` if nothing is queued or in flight any more."""
        quiet = self.quiet
        if quiet is not None and not self.busy:
            self.quiet = None
            quiet.set()

    def reset(self) -> None:
        """Forget everything bound to the event loop that ran (the dispatcher stopped)."""
        self.abandon()
        self.quieted()
        self.quiet = None
        self.running = 0
        self.lent = 0
        self.reclaimers.clear()
        self.waits.clear()
        self.limiter = None
        self.pump = self.pump_route = None
        self.scheduled = False
        self.stopping = False
        self.resumed = None
        self.refresh()

    # -- the counters that outlive the state -----------------------------------------

    def counters(self) -> dict[str, int]:
        """What a retired state leaves behind (see ``_table``: nothing pinned)."""
        return {name: getattr(self, name) for name in COUNTERS}

    def restore(self, counters: dict[str, int]) -> None:
        """Continue the counters of a retired state of the same type."""
        for name, value in counters.items():
            setattr(self, name, value)

    # -- invariants ------------------------------------------------------------------

    def check(self) -> list[str]:
        """The invariants of the model; an empty list when they hold."""
        problems: list[str] = []
        name = self.event_type.__qualname__

        def need(condition: bool, what: str) -> None:
            if not condition:
                problems.append(f"{name}: {what}")

        held = sum(len(waiting) for waiting in self.keys.values())
        need(self.held == held, f"held={self.held} but {held} events wait behind keys")
        need(self.limit == self.maxsize - self.held, "limit != maxsize - held")
        need(
            not self.putters or len(self.items) >= self.limit,
            f"{len(self.putters)} publisher(s) wait while the queue has room",
        )
        need(
            self.accepted
            == self.handled + self.queued + self.in_flight + self.evicted + self.abandoned,
            "accepted != handled + queued + in_flight + evicted + abandoned",
        )
        for counter in ("in_flight", "running", "lent", "held", "handled", "accepted"):
            need(getattr(self, counter) >= 0, f"{counter} < 0")
        need(
            self.running + self.lent >= 0 and self.in_flight >= self.lent,
            f"in_flight={self.in_flight} < lent={self.lent}",
        )
        need(
            not self.reclaimers or self.running >= self.concurrency or self.stopping,
            "a handler waits for its slot while one is free",
        )
        need(all(key in self.keys for key in self.orphans), "an orphan key is not active")
        need(len(set(map(id, self.orphans))) == len(self.orphans), "an orphan twice")
        return problems
