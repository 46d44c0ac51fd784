"""Task ownership: the background tasks of one open transport (settler,
keep-alive, janitor...) live in one anyio task group, started at ``open`` and
cancelled (and waited for) at ``close``.

A transport's life is ``open() ... close()``, not one ``async with``: ``open``
may run in a pump's or a publisher's task and ``close`` in the dispatcher's. So
the task group is entered by a host task of the crew's own, the one task made
outside a task group, owned by the crew: :meth:`Crew.stop` cancels the group,
which ends the host, and waits for it. Pass ``task_group=`` to :meth:`Crew.start`
to run the jobs in a task group of the caller's instead (no host then).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

Job = Callable[[], Awaitable[None]]


class Crew:
    """The tasks of one open transport (see the module doc).

    :param name: a prefix for the tasks' names (``eventcore-nats``)
    """

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self._logger = logger
        self._scopes: list[anyio.CancelScope] = []
        self._host: asyncio.Future[None] | None = None
        self._ended: anyio.Event | None = None

    @property
    def running(self) -> bool:
        """Whether the jobs were started and not stopped."""
        return bool(self._scopes)

    async def start(
        self, jobs: dict[str, Job], *, task_group: anyio.abc.TaskGroup | None = None
    ) -> None:
        """Start *jobs* (by name); they run until :meth:`stop`. A job that raises is
        logged and the others go on."""
        if self._scopes:
            raise RuntimeError(f"the tasks of {self.name} run already")
        self._scopes = [anyio.CancelScope() for _ in jobs]
        ended = self._ended = anyio.Event()
        if task_group is not None:
            left = [len(jobs)]
            for scope, (name, job) in zip(self._scopes, jobs.items(), strict=True):
                task_group.start_soon(self._guarded, scope, job, left, name=f"{self.name}-{name}")
            return
        started = asyncio.Event()
        scopes = self._scopes

        async def host() -> None:
            try:
                async with anyio.create_task_group() as group:
                    for scope, (name, job) in zip(scopes, jobs.items(), strict=True):
                        group.start_soon(
                            self._guarded, scope, job, None, name=f"{self.name}-{name}"
                        )
                    started.set()
            finally:
                started.set()
                ended.set()

        self._host = asyncio.ensure_future(host())  # the crew's one host (see the module doc)
        await started.wait()

    async def _guarded(self, scope: anyio.CancelScope, job: Job, left: list[int] | None) -> None:
        try:
            with scope:
                await job()
        except Exception:
            self._logger.exception("the task %s of the transport failed", self.name)
        finally:
            if left is not None:
                left[0] -= 1
                if left[0] == 0 and self._ended is not None:
                    self._ended.set()

    async def stop(self) -> None:
        """Cancel every job and wait until they ended."""
        scopes, host, ended = self._scopes, self._host, self._ended
        self._scopes, self._host = [], None
        for scope in scopes:
            scope.cancel()
        with anyio.CancelScope(shield=True):
            if host is not None:
                await asyncio.gather(host, return_exceptions=True)
            elif ended is not None and scopes:
                await ended.wait()
