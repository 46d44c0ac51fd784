"""The deadline of one publish: ``send(..., deadline=)`` is an absolute time on
:func:`anyio.current_time`'s clock (the event loop's), or None for the
transport's own limits only. These helpers bound a wait by both."""

from __future__ import annotations

import anyio


def remaining(deadline: float | None) -> float | None:
    """Seconds left until *deadline* (never below 0), or None without one."""
    if deadline is None:
        return None
    return max(0.0, deadline - anyio.current_time())


#: the least wait for an answer once a write left, whatever remains of its deadline:
#: a write sent just before the deadline is answered (full, stored) rather than
#: left unconfirmed because no answer could come in a microsecond
ANSWER_FLOOR = 0.25


def answer_wait(limit: float, deadline: float | None) -> float:
    """How long to wait for the answer to a write that leaves now: the transport's
    *limit*, shortened by the deadline, but not below :data:`ANSWER_FLOOR`."""
    left = remaining(deadline)
    if left is None:
        return limit
    return min(limit, max(left, ANSWER_FLOOR))


def deadline_of(timeout: float | None) -> float | None:
    """The deadline *timeout* seconds from now (None for None)."""
    return None if timeout is None else anyio.current_time() + timeout
