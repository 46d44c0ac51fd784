"""What a benchmark run does: the scenario spec, the events, and the counting handlers.

Every handler counts its calls, so a contender that loses events is caught; the
handlers of every contender do exactly the same work, only their call signature
differs (blinker passes a sender, aiopubsub a key and a message, ...).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

Body = Literal["noop", "yield", "busy", "latency"]
Mode = Literal["burst", "paced", "roundtrip"]
#: how a library calls a handler: ``h(ev)``, ``h(sender)``, ``h(key, msg)``,
#: ``h((name, {"event": ev}))``
Signature = Literal["ev", "sender", "key_msg", "name_ev"]

Handler = Callable[..., Awaitable[Any]]
Publish = Callable[[Any], Awaitable[Any]]

#: the work of the overload scenario's handler
BUSY_SECONDS = 20e-6


@dataclass(frozen=True)
class Spec:
    """One scenario: how many events of how many types to how many handlers, and how."""

    scenario: str
    title: str
    n_events: int
    n_types: int = 1
    n_handlers: int = 1
    concurrency: int = 1
    body: Body = "noop"
    mode: Mode = "burst"
    #: events per second and seconds, for ``mode="paced"``
    rate: float = 0.0
    duration: float = 0.0

    @property
    def calls(self) -> int:
        """Handler calls expected for ``n_events`` events."""
        return self.n_events * self.n_handlers

    def scaled(self, factor: float) -> Spec:
        """The same scenario with fewer events (for slow peers and slow cases).

        Past one event per type the count is kept a multiple of ``n_types``; below it
        the round-robin goes over the first types only (each publish still switches
        type).
        """
        if factor >= 1.0:
            return self
        n = max(1, int(self.n_events * factor))
        if n >= self.n_types:
            n = n // self.n_types * self.n_types
        else:
            n = max(n, min(self.n_types, 1000))
        return Spec(
            self.scenario,
            self.title,
            n,
            self.n_types,
            self.n_handlers,
            self.concurrency,
            self.body,
            self.mode,
            self.rate,
            self.duration,
        )


class Ev:
    """The base of the benchmark's event classes; ``t`` is the publish time (latency)."""

    __slots__ = ("t",)

    def __init__(self, t: float = 0.0) -> None:
        self.t = t


def make_types(n: int) -> list[type[Ev]]:
    """*n* distinct event classes (one per "type" of the scenario)."""
    return [type(f"Ev{i}", (Ev,), {"__slots__": ()}) for i in range(n)]


class Counter:
    """Handler calls seen, plus the publish-to-handler-start latencies when recorded."""

    __slots__ = ("expected", "latencies", "n")

    def __init__(self) -> None:
        self.n = 0
        #: the calls the run expects, warm-up included (for drains that poll)
        self.expected = 0
        self.latencies: list[float] = []


def make_handler(
    sig: Signature,
    body: Body,
    counter: Counter,
    sleep: Callable[[float], Awaitable[Any]],
) -> Handler:
    """A handler with *sig* that counts its call and does *body*.

    :param sleep: the runtime's sleep (``asyncio.sleep`` or ``trio.sleep``): the
        ``yield`` body awaits ``sleep(0)``
    """
    clock = time.perf_counter
    latencies = counter.latencies
    busy = BUSY_SECONDS

    if sig == "ev":
        if body == "noop":

            async def ev_noop(ev: Any) -> None:
                counter.n += 1

            return ev_noop
        if body == "yield":

            async def ev_yield(ev: Any) -> None:
                counter.n += 1
                await sleep(0)

            return ev_yield
        if body == "busy":

            async def ev_busy(ev: Any) -> None:
                counter.n += 1
                end = clock() + busy
                while clock() < end:
                    pass

            return ev_busy

        async def ev_latency(ev: Any) -> None:
            latencies.append(clock() - ev.t)
            counter.n += 1

        return ev_latency

    if sig == "sender":  # blinker: receiver(sender, **kwargs); the event is the sender
        if body == "noop":

            async def sender_noop(sender: Any, **kwargs: Any) -> None:
                counter.n += 1

            return sender_noop
        if body == "busy":

            async def sender_busy(sender: Any, **kwargs: Any) -> None:
                counter.n += 1
                end = clock() + busy
                while clock() < end:
                    pass

            return sender_busy
        if body == "latency":

            async def sender_latency(sender: Any, **kwargs: Any) -> None:
                latencies.append(clock() - sender.t)
                counter.n += 1

            return sender_latency

    if sig == "key_msg":  # aiopubsub: callback(key, message)
        if body == "noop":

            async def key_msg_noop(key: Any, msg: Any) -> None:
                counter.n += 1

            return key_msg_noop
        if body == "busy":

            async def key_msg_busy(key: Any, msg: Any) -> None:
                counter.n += 1
                end = clock() + busy
                while clock() < end:
                    pass

            return key_msg_busy
        if body == "latency":

            async def key_msg_latency(key: Any, msg: Any) -> None:
                latencies.append(clock() - msg.t)
                counter.n += 1

            return key_msg_latency

    if sig == "name_ev":  # fastapi-events: handler((event_name, payload))
        if body == "noop":

            async def name_ev_noop(event: Any) -> None:
                counter.n += 1

            return name_ev_noop
        if body == "busy":

            async def name_ev_busy(event: Any) -> None:
                counter.n += 1
                end = clock() + busy
                while clock() < end:
                    pass

            return name_ev_busy
        if body == "latency":

            async def name_ev_latency(event: Any) -> None:
                latencies.append(clock() - event[1]["event"].t)
                counter.n += 1

            return name_ev_latency

    raise ValueError(f"no {body!r} handler for signature {sig!r}")
