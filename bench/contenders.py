"""The contenders: eventcore, the bare-runtime baselines and the peer libraries.

Each contender opens a :class:`Session` for one run: per event type a ``publish``
coroutine function (or, for ``roundtrip``, one that waits until the handlers ran)
and a ``drain`` that returns when every published event was handled. The
baselines are written the way an expert would write them by hand: the worker
loops call the handler inline, with no extra coroutine layer.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio

from .workloads import Counter, Handler, Publish, Signature, Spec

ASYNCIO_LOOPS = ("asyncio", "uvloop")
ALL_LOOPS = ("asyncio", "uvloop", "trio")


@dataclass
class Session:
    """One contender, set up for one run."""

    #: ``publish[k](event)`` publishes an event of type *k*
    publish: Sequence[Publish]
    #: returns once every published event has been handled
    drain: Callable[[], Awaitable[None]]
    #: the bare loop runs its own burst loop (inlined calls): ``burst(events, n)``
    burst: Callable[[Sequence[Any], int], Awaitable[None]] | None = None


async def _nothing() -> None:
    return None


async def _coroutine(run: Callable[[], Awaitable[None]]) -> None:
    await run()


def polling_drain(counter: Counter) -> Callable[[], Awaitable[None]]:
    """A drain for libraries that cannot say when they are done: poll the call count."""

    async def drain() -> None:
        while counter.n < counter.expected:  # noqa: ASYNC110 - the library offers nothing to await
            await anyio.sleep(0.0005)

    return drain


class Contender:
    """A library or baseline under test."""

    name: ClassVar[str]
    label: ClassVar[str]
    sig: ClassVar[Signature] = "ev"
    backends: ClassVar[tuple[str, ...]] = ASYNCIO_LOOPS
    #: fraction of the scenario's events this contender gets (slow peers get fewer)
    scale: ClassVar[float] = 1.0
    #: scenario -> why this contender sits it out
    skips: ClassVar[dict[str, str]] = {}

    def skip_reason(self, spec: Spec, backend: str) -> str | None:
        """Why this contender does not run *spec* on *backend*, or None."""
        if backend not in self.backends:
            return f"{self.label} does not run on {backend}"
        for prefix, why in self.skips.items():
            if spec.scenario.startswith(prefix):
                return why
        return None

    def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AbstractAsyncContextManager[Session]:
        """Set up the contender for *spec*; an async context manager yielding a session."""
        raise NotImplementedError


# -- the bare runtime ------------------------------------------------------------------


class BareLoop(Contender):
    """``await handler(ev)`` in the producer's own loop: the call-cost limit."""

    name = "bare_loop"
    label = "bare `await handler(ev)` loop"
    backends = ALL_LOOPS
    skips: ClassVar[dict[str, str]] = {
        "conc": "no queue, no concurrency",
        "latency": "inline call: nothing queued",
        "overload": "inline call: nothing queued, memory trivially flat",
    }

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        hs = tuple(handlers[0])
        table = {cls: tuple(h) for cls, h in zip(types, handlers, strict=True)}

        async def burst(events: Sequence[Any], n: int) -> None:
            if len(events) == 1 and len(hs) == 1:
                h, ev = hs[0], events[0]
                for _ in range(n):
                    await h(ev)
            elif len(events) == 1:
                ev = events[0]
                for _ in range(n):
                    for h in hs:
                        await h(ev)
            else:
                for _ in range(n // len(events)):
                    for ev in events:
                        for h in table[ev.__class__]:
                            await h(ev)
                for ev in events[: n % len(events)]:
                    for h in table[ev.__class__]:
                        await h(ev)

        yield Session([_fan_out(tuple(h)) for h in handlers], _nothing, burst)


def _fan_out(hs: tuple[Handler, ...]) -> Handler:
    """Call each of *hs* in turn (the handler itself when there is one)."""
    if len(hs) == 1:
        return hs[0]

    async def fan_out(ev: Any) -> None:
        for h in hs:
            await h(ev)

    return fan_out


def _asyncio_worker(
    q: asyncio.Queue[Any], types: Sequence[type], handlers: Sequence[Sequence[Handler]]
) -> Callable[[], Awaitable[None]]:
    """The bare worker: ``ev = await q.get(); await handler(ev)``, stopping at ``None``."""
    hs = tuple(handlers[0])
    table = {cls: tuple(h) for cls, h in zip(types, handlers, strict=True)}
    if len(types) == 1 and len(hs) == 1:
        h = hs[0]

        async def one() -> None:
            while True:
                ev = await q.get()
                if ev is None:
                    return
                await h(ev)

        return one
    if len(types) == 1:

        async def fan() -> None:
            while True:
                ev = await q.get()
                if ev is None:
                    return
                for h in hs:
                    await h(ev)

        return fan

    async def routed() -> None:
        while True:
            ev = await q.get()
            if ev is None:
                return
            for h in table[ev.__class__]:
                await h(ev)

    return routed


class BareQueue(Contender):
    """``asyncio.Queue(1024)`` and worker tasks: the queued-dispatch floor."""

    name = "bare_queue"
    label = "bare asyncio.Queue(1024) + worker"

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        q: asyncio.Queue[Any] = asyncio.Queue(1024)
        workers = spec.concurrency
        if spec.mode == "roundtrip":
            loop = asyncio.get_running_loop()
            h = handlers[0][0]

            async def roundtrip_worker() -> None:
                while True:
                    item = await q.get()
                    if item is None:
                        return
                    await h(item[0])
                    item[1].set_result(None)

            async def publish_and_wait(ev: Any) -> None:
                fut = loop.create_future()
                await q.put((ev, fut))
                await fut

            run: Callable[[], Awaitable[None]] = roundtrip_worker
            publish: list[Publish] = [publish_and_wait]
        else:
            run = _asyncio_worker(q, types, handlers)
            publish = [q.put] * len(types)
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(_coroutine(run)) for _ in range(workers)
        ]

        async def drain() -> None:
            for _ in tasks:
                await q.put(None)
            await asyncio.gather(*tasks)

        try:
            yield Session(publish, drain)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class AnyioStream(Contender):
    """An anyio memory object stream (1024): ``send_nowait``, ``await send`` when full."""

    name = "anyio_stream"
    label = "anyio memory stream, send_nowait"
    backends = ALL_LOOPS

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        send, recv = anyio.create_memory_object_stream[Any](1024)
        send_nowait, send_wait = send.send_nowait, send.send
        receive_nowait, receive = recv.receive_nowait, recv.receive
        would_block, end = anyio.WouldBlock, anyio.EndOfStream
        h = handlers[0][0]
        table = {cls: tuple(hs) for cls, hs in zip(types, handlers, strict=True)}

        async def take() -> Any:
            """The next item, or raise EndOfStream; waits only when the stream is empty."""
            try:
                return receive_nowait()
            except would_block:
                return await receive()

        async def direct() -> None:
            while True:
                try:
                    ev = receive_nowait()
                except would_block:
                    try:
                        ev = await receive()
                    except end:
                        return
                except end:
                    return
                await h(ev)

        async def routed() -> None:
            while True:
                try:
                    ev = receive_nowait()
                except would_block:
                    try:
                        ev = await receive()
                    except end:
                        return
                except end:
                    return
                for handler in table[ev.__class__]:
                    await handler(ev)

        async def roundtrip() -> None:
            while True:
                try:
                    ev, done = await take()
                except end:
                    return
                await h(ev)
                done.set()

        async def publish(ev: Any) -> None:
            try:
                send_nowait(ev)
            except would_block:
                await send_wait(ev)

        async def publish_and_wait(ev: Any) -> None:
            done = anyio.Event()
            await publish((ev, done))
            await done.wait()

        if spec.mode == "roundtrip":
            worker, pubs = roundtrip, [publish_and_wait]
        elif len(types) == 1 and len(handlers[0]) == 1:
            worker, pubs = direct, [publish]
        else:
            worker, pubs = routed, [publish] * len(types)
        finished = anyio.Event()
        running = spec.concurrency

        async def run() -> None:
            nonlocal running
            try:
                await worker()
            finally:
                running -= 1
                if not running:
                    finished.set()

        async def drain() -> None:
            await send.aclose()
            await finished.wait()

        async with anyio.create_task_group() as tg:
            for _ in range(spec.concurrency):
                tg.start_soon(run)
            try:
                yield Session(pubs, drain)
            finally:
                tg.cancel_scope.cancel()
                await send.aclose()
                await recv.aclose()


# -- eventcore -------------------------------------------------------------------------


class Eventcore(Contender):
    """eventcore's Dispatcher with its defaults: queue_size 1024, BLOCK."""

    name = "eventcore"
    label = "**eventcore**"
    backends = ALL_LOOPS

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        from eventcore import Dispatcher

        bus = Dispatcher(queue_size=1024)
        for cls, hs in zip(types, handlers, strict=True):
            for h in hs:
                bus.subscribe(cls, h)
            if spec.concurrency != 1:
                bus.configure(cls, concurrency=spec.concurrency)
        async with bus:
            pubs: list[Publish] = [
                bus.publish_and_wait if spec.mode == "roundtrip" else bus.publish
            ] * len(types)
            yield Session(pubs, bus.drain)


# -- peers -----------------------------------------------------------------------------


class Blinker(Contender):
    """blinker ``Signal.send_async``: awaits each receiver inline (no queue)."""

    name = "blinker"
    label = "blinker `send_async` (inline)"
    sig = "sender"
    skips: ClassVar[dict[str, str]] = {
        "conc": "inline calls: no concurrency limit to set",
        "latency": "inline call: nothing queued",
        "overload": "inline call: nothing queued, memory trivially flat",
    }

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        from blinker import Signal

        pubs: list[Publish] = []
        for hs in handlers:
            signal = Signal()
            for h in hs:
                signal.connect(h, weak=False)
            pubs.append(signal.send_async)
        yield Session(pubs, _nothing)


class Pyee(Contender):
    """pyee ``AsyncIOEventEmitter.emit``: one task per handler per event, unbounded."""

    name = "pyee"
    label = "pyee AsyncIOEventEmitter"
    scale = 0.2
    skips: ClassVar[dict[str, str]] = {
        "conc": "no concurrency limit (a task per handler call)",
        "roundtrip": "emit() has no way to wait for the handlers of one event",
    }

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        from pyee.asyncio import AsyncIOEventEmitter

        ee = AsyncIOEventEmitter()
        emit = ee.emit
        pubs: list[Publish] = []
        for k, hs in enumerate(handlers):
            name = f"e{k}"
            for h in hs:
                ee.add_listener(name, h)
            pubs.append(_emitter(emit, name))
        try:
            yield Session(pubs, ee.wait_for_complete)
        finally:
            ee.cancel()


def _emitter(emit: Callable[[str, Any], Any], name: str) -> Publish:
    async def publish(ev: Any) -> None:
        emit(name, ev)

    return publish


class Aiopubsub(Contender):
    """aiopubsub ``Publisher.publish`` to async listeners (an unbounded queue each)."""

    name = "aiopubsub"
    label = "aiopubsub"
    sig = "key_msg"
    scale = 0.2
    skips: ClassVar[dict[str, str]] = {
        "types10000": "subscribing is O(subscribers) each (the hub announces every new "
        "subscriber to a cache-miss lookup over all keys): 10,000 listeners take minutes",
        "conc": "one consumer per listener, no concurrency setting",
        "roundtrip": "publish() has no way to wait for the listeners",
    }

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        from aiopubsub import Hub, Key, Publisher, Subscriber

        hub = Hub()
        publisher = Publisher(hub, prefix=Key("bench"))
        subscriber = Subscriber(hub, "bench")
        pubs: list[Publish] = []
        for k, hs in enumerate(handlers):
            name = f"e{k}"
            for h in hs:
                subscriber.add_async_listener(Key("bench", name), h)
            pubs.append(_emitter(publisher.publish, name))
        try:
            yield Session(pubs, polling_drain(counter))
        finally:
            await subscriber.remove_all_listeners()


class FastapiEvents(Contender):
    """fastapi-events ``dispatch()`` outside a request: one task per event.

    Outside a request-response cycle ``dispatch`` schedules the handlers as an
    ``asyncio`` task; ``middleware_id=`` names the handler set, as the library
    documents for dispatching from background jobs.
    """

    name = "fastapi_events"
    label = "fastapi-events (outside a request)"
    sig = "name_ev"
    scale = 0.05
    skips: ClassVar[dict[str, str]] = {
        "types10000": "every dispatch fnmatch-es the event name against every registered "
        "name (O(types) per event)",
        "conc": "no concurrency setting (a task per event)",
        "roundtrip": "dispatch() has no way to wait for the handlers",
        "latency": "cannot keep up with 20,000 ev/s (the queue of tasks only grows)",
    }

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        from fastapi_events import handler_store
        from fastapi_events.dispatcher import dispatch
        from fastapi_events.handlers.local import LocalHandler

        local_handler_class: Any = LocalHandler  # untyped
        local = local_handler_class()
        middleware_id = id(local)
        handler_store[middleware_id] = [local]
        pubs: list[Publish] = []
        for k, hs in enumerate(handlers):
            name = f"e{k}"
            for h in hs:
                local.register(h, event_name=name)

            async def publish(ev: Any, name: str = name) -> None:
                # A dict payload, as the library expects (its OpenTelemetry hooks read
                # and write it as a carrier when opentelemetry is installed).
                dispatch(name, {"event": ev}, validate_payload=False, middleware_id=middleware_id)

            pubs.append(publish)
        try:
            yield Session(pubs, polling_drain(counter))
        finally:
            del handler_store[middleware_id]


class Bubus(Contender):
    """bubus ``EventBus.dispatch``: pydantic events, write-ahead history, 100 pending at most."""

    name = "bubus"
    label = "bubus"
    scale = 0.003
    skips: ClassVar[dict[str, str]] = {
        "fanout100": "too slow for 100 handlers (about 1 k events/s with one)",
        "types": "one pydantic event class per type: not set up for many types",
        "conc": "no concurrency setting",
        "latency": "about 1 k events/s: cannot keep up with 20,000 ev/s",
        "overload": "refuses a 101st pending event (RuntimeError), so it never overloads",
    }

    @asynccontextmanager
    async def session(
        self,
        spec: Spec,
        types: Sequence[type],
        handlers: Sequence[Sequence[Handler]],
        counter: Counter,
    ) -> AsyncIterator[Session]:
        from bubus import BaseEvent, EventBus

        event_class: Any = type("BenchEvent", (BaseEvent,), {"__module__": __name__})
        bus = EventBus()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it warns that the handlers share a name
            for h in handlers[0]:
                bus.on(event_class, h)
        dispatch = bus.dispatch

        async def publish(ev: Any) -> None:
            while True:
                try:
                    dispatch(event_class())
                except RuntimeError as exc:
                    if "at capacity" not in str(exc):
                        raise
                    await bus.wait_until_idle()  # it holds 100 pending events at most
                else:
                    return

        async def publish_and_wait(ev: Any) -> None:
            await dispatch(event_class())

        async def drain() -> None:
            await bus.wait_until_idle()

        try:
            yield Session([publish_and_wait if spec.mode == "roundtrip" else publish], drain)
        finally:
            await bus.stop(clear=True)


CONTENDERS: tuple[type[Contender], ...] = (
    BareLoop,
    BareQueue,
    AnyioStream,
    Eventcore,
    Blinker,
    Pyee,
    Aiopubsub,
    FastapiEvents,
    Bubus,
)
BY_NAME = {c.name: c for c in CONTENDERS}
