"""Plain (``def``) handlers: run in a worker thread, counted against the type's limit.

A sync handler is wrapped once, at subscribe time, into an async callable that
runs it with ``anyio.to_thread.run_sync``. Each type has a capacity limiter of
``concurrency`` tokens; a call holds its token until its *thread* returns, so a
call whose wait was abandoned (a timeout, or shutdown: a thread cannot be
cancelled) still counts until the function really ends, and the type never runs
more than ``concurrency`` threads. A call cancelled before its thread started
never runs at all.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from ._errors import InvalidHandler
from ._slot import ThreadCall, current_slot, current_thread_call


def in_thread(handler: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    """An async callable that runs the sync *handler* in a worker thread."""

    @functools.wraps(handler)
    async def call(event: Any) -> Any:
        slot = current_slot.get()
        limiter = None if slot is None or slot.state is None else slot.state.gate.thread_limiter()
        token = object()
        thread_call = None
        if limiter is not None:
            await limiter.acquire_on_behalf_of(token)
            thread_call = ThreadCall(limiter, token)
        claim = threading.Lock()
        claimed = [False]

        def release() -> None:
            if limiter is not None:
                limiter.release_on_behalf_of(token)

        def work() -> Any:
            with claim:
                if claimed[0]:
                    return None  # cancelled before this thread started: never run
                claimed[0] = True
            # the thread's own copy of the context: publish_threadsafe finds the call
            current_thread_call.set(thread_call)
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise InvalidHandler(
                        f"handler {_name(handler)} is a plain function that returned an "
                        "awaitable: write it as `async def` so that eventcore awaits it on "
                        "the event loop"
                    )
                return result
            finally:
                if limiter is not None:
                    try:
                        anyio.from_thread.run_sync(release)
                    except Exception:  # the event loop is gone: nothing to release
                        pass

        if slot is not None:
            slot.thread = thread_call  # the worker waits for this thread from now on
        try:
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except BaseException:
            with claim:
                unstarted = not claimed[0]
                claimed[0] = True
            if unstarted:
                release()
            raise
        finally:
            if slot is not None and slot.thread is thread_call:
                slot.thread = None  # a thread abandoned on a timeout is no longer its call

    return call


def _name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", repr(handler))
