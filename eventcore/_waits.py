"""The deadlock escape (contract 8): handlers that wait lend their slot when waiting
could close a cycle.

A handler *waits* when it publishes into a full queue (for room) or calls
``publish_and_wait`` (for an outcome). Each wait is an edge from the handler's
type to the target type. A handler keeps its slot while it waits on a type whose
waits do not lead back to its own: that target progresses on its own, and the
held slot carries backpressure upstream. When the new edge closes a cycle (the
target is the handler's own type, or the target's handlers wait, directly or
through other types, on the handler's type), every handler waiting along that
cycle lends its slot - and the key it holds - for the rest of its wait: each type
on the cycle can start its queued events again, so every wait on it ends. A
suspended handler does not count against ``concurrency``; when its wait ends it
takes a slot back, ahead of new events (shielded from cancellation, so that no
handler code ever runs without a slot).

The graph is kept per type (``TypeState.waits``); it is only walked when a
handler is about to wait, never on the hot path.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio

from ._delivery import NO_KEY

if TYPE_CHECKING:
    from ._state import TypeState
    from ._workers import WorkerSlot


class Wait:
    """One handler waiting: its worker slot, its type, and what it waits on."""

    __slots__ = ("lent", "origin", "slot", "target")

    def __init__(self, slot: WorkerSlot, origin: TypeState, target: TypeState) -> None:
        self.slot = slot
        self.origin = origin
        self.target = target
        #: whether the handler gave its slot away for the rest of the wait
        self.lent = False


current_slot: ContextVar[WorkerSlot | None] = ContextVar("eventcore_worker_slot", default=None)


def begin_wait(pool: Any, target: TypeState) -> Wait | None:
    """Record that the current task, if it is one of *pool*'s handlers, waits on *target*.

    :return: the wait to pass to :func:`end_wait`, or None when the caller is not a
        handler of *pool* (an outside publisher holds no slot)
    """
    slot = current_slot.get()
    if slot is None or slot.pool is not pool or not slot.holding:
        return None
    if anyio.get_current_task().id != slot.task:
        return None  # a task the handler started: it holds no slot of its own
    origin = slot.state
    assert origin is not None
    wait = Wait(slot, origin, target)
    origin.waits.append(wait)
    cycle = _cycle_through(origin, target)
    if cycle:
        for state in cycle:
            for other in state.waits:
                if not other.lent and other.target in cycle:
                    _lend(pool, other)
    return wait


async def end_wait(pool: Any, wait: Wait | None) -> None:
    """Undo :func:`begin_wait`; if the slot was lent, take one back before returning.

    The wait for a slot is shielded: a handler cancelled meanwhile gets its slot
    first and only then sees the cancellation, so it never runs without one.
    """
    if wait is None:
        return
    origin = wait.origin
    try:
        origin.waits.remove(wait)
    except ValueError:  # the dispatcher stopped and forgot its waits
        return
    if not wait.lent:
        return
    slot = wait.slot
    wanted = origin.reclaim()
    if wanted is not None:
        with anyio.CancelScope(shield=True):
            await wanted.wait()
    slot.holding = True


def _lend(pool: Any, wait: Wait) -> None:
    """The waiting handler gives its slot, and the key it holds, to its type."""
    wait.lent = True
    slot = wait.slot
    slot.holding = False
    state = wait.origin
    state.let_go(slot.key)
    slot.key = NO_KEY
    state.lend()
    pool.kick(state)


def _cycle_through(origin: TypeState, target: TypeState) -> set[TypeState]:
    """The types on a cycle of waits through the new edge *origin* -> *target*
    (empty when the edge closes none)."""
    reachable = _reach(target)
    if origin not in reachable:
        return set()
    # the types from which origin can be reached again, among those target reaches
    return {state for state in reachable if origin in _reach(state)} | {origin}


def _reach(start: TypeState) -> set[TypeState]:
    """*start* and every type its handlers' waits lead to, transitively."""
    seen = {start}
    stack = [start]
    while stack:
        for wait in stack.pop().waits:
            if wait.target not in seen:
                seen.add(wait.target)
                stack.append(wait.target)
    return seen
