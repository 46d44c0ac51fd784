"""The table of per-type states: created on first use, retired when idle (nothing pinned).

A :class:`TypeState` exists for every concrete event class that is queued, in
flight, configured, or was published since the last sweep. An idle state of a
class that has no settings of its own is *retired*: its counters move to a
weak-keyed table (so ``stats()`` goes on counting while the class lives) and the
class itself is no longer referenced (contract 12: event classes created at run
time are not kept alive). A state is retired when it was idle, with nothing
accepted, from one sweep to the next, so a type in steady use keeps its state.
Sweeps run when the table has doubled since the last one and when subscriptions
change; when the dispatcher stops every state is retired. Their cost is
amortized, and a subscription change never visits every type ever seen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator

from ._state import TypeState

_SWEEP_FLOOR = 1024


class StateTable:
    """Per-type states by concrete class, the publish fast path's view of them, and the
    counters of retired states."""

    def __init__(self, refresh: Callable[[TypeState], None]) -> None:
        self.states: dict[type, TypeState] = {}
        #: the states that publish may use without its slow path; empty unless running
        #: with nothing to do on the way in (see Dispatcher); changed in place
        self.fast: dict[type, TypeState] = {}
        self.fast_open = False
        self._retired: weakref.WeakKeyDictionary[type, dict[str, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._refresh = refresh
        self._sweep_at = _SWEEP_FLOOR

    def __iter__(self) -> Iterator[TypeState]:
        return iter(list(self.states.values()))

    def get(self, event_class: type) -> TypeState | None:
        """The live state of *event_class*, if any."""
        return self.states.get(event_class)

    def create(self, event_class: type, state: TypeState) -> TypeState:
        """Add the new *state* of *event_class*, continuing the counters of a retired one."""
        if len(self.states) >= self._sweep_at:
            self.sweep()
        if self._retired:
            counters = self._retired.pop(event_class, None)
            if counters is not None:
                state.counts.restore(counters)
        self._refresh(state)
        self.states[event_class] = state
        self.admit(state)
        return state

    def admit(self, state: TypeState) -> None:
        """Put *state* on the fast path when it may take it (no key, not routed)."""
        if self.fast_open and state.config.key is None and state.route is None:
            self.fast[state.event_type] = state
        else:
            self.fast.pop(state.event_type, None)

    def open_fast_path(self, open_: bool) -> None:
        """Let publish skip its checks (``open_``) or send every publish the slow way."""
        self.fast_open = open_
        self.fast.clear()
        if open_:
            for state in self.states.values():
                self.admit(state)

    def sweep(self, everything: bool = False) -> int:
        """Retire the states that were idle, with nothing accepted, since the last sweep
        (*everything*: every idle state). A class gets a new state, with its settings
        and counters, when it is next used; a type in steady use is never retired.

        :return: how many states were retired
        """
        retired = []
        for cls, state in self.states.items():
            unchanged = state.swept()
            if state.idle and (everything or unchanged):
                retired.append(cls)
        for cls in retired:
            state = self.states.pop(cls)
            self.fast.pop(cls, None)
            self._retired[cls] = state.counts.leave()
        self._sweep_at = max(_SWEEP_FLOOR, 2 * len(self.states))
        return len(retired)

    def retired_counters(self) -> Iterator[tuple[type, dict[str, int]]]:
        """(class, counters) of every retired state whose class is still alive."""
        return iter(list(self._retired.items()))

    def counters_of(self, event_class: type) -> dict[str, int] | None:
        """The counters a retired state of *event_class* left, if any."""
        return self._retired.get(event_class)
