"""The state of one event type: four parts, each changed only by its own methods.

Split the way trio splits a channel's state:

=================== ============================================================
:class:`TypeQueue`  the bounded queue, publishers waiting for room, events held
(``_queue``)        behind their key, orphaned keys: accept, park, hand over,
                    withdraw, take, let go, evict, abandon
:class:`SlotGate`   the slots: running, lent, wanted back, paused, stopping, on
(``_gate``)         the ready line: acquire, release, lend, reclaim, pass, stop
:class:`Counters`   accepted, handled, dropped, refused, evicted, failed,
(``_counters``)     abandoned, in flight
:class:`DeliveryPlan` what the workers call: built by ``_plan.build_plan``,
(``_plan``)         never changed, swapped whole
=================== ============================================================

:class:`TypeState` holds the four, the type's settings and route, and the one
flag the hot loop reads (``attention``), recomputed by :meth:`TypeState.refresh`
after every transition that may raise or lower it. No other module assigns a
field of these classes (``tests/test_state_fields.py`` scans the sources), except
the hot-path counts listed in that test, measured in ``bench/PROFILE.md``.
:meth:`TypeState.check` states the invariants of every part; the test suite calls
it after every step of its state machines.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import anyio

from ._config import TypeConfig
from ._counters import Counters
from ._errors import InvalidEvent
from ._gate import SlotGate
from ._plan import EMPTY_PLAN, DeliveryPlan
from ._queue import Putter, TypeQueue
from ._wake import Wake


class TypeState:
    """Everything the dispatcher keeps for one concrete event type (see the module doc)."""

    __slots__ = (
        "attention",
        "config",
        "counts",
        "event_type",
        "gate",
        "items",
        "plan",
        "pump",
        "pump_route",
        "queue",
        "quiet",
        "resumed",
        "route",
        "swept_at",
    )

    def __init__(self, event_type: type, config: TypeConfig) -> None:
        self.event_type = event_type
        #: the settings in force (``Dispatcher.configure``)
        self.config = config
        self.counts = Counters()
        self.queue = TypeQueue(config.queue_size, config.overflow, self.counts)
        #: the queue's deque itself (never replaced), for the hot paths
        self.items = self.queue.items
        self.gate = SlotGate(config.concurrency)
        self.plan: DeliveryPlan = EMPTY_PLAN
        #: whether a worker must look beyond its next event (see ``refresh``)
        self.attention = False
        #: the transport this type is routed through (None: in memory)
        self.route: Any = None
        #: the pump fetching this type's events (its cancel scope), and the route it reads
        self.pump: anyio.CancelScope | None = None
        self.pump_route: Any = None
        #: set by ``resume`` for a pump that waits while the type is paused
        self.resumed: anyio.Event | None = None
        #: set when nothing is queued or in flight (for drain)
        self.quiet: anyio.Event | None = None
        #: ``accepted`` at the last sweep of the table (see ``_table``)
        self.swept_at = -1

    # -- settings, plan, route ---------------------------------------------------------

    def apply(self, config: TypeConfig) -> None:
        """Take new settings. Queued events stay (a smaller bound applies to new
        publishes); a larger bound or limit lets waiting publishers and handlers in."""
        self.config = config
        self.queue.resize(config.queue_size, config.overflow)
        self.gate.resize(config.concurrency)
        self.refresh()

    def use_plan(self, plan: DeliveryPlan) -> None:
        """Deliver with *plan* from the next event on."""
        self.plan = plan
        self.refresh()

    def reroute(self, route: Any) -> None:
        """Route the type through *route* (None: in memory)."""
        self.route = route

    def key_of(self, event: Any) -> Hashable:
        """The key of *event* (computed once, when it is published or fetched).

        :raises InvalidEvent: the key function failed, or returned an unhashable value
        """
        key_function = self.config.key
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

    def refresh(self) -> None:
        """Recompute ``attention``: what a worker must check besides its next event."""
        gate = self.gate
        self.attention = (
            not self.plan.plain
            or bool(gate.reclaimers)
            or bool(self.queue.orphans)
            or gate.running > gate.concurrency
            or gate.stopping
            or gate.paused
        )

    # -- reading -----------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Accepted events waiting: in the queue, or held back behind their key."""
        return self.queue.queued

    @property
    def in_flight(self) -> int:
        """Accepted events being handled: neither queued, handled, evicted nor abandoned."""
        return self.counts.in_flight(self.queue.queued)

    @property
    def busy(self) -> bool:
        """Whether anything is queued, in flight or waiting to enter."""
        return self.queue.waiting or self.in_flight > 0

    @property
    def paused(self) -> bool:
        """Whether workers are held off this type (``Dispatcher.pause``)."""
        return self.gate.paused

    @property
    def idle(self) -> bool:
        """Whether nothing refers to this state but the dispatcher's table (a thread
        of a plain handler that still runs, even abandoned, holds its place in the
        type's limit: the state stays)."""
        gate = self.gate
        return not (
            self.queue.waiting
            or self.in_flight
            or gate.running
            or gate.lent
            or gate.scheduled
            or gate.reclaimers
            or gate.threads
            or self.queue.keys
            or self.pump is not None
        )

    # -- transitions that concern more than one part -----------------------------------

    def accept(self, item: Any) -> None:
        """*item* enters the queue (the caller checked there is room)."""
        self.queue.accept(item)

    def park(self, item: Any, room_only: bool = False, wake: Wake | None = None) -> Putter:
        """A publisher waits for room (see :meth:`TypeQueue.park`)."""
        return self.queue.park(item, room_only, wake)

    def withdraw(self, putter: Putter) -> bool:
        """A cancelled publisher takes its handed-over event back (see
        :meth:`TypeQueue.withdraw`); wakes ``drain`` when that left nothing."""
        if self.queue.withdraw(putter):
            self.quieted()
            return True
        return False

    def forget(self, putter: Putter) -> None:
        """A waiting publisher gave up before it got room."""
        if self.queue.forget(putter):
            self.quieted()

    def take(self, holder_key: Any) -> tuple[Any, Any]:
        """The next event a worker may start, and its key (see :meth:`TypeQueue.take`)."""
        orphans = bool(self.queue.orphans)
        taken = self.queue.take(holder_key)
        if orphans and not self.queue.orphans:
            self.refresh()
        return taken

    def let_go(self, key: Any) -> None:
        """A worker stops serving *key* before its backlog is done: someone else will."""
        if self.queue.let_go(key):
            self.attention = True  # the hot loop serves no backlog: the general one does

    def evict(self) -> Any:
        """Take the oldest waiting event out (DROP_OLDEST)."""
        return self.queue.evict()

    def abandon(self) -> list[Any]:
        """Take every waiting event out (at shutdown); see :meth:`TypeQueue.abandon`."""
        return self.queue.abandon()

    def release(self) -> None:
        """A worker gives its slot back (to a handler that wants one back, if any)."""
        self.gate.release()
        self.refresh()

    def lend(self) -> None:
        """A handler suspended in a wait gives its slot away."""
        self.gate.lend()
        self.refresh()

    def reclaim(self) -> anyio.Event | None:
        """A suspended handler's wait ended: a slot now (None), or the line entry to
        wait on (see :meth:`SlotGate.reclaim`)."""
        wanted = self.gate.reclaim()
        if wanted is not None:
            self.refresh()
        return wanted

    def pass_slot(self) -> None:
        """A worker at an event boundary passes its slot to the oldest reclaimer."""
        self.gate.pass_slot()
        self.refresh()

    def pause(self) -> None:
        """Workers stop taking this type's events: a worker serving it leaves at its
        next event boundary (the ``attention`` flag), none is scheduled for it. Handlers
        already running finish, and a suspended one still gets its slot back. Queued
        events stay queued; publishers see the overflow policy once the queue is full."""
        self.gate.pause()
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
        self.gate.resume()
        self.refresh()
        resumed, self.resumed = self.resumed, None
        if resumed is not None:
            resumed.set()

    def stop(self) -> None:
        """Shutdown's deadline passed: no handler may start (see :meth:`SlotGate.stop`)."""
        self.gate.stop()
        self.refresh()

    def attach_pump(self, scope: anyio.CancelScope, route: Any) -> None:
        """A pump now fetches this type's events from *route*."""
        self.pump, self.pump_route = scope, route

    def detach_pump(self, scope: anyio.CancelScope | None = None) -> None:
        """The pump (*scope*, if given: only when it is still that one) stopped."""
        if scope is None or self.pump is scope:
            self.pump = self.pump_route = None

    def quiet_event(self) -> anyio.Event:
        """What ``drain`` waits on: set once nothing is queued or in flight."""
        if self.quiet is None:
            self.quiet = anyio.Event()
        return self.quiet

    def quieted(self) -> None:
        """Wake ``drain`` if nothing is queued or in flight any more."""
        quiet = self.quiet
        if quiet is not None and not self.busy:
            self.quiet = None
            quiet.set()

    def swept(self) -> bool:
        """A sweep of the table looks: whether nothing was accepted since the last one."""
        accepted = self.counts.accepted
        unchanged = accepted == self.swept_at
        self.swept_at = accepted
        return unchanged

    def reset(self) -> None:
        """Forget everything bound to the event loop that ran (the dispatcher stopped)."""
        self.abandon()
        self.quieted()
        self.quiet = None
        self.gate.reset()
        self.pump = self.pump_route = None
        self.resumed = None
        self.refresh()

    # -- invariants --------------------------------------------------------------------

    def check(self) -> list[str]:
        """The invariants of every part; an empty list when they hold."""
        name = self.event_type.__qualname__
        counts, gate = self.counts, self.gate
        problems = [*self.queue.check(), *gate.check(), *counts.check()]
        in_flight = self.in_flight
        if in_flight < 0:
            problems.append(
                f"in_flight={in_flight} < 0: more handled, queued, evicted or abandoned "
                "than accepted"
            )
        if in_flight < gate.lent:
            problems.append(f"in_flight={in_flight} < lent={gate.lent}")
        if self.queue.orphans and not self.attention:
            problems.append("an orphan backlog but no attention: no worker would serve it")
        if (gate.paused or gate.stopping) and not self.attention:
            problems.append("paused or stopping but no attention: a worker would go on")
        if self.plan.subs and self.plan.plain and self.config.key is not None:
            problems.append("a keyed type with a plain plan")
        if self.queue.maxsize != self.config.queue_size:
            problems.append("the queue's bound is not the configured queue_size")
        if gate.concurrency != self.config.concurrency:
            problems.append("the gate's limit is not the configured concurrency")
        return [f"{name}: {problem}" for problem in problems]
