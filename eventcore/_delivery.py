"""Calling handlers and recording what happened.

The worker loop in ``_workers`` calls handlers inline when a type needs nothing
more (the hot path). Everything else goes through :class:`Delivery`: the
publisher's context, ``publish_and_wait`` outcomes, handle middleware,
timeouts, retries with backoff, dead letters and the slow-handler watchdog.
:class:`Reporter` is where failures and lost events go.
"""

from __future__ import annotations

import itertools
import logging
import math
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from contextvars import Context
from typing import Any, Protocol

import anyio

from ._config import Retry
from ._deadletters import DeadLetter, DeadLetterHook, DeadLetterReason
from ._envelope import Envelope, HandlerResult
from ._errors import HandlerTimeout
from ._middleware import HandleMiddleware, HandlerCall, chain_call
from ._subscription import Subscription
from ._types import DropHook, DropReason, ErrorHook

logger = logging.getLogger("eventcore")


def is_own_cancellation() -> bool:
    """Whether a cancellation comes from a cancel scope around the worker.

    A handler that raises a cancellation of its own (an inner task it awaited was
    cancelled) fails like any other handler; the worker's own cancellation must
    propagate so that shutdown works.
    """
    return anyio.current_effective_deadline() == -math.inf


def handler_failure(exc: BaseException) -> BaseException:
    """Classify what a handler call raised (the one place that does): the handler's
    failure, returned to be counted and reported - any ``Exception``, or a
    cancellation of its own (an inner task it awaited was cancelled) - or the
    worker's own cancellation and anything else (``KeyboardInterrupt``,
    ``SystemExit``), raised again so that shutdown gets through.

    Every serving loop calls the handler inline and hands what it raised here (a
    function that also made the call would cost a coroutine frame per handler call:
    +25 % on the hot path, see ``bench/PROFILE.md``).
    """
    if isinstance(exc, Exception):
        return exc
    if isinstance(exc, anyio.get_cancelled_exc_class()) and not is_own_cancellation():
        return exc
    raise exc


class Reporter:
    """Where failures and lost events go: the user's hooks, dead letters, else the logger."""

    __slots__ = ("dead_letter_sink", "on_dead_letter", "on_drop", "on_error")

    def __init__(
        self,
        on_error: ErrorHook | None,
        on_drop: DropHook | None,
        on_dead_letter: DeadLetterHook | None,
    ) -> None:
        self.on_error = on_error
        self.on_drop = on_drop
        self.on_dead_letter = on_dead_letter
        #: queues a DeadLetter event when someone subscribed to them (set by the dispatcher)
        self.dead_letter_sink: Callable[[DeadLetter], None] | None = None

    def handler_failed(
        self,
        event: Any,
        handler: Callable[..., Any],
        exc: BaseException,
        attempts: int = 1,
        event_id: int | None = None,
    ) -> None:
        """Report a handler's final failure to ``on_error`` (or the log) and as a dead letter.

        The log record carries ``event_type`` and ``event_id`` (None for events that
        travel without an envelope) as extra fields; never the payload.
        """
        if self.on_error is None:
            name = type(event).__qualname__
            logger.error(
                "handler %s failed on %s",
                getattr(handler, "__qualname__", handler),
                name,
                exc_info=exc,
                extra={"event_type": name, "event_id": event_id},
            )
        else:
            try:
                self.on_error(event, handler, exc)
            except Exception:
                logger.exception("on_error hook failed for %s", type(event).__qualname__)
        self.dead_letter(
            DeadLetter(event, DeadLetterReason.HANDLER_FAILED, exc, handler, attempts)
        )

    def dropped(self, item: Any, reason: DropReason) -> None:
        """Report an event lost to overflow, a middleware or shutdown."""
        event = item
        if item.__class__ is Envelope:
            event = item.event
            item.finish(dropped=reason)
        if self.on_drop is not None:
            try:
                self.on_drop(event, reason)
            except Exception:
                logger.exception("on_drop hook failed for %s", type(event).__qualname__)
        self.dead_letter(DeadLetter(event, DeadLetterReason(reason.value)))

    def dead_letter(self, letter: DeadLetter) -> None:
        """Hand *letter* to ``on_dead_letter`` and to DeadLetter subscribers; never loops."""
        if isinstance(letter.event, DeadLetter):
            logger.error(
                "a dead letter of %s could not be handled (%s); not dead-lettered again",
                type(letter.event.event).__qualname__,
                letter.reason.value,
                exc_info=letter.exception,
            )
            return
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(letter)
            except Exception:
                logger.exception("on_dead_letter hook failed")
        if self.dead_letter_sink is not None:
            self.dead_letter_sink(letter)


@types.coroutine
def run_in_context(context: Context, coro: Coroutine[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Drive *coro* with every step inside *context* (the publisher's contextvars).

    No task is created: the worker's own task runs the handler, so cancel scopes,
    the concurrency slot and the event loop see exactly what they would see
    without it. Works on asyncio, uvloop and trio.
    """
    send: Any = coro.send
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            if error is None:  # noqa: SIM108 - one step, two ways in
                yielded = context.run(send, value)
            else:
                yielded = context.run(coro.throw, error)
        except StopIteration as stop:
            return stop.value
        try:
            value = yield yielded
            error = None
        except BaseException as exc:
            value, error = None, exc


class FailureCount(Protocol):
    """Where :meth:`Delivery.deliver` counts failures (a type's counters)."""

    def fail(self) -> None:
        """One more final failure."""


class Delivery:
    """Delivers one event to its subscriptions when a type needs more than the hot path."""

    def __init__(self, reporter: Reporter, dead_letter_unmatched: bool, track_calls: bool) -> None:
        #: handle middleware, the first outermost (see ``_middleware``)
        self.handle_chain: tuple[HandleMiddleware, ...] = ()
        self.reporter = reporter
        self.dead_letter_unmatched = dead_letter_unmatched
        #: handler calls in progress, for the slow-handler watchdog: id -> (start, event, sub)
        self.running: dict[int, tuple[float, Any, Subscription[Any]]] | None = (
            {} if track_calls else None
        )
        self._call_ids = itertools.count()
        #: set once shutdown's deadline passed: no handler call starts any more
        self.halted = False

    def halt(self, halted: bool = True) -> None:
        """Start no handler call from now on (shutdown's deadline passed), or again."""
        self.halted = halted

    async def deliver(
        self,
        item: Any,
        counts: FailureCount,
        subscriptions: Sequence[Subscription[Any]],
        default_timeout: float | None,
        default_retry: Retry | None,
        context_hook: Callable[[Context], None],
    ) -> bool:
        """Deliver *item* (an event or an :class:`Envelope`); count each final failure
        in ``counts.failed`` as it happens.

        :return: False when shutdown's deadline passed before every handler had its
            calls (the caller reports the event as cut off), else True
        """
        envelope = item if item.__class__ is Envelope else None
        event = item if envelope is None else envelope.event
        context = None if envelope is None else envelope.context
        event_id = None if envelope is None else envelope.id
        if context is not None:
            context_hook(context)
        if envelope is not None and self.handle_chain:
            envelope.started_at = anyio.current_time()
        results: list[HandlerResult] = []
        to_retry: list[tuple[int, Subscription[Any], Retry]] = []
        matched = 0
        for sub in subscriptions:
            if self.halted:
                return False
            accepts = sub.filter
            try:
                if accepts is not None and not accepts(event):
                    continue
            except Exception as exc:
                counts.fail()
                self.reporter.handler_failed(event, accepts, exc)  # type: ignore[arg-type]
                continue
            matched += 1
            timeout = default_timeout if sub.timeout is None else sub.timeout
            result = await self._call(sub, event, envelope, timeout, 1)
            retry = default_retry if sub.retry is None else sub.retry
            if result.exception is not None and retry and retry.wants(result.exception, 1):
                to_retry.append((len(results), sub, retry))
            elif result.exception is not None:
                counts.fail()
                self.reporter.handler_failed(event, sub.handler, result.exception, 1, event_id)
            results.append(result)
        # Retries wait their backoff only after every other handler had its first call.
        for index, sub, retry in to_retry:
            attempt, result = 1, results[index]
            while result.exception is not None and retry.wants(result.exception, attempt):
                await anyio.sleep(retry.delay(attempt))
                if self.halted:
                    return False
                attempt += 1
                timeout = default_timeout if sub.timeout is None else sub.timeout
                result = await self._call(sub, event, envelope, timeout, attempt)
            if result.exception is not None:
                counts.fail()
                self.reporter.handler_failed(
                    event, sub.handler, result.exception, attempt, event_id
                )
            results[index] = result
        if not matched and self.dead_letter_unmatched:
            self.reporter.dead_letter(DeadLetter(event, DeadLetterReason.UNMATCHED))
        if envelope is not None:
            if not subscriptions and envelope.receipt is not None:
                # nobody here handles its type any more: give it back to the broker
                envelope.finish(results, DropReason.SHUTDOWN)
            else:
                envelope.finish(results)
        return True

    async def _call(
        self,
        sub: Subscription[Any],
        event: Any,
        envelope: Envelope | None,
        timeout: float | None,
        attempt: int,
    ) -> HandlerResult:
        running = self.running
        if running is not None:
            token = next(self._call_ids)
            running[token] = (anyio.current_time(), event, sub)
        handler: Callable[[Any], Awaitable[Any]] = sub.call
        if self.handle_chain and envelope is not None:
            first = envelope.calls == 0
            envelope.calls += 1
            call = HandlerCall(
                sub, envelope.id, envelope.accepted_at, envelope.started_at, attempt, first
            )
            handler = chain_call(self.handle_chain, call)
        context = None if envelope is None else envelope.context
        try:
            if timeout is None:
                value = await _invoke(handler, event, context)
            else:
                with anyio.move_on_after(timeout) as scope:
                    value = await _invoke(handler, event, context)
                if scope.cancelled_caught:
                    name = getattr(sub.handler, "__qualname__", repr(sub.handler))
                    timed_out = HandlerTimeout(
                        f"handler {name} ran past its timeout of {timeout} s on "
                        f"{type(event).__qualname__} and was cancelled",
                        timeout,
                    )
                    return HandlerResult(sub.handler, exception=timed_out, attempts=attempt)
            return HandlerResult(sub.handler, value, attempts=attempt)
        except BaseException as exc:
            failure = handler_failure(exc)
            return HandlerResult(sub.handler, exception=failure, attempts=attempt)
        finally:
            if running is not None:
                running.pop(token, None)

    async def watch_slow_handlers(self, threshold: float) -> None:
        """Log a warning for every handler call running past *threshold* seconds."""
        running = self.running
        assert running is not None, "Delivery(track_calls=True) is needed"
        warned: set[int] = set()
        while True:
            await anyio.sleep(threshold / 2)
            now = anyio.current_time()
            for key, (started, event, sub) in list(running.items()):
                if key not in warned and now - started > threshold:
                    warned.add(key)
                    logger.warning(
                        "slow handler: %s has been running for %.3f s on %s (threshold %s s)",
                        getattr(sub.handler, "__qualname__", sub.handler),
                        now - started,
                        type(event).__qualname__,
                        threshold,
                    )
            warned.intersection_update(running)


def _invoke(
    call: Callable[[Any], Awaitable[Any]], event: Any, context: Context | None
) -> Awaitable[Any]:
    if context is None:
        return call(event)
    coro = call(event)
    if not isinstance(coro, Coroutine):  # an async callable that returned another awaitable
        return coro
    return run_in_context(context, coro)
