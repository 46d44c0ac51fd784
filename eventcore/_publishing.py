"""The publish paths: the fast path, the slow path (middleware, policy, key, envelope),
overflow policies, fair waiting for room, routed sends, and dead letters."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable
from contextvars import copy_context
from typing import Any

import anyio

from ._authorization import current_principal
from ._channel import Overflow
from ._config import check_timeout
from ._core import DispatcherCore
from ._deadletters import DeadLetter
from ._delivery import NO_KEY, Envelope, Outcome
from ._errors import (
    DispatcherClosed,
    InvalidConfiguration,
    InvalidEvent,
    PublishTimeout,
    QueueFull,
    Unauthorized,
)
from ._middleware import apply_chain_in_copy, apply_publish_chain
from ._state import TypeState
from ._types import DropReason, E
from ._waits import begin_wait, end_wait

logger = logging.getLogger("eventcore")


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET
"""Marks an argument that was not given (where None means something)."""

#: how long a routed publish under BLOCK waits before it asks its broker again
_SEND_RETRY = 0.05


class Publishing(DispatcherCore):
    """``publish``, ``publish_nowait`` and ``publish_and_wait``."""

    async def publish(
        self,
        event: object,
        *,
        timeout: float | None = None,
        principal: Hashable | _Unset | None = UNSET,
    ) -> bool:
        """Queue *event* for every handler of its type and supertypes.

        Returns as soon as the event is accepted, **without yielding to the event loop**
        unless the queue is full; what happens then is the type's overflow policy.
        Publishers that wait for room are served in arrival order, before later ones.
        A publish that is cancelled (or times out) had no effect; one that took
        effect returns normally.

        :param timeout: under ``Overflow.BLOCK``, the longest wait for room
        :param principal: who publishes, for the authorization policy (default:
            the one set by :func:`acting_as`)
        :return: True when accepted; False when refused under ``DROP_NEWEST`` or by
            a publish middleware
        :raises QueueFull: the queue is full under ``Overflow.RAISE``
        :raises PublishTimeout: no room appeared within *timeout* under ``BLOCK``
        :raises Unauthorized: the policy does not let *principal* publish this type
        :raises DispatcherClosed: the dispatcher is not running
        :raises InvalidEvent: *event* is not an event, or its key function failed
        :raises InvalidConfiguration: *timeout* is negative or not a number
        """
        if timeout is not None:
            check_timeout("timeout", timeout)
        state = self._fast.get(type(event))  # type(): cheaper than .__class__ with many types
        if state is None:  # a new type, not running, or middleware/policy/context/key/route
            prepared = self._prepare(event, principal, tracked=False)
            if prepared is None:
                return False
            state, item = prepared
            if state.route is not None:
                return await self._send(state, item, timeout)
            if state.full():
                return await self._put_full(state, item, timeout)
            self._enqueue(state, item)
            return True
        items = state.items
        if len(items) < state.limit:
            items.append(event)
            state.accepted += 1
            if not state.scheduled and state.running < state.concurrency:
                self._pool.schedule(state)  # type: ignore[union-attr]  # set while running
            return True
        return await self._put_full(state, event, timeout)

    def publish_nowait(
        self, event: object, *, principal: Hashable | _Unset | None = UNSET
    ) -> bool:
        """Queue *event* without ever waiting (also callable from sync code on the loop's
        thread; from other threads use :meth:`publish_threadsafe`).

        :return: True when accepted; False when refused under ``DROP_NEWEST`` or by
            a publish middleware
        :raises QueueFull: the queue is full under ``BLOCK`` or ``RAISE``
        :raises RuntimeError: called from a thread other than the event loop's
        """
        loop_thread = self._loop_thread
        if loop_thread is not None and threading.get_ident() != loop_thread:
            raise RuntimeError(
                "publish_nowait() was called from a thread other than the event loop's: "
                "use bus.publish_threadsafe(event) there"
            )
        prepared = self._prepare(event, principal, tracked=False)
        if prepared is None:
            return False
        state, item = prepared
        if state.route is not None:
            raise InvalidConfiguration(
                f"{state.event_type.__qualname__} is routed through a transport: "
                "publish_nowait() cannot wait for the broker's acknowledgement; "
                "use `await publish(...)`"
            )
        if state.full():
            if state.overflow is Overflow.BLOCK:
                state.refused += 1
                raise self._queue_full(state, "publish_nowait never waits")
            return self._overflow(state, item)
        self._enqueue(state, item)
        return True

    async def publish_and_wait(
        self,
        event: E,
        *,
        timeout: float | None = None,
        principal: Hashable | _Unset | None = UNSET,
        raise_errors: bool = False,
    ) -> Outcome[E]:
        """Publish *event* and wait until every matching handler has run.

        Cancelling it while it waits for the outcome leaves the accepted event to be
        handled (as cancelling ``await`` on a future leaves the work running).

        :param timeout: under ``Overflow.BLOCK``, the longest wait for room (the
            handling itself is not timed)
        :param raise_errors: raise an ``ExceptionGroup`` of the handlers' exceptions
            instead of returning them in the outcome
        :return: the outcome: each handler's return value or exception, or the
            reason the event was dropped
        """
        if timeout is not None:
            check_timeout("timeout", timeout)
        pool = self._pool
        state = self._fast.get(type(event))
        if state is not None:  # running, nothing to do on the way in: no key, no route
            assert pool is not None
            envelope = Envelope(event, None, False, False)
            done = envelope.done = pool.wake_class()
        else:
            prepared = self._prepare(event, principal, tracked=True)
            if prepared is None:
                return Outcome(event, dropped=DropReason.REJECTED)
            state, envelope = prepared
            assert isinstance(envelope, Envelope)
            assert envelope.done is not None
            done = envelope.done
            if state.route is not None:
                raise InvalidConfiguration(
                    f"{state.event_type.__qualname__} is routed through a transport: its "
                    "handlers may run in another process, so publish_and_wait() cannot wait "
                    "for them"
                )
        items = state.items
        if len(items) >= state.limit:
            await self._put_full(state, envelope, timeout)  # a drop finishes the envelope
        else:  # _enqueue, inline
            items.append(envelope)
            state.accepted += 1
            pool.kick(state)  # type: ignore[union-attr]  # set while running
        wait = begin_wait(pool, state)
        if wait is None:  # an outside publisher: no slot to lend or take back
            await done.wait()
        else:
            try:
                await done.wait()
            finally:
                await end_wait(pool, wait)
        outcome: Outcome[E] | None = envelope.outcome
        assert outcome is not None
        if raise_errors:
            outcome.raise_for_failures()
        return outcome

    def _prepare(
        self, event: object, principal: Hashable | _Unset | None, tracked: bool
    ) -> tuple[TypeState, Any] | None:
        """The slow part of publish: phase, middleware, validation, authorization, key,
        envelope.

        :return: the state and the item to queue, or None when a middleware refused it
        """
        self._check_running()
        context = copy_context() if self._propagate_context else None
        if self._publish_chain:
            original = event
            if context is None:
                event = apply_publish_chain(self._publish_chain, event)
            else:  # what the middleware sets there travels with the event
                event = context.run(apply_chain_in_copy, self._publish_chain, event)
            if event is None:
                state = self._state_for(original)
                state.dropped += 1
                self._reporter.dropped(original, DropReason.REJECTED)
                return None
        state = self._state_for(event)
        policy = self._policy
        if policy is not None:
            who = current_principal() if principal is UNSET else principal
            if not policy.may_publish(who, state.event_type):
                state.refused += 1
                raise Unauthorized(
                    f"{who!r} may not publish {state.event_type.__qualname__}: the "
                    "authorization policy does not allow it (everything not granted is denied)",
                    who,
                    state.event_type,
                )
        key: Any = NO_KEY
        if state.key is not None:
            try:
                key = state.key_of(event)
            except InvalidEvent:
                state.refused += 1
                raise
        if tracked or self._envelope_all or key is not NO_KEY:
            stamped = bool(self._delivery.handle_chain)
            return state, Envelope(event, context, tracked, stamped, key)
        return state, event

    async def _put_full(self, state: TypeState, item: object, timeout: float | None) -> bool:
        """Apply the overflow policy to *item* arriving at *state*'s full queue."""
        if state.overflow is not Overflow.BLOCK:
            return self._overflow(state, item)
        pool = self._pool
        wake_class = None if pool is None else pool.wake_class
        wait = begin_wait(pool, state)
        try:
            while True:
                putter = state.park_putter(item, wake=None if wake_class is None else wake_class())
                try:
                    if timeout is None:  # no cancel scope where none is needed
                        await putter.wake.wait()
                    else:
                        with anyio.fail_after(timeout):
                            await putter.wake.wait()
                except BaseException as exc:
                    if putter.accepted and not state.withdraw(putter):
                        # Its handling started: the publish took effect, so it returns
                        # normally (a cancel scope delivers the cancellation again at
                        # the next checkpoint).
                        return True
                    state.forget_putter(putter)
                    if isinstance(exc, TimeoutError):
                        state.refused += 1
                        raise PublishTimeout(
                            f"no room in the queue of {state.event_type.__qualname__} "
                            f"(queue_size={state.maxsize}) within {timeout} s: its handlers "
                            "are not keeping up; raise queue_size or concurrency, or publish "
                            "with a longer timeout",
                            state.event_type,
                        ) from None
                    raise
                if putter.accepted:
                    if pool is not None:
                        pool.kick(state)
                    return True
                if putter.closed:  # counted as refused by the shutdown
                    raise DispatcherClosed(self._closed_message())
                retried = self._after_policy_change(state, item)
                if retried is not None:
                    return retried
        finally:
            if wait is not None:
                await end_wait(pool, wait)

    def _after_policy_change(self, state: TypeState, item: object) -> bool | None:
        """A waiting publisher was released because the policy changed: apply the new
        one (None: it is BLOCK again, so wait again)."""
        if not state.full():
            self._enqueue(state, item)
            return True
        if state.overflow is Overflow.BLOCK:
            return None
        return self._overflow(state, item)

    def _overflow(self, state: TypeState, item: object) -> bool:
        """The non-blocking policies for a full queue."""
        overflow = state.overflow
        if overflow is Overflow.DROP_NEWEST:
            state.dropped += 1
            self._reporter.dropped(item, DropReason.DROPPED_NEWEST)
            return False
        if overflow is Overflow.DROP_OLDEST:
            oldest = state.evict()
            self._enqueue(state, item)
            self._reporter.dropped(oldest, DropReason.EVICTED)
            return True
        state.refused += 1
        raise self._queue_full(state, "its overflow policy is RAISE")

    #: opened transports, and how to open one (the dispatcher's life, ``_lifecycle``)
    _opened: dict[int, Any]
    _open_route: Callable[[Any], Awaitable[None]]

    async def _send(self, state: TypeState, item: object, timeout: float | None) -> bool:
        """Publish a routed event: a durable send; a full broker follows the policy."""
        event = item.event if isinstance(item, Envelope) else item
        deadline = None if timeout is None else anyio.current_time() + timeout
        if id(state.route) not in self._opened:
            await self._open_route(state.route)
        while True:
            try:
                await state.route.send(state.event_type, event)
            except QueueFull:
                if state.overflow is Overflow.BLOCK:
                    if deadline is not None and anyio.current_time() >= deadline:
                        state.refused += 1
                        raise PublishTimeout(
                            f"the broker had no room for {state.event_type.__qualname__} "
                            f"within {timeout} s",
                            state.event_type,
                        ) from None
                    await anyio.sleep(_SEND_RETRY)
                    if id(state.route) not in self._opened:  # shutdown closed the transport
                        state.refused += 1
                        raise DispatcherClosed(
                            "the dispatcher stopped while this publish waited for room on "
                            "the broker: the event was not sent"
                        ) from None
                    continue
                if state.overflow is Overflow.RAISE:
                    state.refused += 1
                    raise
                # DROP_NEWEST, and DROP_OLDEST (a broker evicts nothing for us)
                state.dropped += 1
                self._reporter.dropped(event, DropReason.DROPPED_NEWEST)
                return False
            return True

    @staticmethod
    def _queue_full(state: TypeState, why: str) -> QueueFull:
        return QueueFull(
            f"the queue of {state.event_type.__qualname__} is full "
            f"(queue_size={state.maxsize}) and {why}: its handlers are not keeping "
            "up; retry later, raise queue_size or concurrency, or choose another overflow policy",
            state.event_type,
        )

    def _queue_dead_letter(self, letter: DeadLetter) -> None:
        """Queue *letter* for DeadLetter subscribers, never waiting (it may come from a worker)."""
        if self._pool is None or not self._registry.resolve(DeadLetter):
            return
        state = self._state_for(letter)
        if not state.full():
            self._enqueue(state, letter)
        elif state.overflow is Overflow.BLOCK or state.overflow is Overflow.RAISE:
            state.refused += 1
            logger.error(
                "the DeadLetter queue is full (queue_size=%d): a dead letter of %s was not queued",
                state.maxsize,
                type(letter.event).__qualname__,
            )
        else:
            self._overflow(state, letter)
