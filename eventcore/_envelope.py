"""What travels through a queue besides the bare event, and what comes back.

An :class:`Envelope` carries an accepted event with what it needs beyond itself
(the publisher's context, a waiting publisher, its key, a broker's receipt);
:class:`Outcome` and :class:`HandlerResult` are what ``publish_and_wait`` returns.
A leaf module: the queue, the workers and the publish paths all use it.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Sequence
from contextvars import Context
from dataclasses import dataclass
from typing import Any, Generic

import anyio

from ._transport import Receipt, verdict_of
from ._types import DropReason, E
from ._wake import Wake

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

logger = logging.getLogger("eventcore")

#: marks "no key" (None is a valid key)
NO_KEY: Any = object()


@dataclass(frozen=True)
class HandlerResult:
    """What one handler did with one event: its return value, or the exception it raised.

    :ivar attempts: how many times the handler was called (more than 1 after retries)
    """

    handler: Callable[..., Any]
    value: Any = None
    exception: BaseException | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """Whether the handler's last attempt returned without raising."""
        return self.exception is None


@dataclass(frozen=True)
class Outcome(Generic[E]):
    """The result of :meth:`~eventcore.Dispatcher.publish_and_wait`.

    ``results`` holds one entry per matching handler, in subscription order.
    ``dropped`` is set when the event was never handled (refused, evicted, or
    cut off by shutdown); ``results`` is then empty.
    """

    event: E
    results: tuple[HandlerResult, ...] = ()
    dropped: DropReason | None = None

    @property
    def delivered(self) -> bool:
        """Whether every matching handler ran (successfully or not)."""
        return self.dropped is None

    @property
    def ok(self) -> bool:
        """Whether the event was delivered and no handler raised."""
        return self.dropped is None and all(r.ok for r in self.results)

    @property
    def exceptions(self) -> tuple[BaseException, ...]:
        """The exceptions the handlers raised, in subscription order."""
        return tuple(r.exception for r in self.results if r.exception is not None)

    def raise_for_failures(self) -> None:
        """Raise an ``ExceptionGroup`` of the handlers' exceptions, if any handler raised."""
        failures = [e for e in self.exceptions if isinstance(e, Exception)]
        if failures:
            name = type(self.event).__qualname__
            raise ExceptionGroup(f"{len(failures)} handler(s) of {name} failed", failures)


_event_ids = itertools.count(1)


class Envelope:
    """An accepted event that carries more than itself: the publisher's context, a
    publisher waiting for its :class:`Outcome`, its key, or a transport's receipt."""

    __slots__ = (
        "accepted_at",
        "calls",
        "context",
        "done",
        "event",
        "id",
        "key",
        "outcome",
        "receipt",
        "started_at",
    )

    def __init__(
        self,
        event: Any,
        context: Context | None,
        tracked: bool,
        stamped: bool,
        key: Any = NO_KEY,
        receipt: Receipt | None = None,
    ) -> None:
        self.event = event
        self.id = next(_event_ids)
        #: ``anyio.current_time()`` at acceptance, when handle middleware needs it
        self.accepted_at = anyio.current_time() if stamped else 0.0
        #: when delivery began, and handler calls made so far (for handle middleware)
        self.started_at = self.accepted_at
        self.calls = 0
        self.context = context
        #: set when the outcome is in (``publish_and_wait`` waits on it)
        self.done: Wake | None = anyio.Event() if tracked else None
        self.outcome: Outcome[Any] | None = None
        #: the event's key, computed when it was published (NO_KEY: none)
        self.key = key
        #: settled with the delivery's verdict (events that came from a transport)
        self.receipt = receipt

    def finish(
        self, results: Sequence[HandlerResult] = (), dropped: DropReason | None = None
    ) -> None:
        """Record the outcome, settle the receipt, and wake the publisher, if one waits."""
        if self.receipt is not None:
            try:
                self.receipt.settle(verdict_of(results, dropped))
            except Exception:  # the broker will redeliver what it never heard of
                logger.exception(
                    "settling the receipt of %s failed", type(self.event).__qualname__
                )
        if self.done is not None:
            self.outcome = Outcome(self.event, tuple(results), dropped)
            self.done.set()
