"""Dead letters: events that could not be handled, with why, by whom, and after how many tries.

A :class:`DeadLetter` is itself an event: subscribe to it to store, alert or
replay. It is also passed to ``Dispatcher(on_dead_letter=...)``. A dead letter
whose own handler fails is logged, never dead-lettered again, so a broken sink
cannot loop.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class DeadLetterReason(str, enum.Enum):
    """Why an event became a dead letter."""

    #: a handler failed on its last attempt (``exception``, ``handler``, ``attempts`` set)
    HANDLER_FAILED = "handler_failed"
    #: refused under ``Overflow.DROP_NEWEST``
    DROPPED_NEWEST = "dropped_newest"
    #: evicted under ``Overflow.DROP_OLDEST``
    EVICTED = "evicted"
    #: refused by a publish middleware
    REJECTED = "rejected"
    #: accepted, but not handled before the shutdown timeout
    SHUTDOWN = "shutdown"
    #: no subscription matched (only with ``dead_letter_unmatched=True``)
    UNMATCHED = "unmatched"
    #: a broker message that cannot be decoded (``event`` is the raw message,
    #: ``exception`` the :class:`~eventcore.wire.WireError` that says why)
    UNDECODABLE = "undecodable"
    #: the broker delivered it as often as allowed without it being settled
    #: (``attempts`` is the delivery count): it crashed or outlived its consumers
    DELIVERY_LIMIT = "delivery_limit"


@dataclass(frozen=True)
class DeadLetter:
    """An event that was not handled, and why.

    :ivar event: the original event
    :ivar reason: why it was not handled
    :ivar exception: the last exception, for ``HANDLER_FAILED``
    :ivar handler: the handler that failed, for ``HANDLER_FAILED``
    :ivar attempts: how many times that handler was called
    """

    event: Any
    reason: DeadLetterReason
    exception: BaseException | None = None
    handler: Callable[..., Any] | None = None
    attempts: int = 0


DeadLetterHook = Callable[[DeadLetter], object]
"""``on_dead_letter(dead_letter)``: called for every dead letter."""
