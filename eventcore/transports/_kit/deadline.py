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


def bounded(limit: float, deadline: float | None) -> tuple[float, bool]:
    """The wait allowed: the smaller of the transport's *limit* and what is left
    until *deadline*, and whether the deadline is what bounds it."""
    left = remaining(deadline)
    if left is not None and left < limit:
        return left, True
    return limit, False


def deadline_of(timeout: float | None) -> float | None:
    """The deadline *timeout* seconds from now (None for None)."""
    return None if timeout is None else anyio.current_time() + timeout
