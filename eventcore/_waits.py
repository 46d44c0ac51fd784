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

The graph (:class:`WaitGraph`) belongs to the worker pool of one run; it is only
walked when a handler is about to wait, never on the hot path.
"""

from __future__ import annotations

from typing import Protocol

import anyio

from ._envelope import NO_KEY
from ._slot import WorkerSlot, current_slot
from ._state import TypeState


class Wait:
    """One handler waiting: its worker slot, its type, and what it waits on."""

    __slots__ = ("lending", "origin", "slot", "target", "thread")

    def __init__(self, slot: WorkerSlot, origin: TypeState, target: TypeState) -> None:
        self.slot = slot
        self.origin = origin
        self.target = target
        #: the waiting handler's thread (a plain handler publishing from it), if any
        self.thread = slot.thread
        #: whether the handler gave its slot away for the rest of the wait
        self.lending = False


class WaitGraph:
    """The waits of every type's handlers in one run: type -> its handlers' waits."""

    __slots__ = ("edges",)

    def __init__(self) -> None:
        self.edges: dict[TypeState, list[Wait]] = {}

    def add(self, wait: Wait) -> None:
        """*wait* begins."""
        self.edges.setdefault(wait.origin, []).append(wait)

    def remove(self, wait: Wait) -> bool:
        """*wait* ended; False when the graph was forgotten meanwhile (the run ended)."""
        waits = self.edges.get(wait.origin)
        if waits is None or wait not in waits:
            return False
        waits.remove(wait)
        if not waits:
            del self.edges[wait.origin]
        return True

    def of(self, state: TypeState) -> list[Wait]:
        """The waits of *state*'s handlers."""
        return self.edges.get(state, [])

    def clear(self) -> None:
        """Forget every wait (the run ended)."""
        self.edges.clear()


class Pool(Protocol):
    """What the escape needs of a worker pool."""

    waits: WaitGraph

    def kick(self, state: TypeState) -> None:
        """Get a worker coming for *state*'s queued events, if a slot is free."""


def begin_wait(
    pool: Pool | None, target: TypeState, slot: WorkerSlot | None = None
) -> Wait | None:
    """Record that a handler of *pool* waits on *target*: the handler of *slot* (a
    plain handler's thread), by default the current task if it is a handler.

    :return: the wait to pass to :func:`end_wait`, or None when there is no handler
        (an outside publisher holds no slot)
    """
    if slot is None:
        slot = current_slot.get()
        if slot is None or anyio.get_current_task().id != slot.task:
            return None  # not a worker, or a task a handler started: it holds no slot
    if pool is None or slot.pool is not pool or not slot.holding:
        return None
    origin = slot.state
    assert origin is not None
    wait = Wait(slot, origin, target)
    graph = pool.waits
    graph.add(wait)
    cycle = _cycle_through(graph, origin, target)
    if cycle:
        for state in cycle:
            for other in graph.of(state):
                if not other.lending and other.target in cycle:
                    _lend(pool, other)
    return wait


async def end_wait(pool: Pool | None, wait: Wait | None) -> None:
    """Undo :func:`begin_wait`; if the slot was lent, take one back before returning.

    The wait for a slot is shielded: a handler cancelled meanwhile gets its slot
    first and only then sees the cancellation, so it never runs without one.
    """
    if wait is None or pool is None:
        return
    if not pool.waits.remove(wait):  # the dispatcher stopped and forgot its waits
        return
    if not wait.lending:
        return
    wanted = wait.origin.reclaim()
    with anyio.CancelScope(shield=True):
        if wanted is not None:
            await wanted.wait()
        if wait.thread is not None:  # its thread's place in the limit, too
            await wait.thread.limiter.acquire_on_behalf_of(wait.thread.token)
    wait.slot.holding = True


def _lend(pool: Pool, wait: Wait) -> None:
    """The waiting handler gives its slot, and the key it holds, to its type."""
    wait.lending = True
    slot = wait.slot
    slot.holding = False
    state = wait.origin
    state.let_go(slot.key)
    slot.key = NO_KEY
    state.lend()
    if wait.thread is not None:  # a plain handler's thread, blocked: its place too
        wait.thread.limiter.release_on_behalf_of(wait.thread.token)
    pool.kick(state)


def _cycle_through(graph: WaitGraph, origin: TypeState, target: TypeState) -> set[TypeState]:
    """The types on a cycle of waits through the new edge *origin* -> *target*
    (empty when the edge closes none)."""
    reachable = _reach(graph, target)
    if origin not in reachable:
        return set()
    # the types from which origin can be reached again, among those target reaches
    return {state for state in reachable if origin in _reach(graph, state)} | {origin}


def _reach(graph: WaitGraph, start: TypeState) -> set[TypeState]:
    """*start* and every type its handlers' waits lead to, transitively."""
    seen = {start}
    stack = [start]
    while stack:
        for wait in graph.of(stack.pop()):
            if wait.target not in seen:
                seen.add(wait.target)
                stack.append(wait.target)
    return seen
