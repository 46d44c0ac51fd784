"""The publish paths: the fast path, the slow path (middleware, policy, key, envelope),
overflow policies, fair waiting for room, routed sends, and dead letters.

A :class:`Publisher` is built with the states, the run, the features and the routes
it reads; the :class:`~eventcore.Dispatcher` hands its ``publish`` methods out as its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from contextvars import copy_context
from typing import Any, Protocol

import anyio

from ._authorization import current_principal
from ._config import UNSET, Overflow, _Unset, check_timeout
from ._deadletters import DeadLetter
from ._delivery import Delivery, Reporter
from ._envelope import NO_KEY, Envelope, Outcome
from ._errors import (
    DispatcherClosed,
    InvalidConfiguration,
    InvalidEvent,
    PublishTimeout,
    QueueFull,
    Unauthorized,
)
from ._features import Features
from ._middleware import apply_chain_in_copy, apply_publish_chain
from ._routes import Routes
from ._run import Run
from ._slot import WorkerSlot
from ._state import TypeState
from ._states import TypeStates
from ._transport import takes_deadline
from ._types import DropReason, E
from ._waits import begin_wait, end_wait

logger = logging.getLogger("eventcore")


#: how long a routed publish under BLOCK waits before it asks its broker again
_SEND_RETRY = 0.05


class PublishMethod(Protocol):
    """``Dispatcher.publish``: its signature and documentation."""

    async def __call__(
        self,
        event: object,
        *,
        timeout: float | None = None,
        principal: Hashable | None = None,
        session: Any = None,
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
        :param session: a database transaction: the event goes to the outbox instead
        :return: True when accepted; False when refused under ``DROP_NEWEST`` or by
            a publish middleware
        :raises QueueFull: the queue is full under ``Overflow.RAISE``
        :raises PublishTimeout: no room appeared within *timeout* under ``BLOCK``
        :raises Unauthorized: the policy does not let *principal* publish this type
        :raises DispatcherClosed: the dispatcher is not running
        :raises InvalidEvent: *event* is not an event, or its key function failed
        :raises InvalidConfiguration: *timeout* is negative or not a number
        """
        ...


class PublishNowaitMethod(Protocol):
    """``Dispatcher.publish_nowait``: its signature and documentation."""

    def __call__(self, event: object, *, principal: Hashable | None = None) -> bool:
        """Queue *event* without ever waiting (also callable from sync code on the loop's
        thread; from other threads use :meth:`publish_threadsafe`).

        :return: True when accepted; False when refused under ``DROP_NEWEST`` or by
            a publish middleware
        :raises QueueFull: the queue is full under ``BLOCK`` or ``RAISE``
        :raises RuntimeError: called from a thread other than the event loop's
        """
        ...


class PublishAndWaitMethod(Protocol):
    """``Dispatcher.publish_and_wait``: its signature and documentation."""

    async def __call__(
        self,
        event: E,
        *,
        timeout: float | None = None,
        principal: Hashable | None = None,
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
        ...


class Publisher:
    """``publish``, ``publish_nowait`` and ``publish_and_wait``."""

    def __init__(
        self,
        states: TypeStates,
        run: Run,
        features: Features,
        routes: Routes,
        reporter: Reporter,
        delivery: Delivery,
    ) -> None:
        self._states = states
        self._fast = states.fast
        self._run = run
        self._features = features
        self._routes = routes
        self._reporter = reporter
        self._delivery = delivery

    # No `*` before `timeout`: keyword-only parameters cost ~230 instructions per call
    # on CPython 3.11 (bench/PROFILE.md); PublishMethod keeps them keyword-only for users.
    async def publish(
        self,
        event: object,
        timeout: float | None = None,
        principal: Hashable | _Unset | None = UNSET,
        session: Any = None,
    ) -> bool:
        """Queue *event*: see :class:`PublishMethod`."""
        if timeout is not None:
            check_timeout("timeout", timeout)
        if session is not None:
            return await self._features.publish_in_transaction(event, session)
        state = self._fast.get(type(event))  # type(): cheaper than .__class__ with many types
        if state is None:  # a new type, not running, or middleware/policy/context/key/route
            prepared = self._prepare(event, principal, tracked=False)
            if prepared is None:
                return False
            state, item = prepared
            if state.route is not None:
                return await self._send(state, item, timeout, principal)
            if state.queue.full():
                return await self._put_full(state, item, timeout)
            self._states.enqueue(state, item)
            return True
        items = state.items
        if len(items) < state.queue.limit:
            items.append(event)
            state.counts.accepted += 1  # inline: see tests/test_state_fields.py
            gate = state.gate
            if not gate.scheduled and gate.running < gate.concurrency:
                self._run.pool.schedule(state)  # type: ignore[union-attr]  # set while running
            return True
        return await self._put_full(state, event, timeout)

    def publish_nowait(
        self, event: object, *, principal: Hashable | _Unset | None = UNSET
    ) -> bool:
        """Queue *event* without waiting: see :class:`PublishNowaitMethod`."""
        loop_thread = self._run.loop_thread
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
        if state.queue.full():
            if state.queue.overflow is Overflow.BLOCK:
                state.counts.refuse()
                raise self._queue_full(state, "publish_nowait never waits")
            return self._overflow(state, item)
        self._states.enqueue(state, item)
        return True

    async def publish_and_wait(  # no `*`: see publish
        self,
        event: E,
        timeout: float | None = None,
        principal: Hashable | _Unset | None = UNSET,
        raise_errors: bool = False,
    ) -> Outcome[E]:
        """Publish *event* and wait: see :class:`PublishAndWaitMethod`."""
        if timeout is not None:
            check_timeout("timeout", timeout)
        pool = self._run.pool
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
        if len(items) >= state.queue.limit:
            await self._put_full(state, envelope, timeout)  # a drop finishes the envelope
        else:
            items.append(envelope)
            state.counts.accepted += 1  # inline: see tests/test_state_fields.py
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

    async def publish_for(
        self, slot: WorkerSlot | None, event: object, timeout: float | None
    ) -> bool:
        """:meth:`publish` on behalf of the handler of *slot* (a plain ``def`` handler
        publishing from its worker thread): a wait for room is that handler's wait, so
        the deadlock escape sees it (None: an outside thread, a plain publish)."""
        if slot is None:
            return await self.publish(event, timeout=timeout)
        if timeout is not None:
            check_timeout("timeout", timeout)
        prepared = self._prepare(event, UNSET, tracked=False)
        if prepared is None:
            return False
        state, item = prepared
        if state.route is not None:
            return await self._send(state, item, timeout)
        if state.queue.full():
            return await self._put_full(state, item, timeout, slot)
        self._states.enqueue(state, item)
        return True

    def _prepare(
        self, event: object, principal: Hashable | _Unset | None, tracked: bool
    ) -> tuple[TypeState, Any] | None:
        """The slow part of publish: phase, middleware, validation, authorization, key,
        envelope.

        :return: the state and the item to queue, or None when a middleware refused it
        """
        self._run.check_running()
        features = self._features
        context = copy_context() if features.propagate_context else None
        chain = features.publish_chain
        if chain:
            original = event
            if context is None:
                event = apply_publish_chain(chain, event)
            else:  # what the middleware sets there travels with the event
                event = context.run(apply_chain_in_copy, chain, event)
            if event is None:
                state = self._states.state_for(original)
                state.counts.drop()
                self._reporter.dropped(original, DropReason.REJECTED)
                return None
        state = self._states.state_for(event)
        policy = features.policy
        if policy is not None:
            who = current_principal() if principal is UNSET else principal
            if not policy.may_publish(who, state.event_type):
                state.counts.refuse()
                raise Unauthorized(
                    f"{who!r} may not publish {state.event_type.__qualname__}: the "
                    "authorization policy does not allow it (everything not granted is denied)",
                    who,
                    state.event_type,
                )
        key: Any = NO_KEY
        if state.config.key is not None:
            try:
                key = state.key_of(event)
            except InvalidEvent:
                state.counts.refuse()
                raise
        if tracked or features.envelope_all or key is not NO_KEY:
            stamped = bool(self._delivery.handle_chain)
            return state, Envelope(event, context, tracked, stamped, key)
        return state, event

    async def _put_full(
        self,
        state: TypeState,
        item: object,
        timeout: float | None,
        slot: WorkerSlot | None = None,
    ) -> bool:
        """Apply the overflow policy to *item* arriving at *state*'s full queue.

        :param slot: the worker slot of the handler that publishes (default: the
            current task's, if it is a handler)
        """
        if state.queue.overflow is not Overflow.BLOCK:
            return self._overflow(state, item)
        pool = self._run.pool
        wake_class = None if pool is None else pool.wake_class
        wait = begin_wait(pool, state, slot)
        try:
            while True:
                putter = state.park(item, wake=None if wake_class is None else wake_class())
                try:
                    if timeout is None:  # no cancel scope where none is needed
                        await putter.wake.wait()
                    else:
                        with anyio.fail_after(timeout):
                            await putter.wake.wait()
                except BaseException as exc:
                    if putter.entered and not state.withdraw(putter):
                        # Its handling started: the publish took effect, so it returns
                        # normally (a cancel scope delivers the cancellation again at
                        # the next checkpoint).
                        return True
                    state.forget(putter)
                    if isinstance(exc, TimeoutError):
                        state.counts.refuse()
                        raise PublishTimeout(
                            f"no room in the queue of {state.event_type.__qualname__} "
                            f"(queue_size={state.queue.maxsize}) within {timeout} s: its handlers "
                            "are not keeping up; raise queue_size or concurrency, or publish "
                            "with a longer timeout",
                            state.event_type,
                        ) from None
                    raise
                if putter.entered:
                    if pool is not None:
                        pool.kick(state)
                    return True
                if putter.closed:  # counted as refused by the shutdown
                    raise DispatcherClosed(self._run.closed_message())
                retried = self._after_policy_change(state, item)
                if retried is not None:
                    return retried
        finally:
            if wait is not None:
                await end_wait(pool, wait)

    def _after_policy_change(self, state: TypeState, item: object) -> bool | None:
        """A waiting publisher was released because the policy changed: apply the new
        one (None: it is BLOCK again, so wait again)."""
        if not state.queue.full():
            self._states.enqueue(state, item)
            return True
        if state.queue.overflow is Overflow.BLOCK:
            return None
        return self._overflow(state, item)

    def _overflow(self, state: TypeState, item: object) -> bool:
        """The non-blocking policies for a full queue."""
        overflow = state.queue.overflow
        if overflow is Overflow.DROP_NEWEST:
            state.counts.drop()
            self._reporter.dropped(item, DropReason.DROPPED_NEWEST)
            return False
        if overflow is Overflow.DROP_OLDEST:
            oldest = state.evict()
            self._states.enqueue(state, item)
            self._reporter.dropped(oldest, DropReason.EVICTED)
            return True
        state.counts.refuse()
        raise self._queue_full(state, "its overflow policy is RAISE")

    async def _send(
        self,
        state: TypeState,
        item: object,
        timeout: float | None,
        principal: Hashable | _Unset | None = UNSET,
    ) -> bool:
        """Publish a routed event: a durable send within the publish's deadline; a
        full, unreachable or stalled broker follows the overflow policy."""
        event = item.event if isinstance(item, Envelope) else item
        deadline = None if timeout is None else anyio.current_time() + timeout
        routes = self._routes
        route = state.route
        if not routes.is_open(route):
            await routes.open(route)
        extra: dict[str, Any] = {}
        if takes_deadline(route):
            who = current_principal() if principal is UNSET else principal
            # the envelope carries a principal that is a JSON value; others stay local
            wire = who if isinstance(who, (str, int, float, bool)) else None
            extra = {"deadline": deadline, "principal": wire}
        overflow = state.queue.overflow
        while True:
            try:
                await state.route.send(state.event_type, event, **extra)
            except QueueFull:
                if overflow is Overflow.BLOCK:
                    if deadline is not None and anyio.current_time() >= deadline:
                        state.counts.refuse()
                        raise PublishTimeout(
                            f"the broker had no room for {state.event_type.__qualname__} "
                            f"within {timeout} s",
                            state.event_type,
                        ) from None
                    await anyio.sleep(_SEND_RETRY)
                    if not routes.is_open(route):  # shutdown closed the transport
                        state.counts.refuse()
                        raise DispatcherClosed(
                            "the dispatcher stopped while this publish waited for room on "
                            "the broker: the event was not sent"
                        ) from None
                    continue
                if overflow is Overflow.RAISE:
                    state.counts.refuse()
                    raise
                # DROP_NEWEST, and DROP_OLDEST (a broker evicts nothing for us)
                state.counts.drop()
                self._reporter.dropped(event, DropReason.DROPPED_NEWEST)
                return False
            return True

    @staticmethod
    def _queue_full(state: TypeState, why: str) -> QueueFull:
        return QueueFull(
            f"the queue of {state.event_type.__qualname__} is full "
            f"(queue_size={state.queue.maxsize}) and {why}: its handlers are not keeping "
            "up; retry later, raise queue_size or concurrency, or choose another overflow policy",
            state.event_type,
        )

    def queue_dead_letter(self, letter: DeadLetter) -> None:
        """Queue *letter* for DeadLetter subscribers, never waiting (it may come from a worker)."""
        if self._run.pool is None or not self._states.registry.resolve(DeadLetter):
            return
        state = self._states.state_for(letter)
        queue = state.queue
        if not queue.full():
            self._states.enqueue(state, letter)
        elif queue.overflow is Overflow.BLOCK or queue.overflow is Overflow.RAISE:
            state.counts.refuse()
            logger.error(
                "the DeadLetter queue is full (queue_size=%d): a dead letter of %s was not queued",
                queue.maxsize,
                type(letter.event).__qualname__,
            )
        else:
            self._overflow(state, letter)
