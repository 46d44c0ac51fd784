"""The framework-neutral dashboard: one sampler, a ring of samples, viewers, actions.

One sampler task, in the dashboard's own task group (``async with dashboard``),
reads ``Dispatcher.stats()`` once per ``interval`` while at least one viewer is
connected (and for ``linger`` seconds after the last one left, so that a reload
finds the history whole). Viewers wait on the same tick: a thousand viewers cost
one sample per interval, and nobody watching costs nothing. The handle
middleware that measures handler latency is installed only while the sampler
runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from .._deadletters import DeadLetter
from .._dispatcher import Dispatcher, Installed
from .._errors import EventcoreError
from .._middleware import CallNext, HandlerCall
from .._stats import TypeStats
from ._letters import LetterBook

logger = logging.getLogger("eventcore.dashboard")

#: how many handler durations per type a sample's quantiles are computed from
_DURATIONS = 2048


@dataclass(frozen=True)
class Request:
    """An HTTP request as the adapters hand it to the dashboard.

    :ivar method: ``GET``, ``POST``, ...
    :ivar route: the path inside the dashboard (``""``, ``"events"``, ...)
    :ivar headers: header names lower-cased
    :ivar client: the peer's address (None when the server does not say)
    :ivar body: the request body (POST)
    """

    method: str
    route: str
    headers: Mapping[str, str]
    client: str | None
    body: bytes = b""


Auth = Callable[[Request], "bool | Awaitable[bool]"]
"""``auth(request) -> bool`` (or awaitable): whether the request may see the dashboard."""


@dataclass
class _TypeWindow:
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=_DURATIONS))


def type_id(cls: type) -> str:
    """The name the dashboard shows and the actions use for *cls*."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Dashboard:
    """The live view of a :class:`~eventcore.Dispatcher` (see ``eventcore.dashboard``).

    :param bus: the dispatcher to show
    :param auth: who may see it (``auth(request) -> bool``, e.g. :func:`basic_auth`);
        without it only loopback clients that came through no proxy are answered,
        and a warning is logged
    :param allow_actions: allow pause / resume of a type and replay / discard of a
        dead letter (POSTs with a CSRF token and a same-origin check); read-only
        otherwise
    :param show_payloads: show dead letters' events and exception messages (else
        only their type and reason)
    :param interval: seconds between samples
    :param history: seconds of samples kept for a page that (re)loads
    :param max_viewers: live viewers at once; more get 503
    :param heartbeat: seconds between keep-alive comments on the event stream
    :param linger: seconds the sampler goes on after the last viewer left
    :param max_stream: seconds one event stream lasts before the browser reconnects
        (no server waits longer for it at shutdown; nothing is sent twice)
    :param dead_letters: how many recent dead letters are kept
    :param allowed_origins: origins allowed to POST actions besides the page's own
        (``"https://ops.example.com"``), e.g. behind a proxy that rewrites Host
    :param services: more figures to show beside the types, read at each sample:
        a name -> a callable returning a dataclass or a mapping of figures, e.g.
        ``{"outbox relay": relay.stats, "inbox": inbox.stats}``
    """

    def __init__(
        self,
        bus: Dispatcher,
        *,
        auth: Auth | None = None,
        allow_actions: bool = False,
        show_payloads: bool = False,
        interval: float = 1.0,
        history: float = 900.0,
        max_viewers: int = 16,
        heartbeat: float = 15.0,
        linger: float = 30.0,
        max_stream: float = 60.0,
        dead_letters: int = 100,
        allowed_origins: tuple[str, ...] = (),
        services: Mapping[str, Callable[[], object]] | None = None,
    ) -> None:
        if not isinstance(bus, Dispatcher):
            raise TypeError(f"Dashboard() takes a Dispatcher, got {bus!r}")
        services = dict(services or {})
        for name, read in services.items():
            if not isinstance(name, str) or not callable(read):
                raise TypeError(
                    "services= maps names to callables that return figures "
                    f"(e.g. relay.stats), got {name!r}: {read!r}"
                )
        if interval <= 0 or history < interval or max_viewers < 1 or heartbeat <= 0:
            raise ValueError(
                "Dashboard needs interval > 0, history >= interval, max_viewers >= 1 and "
                "heartbeat > 0"
            )
        if auth is not None and not callable(auth):
            raise TypeError(f"auth must be a callable auth(request) -> bool, got {auth!r}")
        self.bus = bus
        self.auth = auth
        self.allow_actions = allow_actions
        self.show_payloads = show_payloads
        self.interval = interval
        self.max_viewers = max_viewers
        self.heartbeat = heartbeat
        self.linger = linger
        self.max_stream = max_stream
        self.allowed_origins = tuple(allowed_origins)
        self.services = services
        #: the token every action must carry (sent to authorized viewers only)
        self.csrf_token = secrets.token_urlsafe(32)
        self.samples: deque[dict[str, Any]] = deque(maxlen=max(1, math.ceil(history / interval)))
        #: the recent dead letters, and a count per (type, reason) with the newest of each
        self.letters = LetterBook(dead_letters)
        self.viewers = 0
        self._windows: dict[type, _TypeWindow] = {}
        self._previous: tuple[float, Mapping[type, TypeStats]] | None = None
        self._tick: anyio.Event | None = None
        self._wanted: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._middleware: Installed | None = None
        self._dead_letter_subscription: Any = None
        self._stack: AsyncExitStack | None = None
        if auth is None:
            logger.warning(
                "the eventcore dashboard has no auth=: it answers loopback clients only "
                "(and refuses requests that came through a proxy); pass auth= to serve others"
            )

    # -- life ------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the dashboard runs (inside ``async with dashboard``)."""
        return self._task_group is not None

    async def __aenter__(self) -> Dashboard:
        if self._task_group is not None:
            raise RuntimeError("this dashboard is already running")
        self._tick = anyio.Event()
        self._wanted = anyio.Event()
        async with AsyncExitStack() as stack:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._stopped)
            self._dead_letter_subscription = self.bus.subscribe(DeadLetter, self._keep_letter)
            task_group.start_soon(self._sampler)
            self._task_group = task_group
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, stack = self._task_group, self._stack
        assert task_group is not None
        assert stack is not None
        self._task_group = self._stack = None
        task_group.cancel_scope.cancel()
        await stack.__aexit__(None, None, None)

    def _stopped(self) -> None:
        self._stop_measuring()
        if self._dead_letter_subscription is not None:
            self._dead_letter_subscription.unsubscribe()
            self._dead_letter_subscription = None
        tick = self._tick
        if tick is not None:
            tick.set()  # viewers still connected see the end

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """``async with dashboard.lifespan(app)``: for a framework's lifespan hook."""
        async with self:
            yield

    # -- viewers ---------------------------------------------------------------------

    def join(self) -> bool:
        """A viewer arrives; False when ``max_viewers`` are watching already."""
        if self.viewers >= self.max_viewers:
            return False
        self.viewers += 1
        if self._wanted is not None:
            self._wanted.set()
        return True

    def leave(self) -> None:
        """A viewer left."""
        self.viewers -= 1

    async def next_sample(self) -> dict[str, Any] | None:
        """Wait for the next sample (None after ``heartbeat`` seconds without one, or
        when the dashboard stopped)."""
        tick = self._tick
        if tick is None or self._task_group is None:
            return None
        with anyio.move_on_after(self.heartbeat):
            await tick.wait()
        if not tick.is_set() or self._task_group is None or not self.samples:
            return None
        return self.samples[-1]

    async def _sampler(self) -> None:
        """The one sampler: samples while anyone watches (and ``linger`` after)."""
        assert self._wanted is not None
        while True:
            if not self.viewers:
                self._wanted = anyio.Event()
                await self._wanted.wait()
            self._start_measuring()
            idle_since: float | None = None
            while True:
                self.take_sample()
                tick, self._tick = self._tick, anyio.Event()
                assert tick is not None
                tick.set()
                await anyio.sleep(self.interval)
                if self.viewers:
                    idle_since = None
                elif idle_since is None:
                    idle_since = anyio.current_time()
                elif anyio.current_time() - idle_since >= self.linger:
                    break
            self._stop_measuring()  # nobody watches: nothing measured, nothing sampled

    # -- sampling --------------------------------------------------------------------

    def _start_measuring(self) -> None:
        if self._middleware is None:
            self._middleware = self.bus.use(handle=[self._measure])

    def _stop_measuring(self) -> None:
        installed, self._middleware = self._middleware, None
        if installed is not None:
            installed.remove()
        self._windows.clear()

    async def _measure(self, event: Any, call: HandlerCall, call_next: CallNext) -> Any:
        started = time.perf_counter()
        try:
            return await call_next(event)
        finally:
            window = self._windows.get(event.__class__)
            if window is None:
                window = self._windows[event.__class__] = _TypeWindow()
            window.durations.append(time.perf_counter() - started)

    def take_sample(self) -> dict[str, Any]:
        """Read the dispatcher now and append a sample to the ring (also returned)."""
        bus = self.bus
        now = time.time()
        clock = time.perf_counter()
        stats = bus.stats()
        previous = self._previous
        elapsed = clock - previous[0] if previous is not None else 0.0
        types: dict[str, Any] = {}
        for cls, s in stats.items():
            if cls is DeadLetter:
                continue
            config = bus.config(cls)
            row: dict[str, Any] = {
                "name": cls.__qualname__,
                "depth": s.queued,
                "capacity": config.queue_size,
                "in_flight": s.in_flight,
                "limit": config.concurrency,
                "overflow": config.overflow.name,
                "paused": s.paused,
                "accepted": s.accepted,
                "handled": s.handled,
                "dropped": s.dropped + s.refused + s.evicted,
                "failed": s.failed,
            }
            before = previous[1].get(cls) if previous is not None else None
            for name in ("accepted", "handled", "dropped", "failed"):
                if before is None or elapsed <= 0:
                    row[f"{name}_rate"] = 0.0
                else:
                    was = _figure(before, name)
                    row[f"{name}_rate"] = round(max(0, row[name] - was) / elapsed, 2)
            window = self._windows.get(cls)
            row.update(_quantiles(window.durations if window is not None else ()))
            if window is not None:
                window.durations.clear()
            broker = s.broker
            row["broker"] = (
                None
                if broker is None
                else {"pending": broker.pending, "redelivered": broker.redelivered}
            )
            types[type_id(cls)] = row
        self._previous = (clock, stats)
        sample = {
            "t": round(now, 3),
            "types": types,
            "dead_letters": len(self.letters),
            "viewers": self.viewers,
            "services": {name: _service_figures(read) for name, read in self.services.items()},
        }
        self.samples.append(sample)
        return sample

    def latest(self) -> dict[str, Any]:
        """The newest sample; one taken now when the sampler is idle."""
        if self.samples and self._middleware is not None:
            return self.samples[-1]
        return self.take_sample()

    def hello(self) -> dict[str, Any]:
        """What a page needs first: settings, the CSRF token, the history, dead letters."""
        return {
            "csrf": self.csrf_token,
            "actions": self.allow_actions,
            "payloads": self.show_payloads,
            "interval": self.interval,
            "history": history(self.samples),
            "letters": self.letter_list(),
            "letter_groups": self.letter_groups(),
        }

    # -- dead letters ----------------------------------------------------------------

    async def _keep_letter(self, letter: DeadLetter) -> None:
        self.letters.keep(letter)

    @property
    def letters_version(self) -> int:
        """Changes whenever the dead letters shown do."""
        return self.letters.version

    def letter_list(self) -> list[dict[str, Any]]:
        """The recent dead letters, newest first, redacted unless ``show_payloads``."""
        return self.letters.recent(self.show_payloads)

    def letter_groups(self) -> list[dict[str, Any]]:
        """The dead letters per (type, reason) since start, failures first."""
        return self.letters.groups(self.show_payloads)

    # -- actions ---------------------------------------------------------------------

    def find_type(self, name: str) -> type | None:
        """The event class the dashboard shows as *name* (see :func:`type_id`)."""
        candidates = [*self.bus.stats(), *self.bus.paused_types(), *self.bus.configured_types()]
        for cls in candidates:
            if type_id(cls) == name:
                return cls
        return None

    async def act(self, action: str, target: str) -> tuple[int, dict[str, Any]]:
        """Carry out *action* on *target* (the caller checked auth, CSRF and origin).

        :return: an HTTP status and a JSON body
        """
        if action in ("pause", "resume"):
            cls = self.find_type(target)
            if cls is None:
                return 404, {"error": f"no event type {target!r}"}
            (self.bus.pause if action == "pause" else self.bus.resume)(cls)
            logger.info("dashboard: %s %s", action, target)
            return 200, {"ok": True, "paused": self.bus.paused(cls)}
        if action in ("replay", "discard"):
            try:
                wanted = int(target)
            except ValueError:
                return 400, {"error": "a dead letter's id is a number"}
            kept = self.letters.find(wanted)
            if kept is None:
                return 404, {"error": f"no dead letter {wanted}"}
            if action == "replay":
                try:
                    accepted = await self.bus.publish(kept.letter.event, timeout=1.0)
                except EventcoreError as exc:
                    return 409, {"error": f"{type(exc).__name__}: {exc}"}
                if not accepted:
                    return 409, {"error": "refused: the queue is full (DROP_NEWEST)"}
            self.letters.remove(kept)
            logger.info("dashboard: %s dead letter %d", action, wanted)
            return 200, {"ok": True}
        return 400, {"error": f"unknown action {action!r}"}


#: what the page's charts need of a sample that is not the newest
_CHARTED = ("depth", "accepted_rate", "handled_rate", "dropped_rate", "failed_rate")


def history(samples: Any) -> list[dict[str, Any]]:
    """*samples* for a page that (re)loads: the newest whole, the older ones with only
    what the charts draw (a 15-minute history of many types stays small)."""
    kept = list(samples)
    older = [
        {
            "t": sample["t"],
            "types": {
                name: {key: row[key] for key in _CHARTED} for name, row in sample["types"].items()
            },
        }
        for sample in kept[:-1]
    ]
    return older + kept[-1:]


def _figure(stats: TypeStats, name: str) -> int:
    if name == "dropped":
        return stats.dropped + stats.refused + stats.evicted
    value: int = getattr(stats, name)
    return value


def _quantiles(durations: Any) -> dict[str, float | None]:
    """p50 / p95 / p99 of *durations* in milliseconds (None without any)."""
    ordered = sorted(durations)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None}
    last = len(ordered) - 1
    return {
        name: round(ordered[min(last, math.ceil(q * len(ordered)) - 1)] * 1000, 3)
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
    }


def _service_figures(read: Callable[[], object]) -> dict[str, Any]:
    """The figures *read* returns (a dataclass or a mapping), as JSON-ready values;
    ``{"error": ...}`` when it raised or returned something else."""
    try:
        figures = read()
    except Exception as exc:  # a service's figures must not stop the sampler
        return {"error": type(exc).__name__}
    if dataclasses.is_dataclass(figures) and not isinstance(figures, type):
        items = {f.name: getattr(figures, f.name) for f in dataclasses.fields(figures)}
    elif isinstance(figures, Mapping):
        items = dict(figures)
    else:
        return {"error": f"not figures: {type(figures).__name__}"}
    return {str(key): _json_figure(value) for key, value in items.items()}


def _json_figure(value: object) -> object:
    """*value* as JSON takes it: numbers and text as they are, other things as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    return str(value)
