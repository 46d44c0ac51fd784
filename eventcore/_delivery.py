"""Calling handlers and recording what happened: failure reports and ``publish_and_wait`` outcomes.

The worker loop in ``_workers`` calls plain handlers inline (the hot path); an
event whose publisher awaits its outcome travels as a :class:`Tracked` and is
delivered by :func:`deliver_tracked`, which keeps each handler's result.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

import anyio

from ._types import DropHook, DropReason, E, ErrorHook

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

if TYPE_CHECKING:
    from ._registry import Subscription

logger = logging.getLogger("eventcore")


@dataclass(frozen=True)
class HandlerResult:
    """What one handler did with one event: its return value, or the exception it raised."""

    handler: Callable[..., Any]
    value: Any = None
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the handler returned without raising."""
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


class Tracked:
    """An accepted event whose publisher waits for its :class:`Outcome`."""

    __slots__ = ("done", "event", "outcome")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.done = anyio.Event()
        self.outcome: Outcome[Any] | None = None

    def finish(
        self, results: Sequence[HandlerResult] = (), dropped: DropReason | None = None
    ) -> None:
        """Record the outcome and wake the publisher."""
        self.outcome = Outcome(self.event, tuple(results), dropped)
        self.done.set()


def is_own_cancellation(exc: BaseException) -> bool:
    """Whether a cancellation exception comes from a cancel scope around the worker.

    A handler that raises a cancellation of its own (an inner task it awaited was
    cancelled) fails like any other handler; the worker's own cancellation must
    propagate so that shutdown works.
    """
    return anyio.current_effective_deadline() == -math.inf


class Reporter:
    """Where failures and lost events go: the user's hooks, else the ``eventcore`` logger."""

    __slots__ = ("on_drop", "on_error")

    def __init__(self, on_error: ErrorHook | None, on_drop: DropHook | None) -> None:
        self.on_error = on_error
        self.on_drop = on_drop

    def handler_failed(self, event: Any, handler: Callable[..., Any], exc: BaseException) -> None:
        """Report a handler's exception to ``on_error``, or log it when there is no hook."""
        if self.on_error is None:
            logger.error(
                "handler %s failed on %s",
                getattr(handler, "__qualname__", handler),
                type(event).__qualname__,
                exc_info=exc,
            )
            return
        try:
            self.on_error(event, handler, exc)
        except Exception:
            logger.exception("on_error hook failed for %s", type(event).__qualname__)

    def dropped(self, item: Any, reason: DropReason) -> None:
        """Report an event lost to overflow or shutdown; complete its waiter if it has one."""
        event = item
        if isinstance(item, Tracked):
            event = item.event
            item.finish(dropped=reason)
        if self.on_drop is None:
            return  # the caller counted it; shutdown logs one summary
        try:
            self.on_drop(event, reason)
        except Exception:
            logger.exception("on_drop hook failed for %s", type(event).__qualname__)


async def deliver_tracked(
    item: Tracked,
    subscriptions: Sequence[Subscription[Any]],
    reporter: Reporter,
    cancelled: type[BaseException],
) -> int:
    """Deliver a tracked event to each subscription, record every result; return the failures."""
    event = item.event
    results: list[HandlerResult] = []
    failed = 0
    for sub in subscriptions:
        try:
            if sub.filter is not None and not sub.filter(event):
                continue
            results.append(HandlerResult(sub.handler, await sub.handler(event)))
        except Exception as exc:
            failed += 1
            results.append(HandlerResult(sub.handler, exception=exc))
            reporter.handler_failed(event, sub.handler, exc)
        except cancelled as exc:
            if is_own_cancellation(exc):
                raise
            failed += 1
            results.append(HandlerResult(sub.handler, exception=exc))
            reporter.handler_failed(event, sub.handler, exc)
    item.finish(results)
    return failed
