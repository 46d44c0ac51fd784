"""The thread bridge: publishing from threads other than the event loop's."""

from __future__ import annotations

import threading

import anyio
import anyio.from_thread

from ._errors import DispatcherClosed
from ._publishing import Publisher
from ._run import Run
from ._slot import WorkerSlot, current_slot, current_thread_call


class ThreadBridge:
    """``publish_threadsafe``: blocks the calling thread until the loop accepted the event.

    From the worker thread of one of the dispatcher's plain ``def`` handlers, the
    publish is that handler's: waiting for room in a full queue is its wait, which
    the deadlock escape sees (its worker task is suspended, holding the slot, until
    the thread returns), so a handler publishing into its own full queue lends its
    slot - and its thread's place in the type's limit - instead of deadlocking the type.
    """

    def __init__(self, run: Run, publisher: Publisher) -> None:
        self._run = run
        self._publisher = publisher

    def publish(self, event: object, timeout: float | None) -> bool:
        """Publish *event* from this thread (see ``Dispatcher.publish_threadsafe``)."""
        run = self._run
        token = run.token
        if token is None:
            raise DispatcherClosed(run.closed_message())
        if threading.get_ident() == run.loop_thread:
            raise RuntimeError(
                "publish_threadsafe() was called on the event loop's own thread, where it would "
                "block the loop: use `await publish(...)` or `publish_nowait(...)` there"
            )
        slot = self._handler_slot()
        try:
            return anyio.from_thread.run(
                self._publisher.publish_for, slot, event, timeout, token=token
            )
        except anyio.RunFinishedError:
            raise DispatcherClosed("the dispatcher's event loop has finished") from None

    def _handler_slot(self) -> WorkerSlot | None:
        """The slot of the plain handler whose call runs in this thread, if it is one of
        ours and its worker still waits for it (not a thread abandoned on a timeout)."""
        slot = current_slot.get()  # worker threads run in a copy of the worker's context
        call = current_thread_call.get()
        if slot is None or call is None or slot.thread is not call:
            return None
        if slot.pool is not self._run.pool or slot.pool is None:
            return None
        return slot
