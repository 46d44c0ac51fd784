"""A worker's slot: which type it serves, whether it holds a slot there, which key
(a leaf module; the worker pool, the deadlock escape and the thread bridge read it)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Context, ContextVar
from typing import Any

import anyio

from ._envelope import NO_KEY
from ._state import TypeState


class ThreadCall:
    """A plain handler's call running in a worker thread: the token it holds in its
    type's thread limiter (see ``_threads``)."""

    __slots__ = ("limiter", "token")

    def __init__(self, limiter: anyio.CapacityLimiter, token: object) -> None:
        self.limiter = limiter
        self.token = token


class WorkerSlot:
    """One worker task: the type it serves now, whether it holds a slot there, the
    key whose events it handles, and the thread its plain handler runs in."""

    __slots__ = ("bind", "holding", "key", "pool", "state", "task", "thread")

    def __init__(self, pool: object) -> None:
        #: the worker pool it belongs to (compared by identity only)
        self.pool = pool
        #: the worker's own task: only it is the handler (tasks a handler starts
        #: inherit the context, and with it this slot, but hold no slot)
        self.task = anyio.get_current_task().id
        self.state: TypeState | None = None
        self.holding = False
        self.key: Any = NO_KEY
        #: the call of a plain handler this worker awaits in a thread (None: none)
        self.thread: ThreadCall | None = None
        #: makes this slot current inside a publisher's context (propagate_context)
        self.bind = _bind_slot(self)


#: the slot of the worker whose handler runs in this context
current_slot: ContextVar[WorkerSlot | None] = ContextVar("eventcore_worker_slot", default=None)

#: the plain handler's call running in this worker thread
current_thread_call: ContextVar[ThreadCall | None] = ContextVar(
    "eventcore_thread_call", default=None
)


def _bind_slot(slot: WorkerSlot) -> Callable[[Context], None]:
    """Make the worker's slot visible inside a publisher's context (for the deadlock escape)."""

    def bind(context: Context) -> None:
        context.run(current_slot.set, slot)

    return bind
