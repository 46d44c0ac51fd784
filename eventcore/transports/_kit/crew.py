"""Task ownership: the background tasks of one open transport (settler,
keep-alive, janitor...) live in a task group the dispatcher owns, started at
``open`` and cancelled (and waited for) at ``close``.

A transport's life is ``open() ... close()``, not one ``async with``: ``open``
may run in a pump's or a publisher's task and ``close`` in the dispatcher's. So
the dispatcher hands ``open`` a task group of its own (``task_group=``), entered
before the transports open and left after they closed; the crew runs its jobs
there, each in a cancel scope of its own: :meth:`Crew.stop` cancels them and
waits until they ended. No task is made outside a task group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from ..._errors import InvalidConfiguration

Job = Callable[[], Awaitable[None]]


class Crew:
    """The tasks of one open transport (see the module doc).

    :param name: a prefix for the tasks' names (``eventcore-nats``)
    """

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self._logger = logger
        self._scopes: list[anyio.CancelScope] = []
        self._ended: anyio.Event | None = None

    @property
    def running(self) -> bool:
        """Whether the jobs were started and not stopped."""
        return bool(self._scopes)

    async def start(self, jobs: dict[str, Job], *, task_group: anyio.abc.TaskGroup | None) -> None:
        """Start *jobs* (by name) in *task_group*; they run until :meth:`stop`. A job
        that raises is logged and the others go on.

        :raises InvalidConfiguration: no task group (the transport was opened
            outside a dispatcher's run)
        """
        if task_group is None:
            raise InvalidConfiguration(
                f"{self.name} was opened without a task group for its tasks: open a "
                "transport through its Dispatcher (async with), or pass open(bus, "
                "task_group=...) a task group that outlives close()"
            )
        if self._scopes:
            raise RuntimeError(f"the tasks of {self.name} run already")
        self._scopes = [anyio.CancelScope() for _ in jobs]
        ended = self._ended = anyio.Event()
        left = [len(jobs)]
        for scope, (name, job) in zip(self._scopes, jobs.items(), strict=True):
            task_group.start_soon(
                self._guarded, scope, job, left, ended, name=f"{self.name}-{name}"
            )

    async def _guarded(
        self, scope: anyio.CancelScope, job: Job, left: list[int], ended: anyio.Event
    ) -> None:
        try:
            with scope:
                await job()
        except Exception:
            self._logger.exception("the task %s of the transport failed", self.name)
        finally:
            left[0] -= 1
            if left[0] == 0:
                ended.set()

    async def stop(self) -> None:
        """Cancel every job and wait until they ended."""
        scopes, ended = self._scopes, self._ended
        self._scopes = []
        for scope in scopes:
            scope.cancel()
        if ended is not None and scopes:
            with anyio.CancelScope(shield=True):
                await ended.wait()
