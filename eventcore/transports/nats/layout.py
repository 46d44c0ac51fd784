"""How routed types lie on JetStream: streams, subjects and durable consumers, how
they are named, and creating or checking them on the server (an existing stream or
consumer that differs is reported, never changed).

* a stream per event type and consumer group, ``<prefix>_<group>__<name>_<crc>``,
  on the subjects ``<prefix>.<group>.<name>.<partition>``, work-queue retention;
* a durable pull consumer per stream (``<group>``), or per partition of a keyed
  type (``<group>-<p>``, one message in flight each).

A publisher creates or checks the streams of the groups it feeds; the consumers
are created or checked only by the processes that consume (a publisher-only
process need not know the consumers' ``ack_wait``, ``max_deliver``...). While a
fresh clustered stream has no leader yet, set-up calls are retried up to
``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext

from ..._errors import InvalidConfiguration, TransportError
from ..._transport import BrokerStats
from .settings import Settings

T = TypeVar("T")

#: the stream settings compared with an existing stream's
STREAM_FIELDS = ("subjects", "retention", "max_msgs", "max_bytes", "discard")
#: the consumer settings compared with an existing consumer's
CONSUMER_FIELDS = ("ack_policy", "ack_wait", "max_deliver", "max_ack_pending", "filter_subject")
#: JetStream API error codes that mean "not ready yet" (no peers or leader yet, busy)
_NOT_READY = {10005, 10008, 10023, 10074}
#: the pause between set-up attempts while JetStream is not ready (s)
_RETRY_PAUSE = 0.25


def stream_name(prefix: str, group: str, name: str) -> str:
    """The JetStream stream of *group*'s copy of the events named *name*: readable,
    with a short hash of the exact name, so ``a.b_c`` and ``a_b.c`` differ."""
    digest = zlib.crc32(name.encode()) & 0xFFFF
    return f"{prefix}_{group}__{name.replace('.', '_')}_{digest:04x}"


def not_ready(exc: BaseException) -> bool:
    """Whether *exc* means JetStream cannot answer yet (no stream leader, restarting)."""
    if isinstance(exc, (nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        return True
    if isinstance(exc, asyncio.TimeoutError):
        return True
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return True
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code in _NOT_READY


async def patiently(call: Callable[[], Awaitable[T]], within: float) -> T:
    """*call*, retried while JetStream is not ready, for at most *within* seconds."""
    give_up = time.monotonic() + within
    while True:
        try:
            return await call()
        except Exception as exc:
            if not not_ready(exc) or time.monotonic() + _RETRY_PAUSE >= give_up:
                raise
        await asyncio.sleep(_RETRY_PAUSE)


class Route:
    """One routed type on this transport: its streams, subjects, consumers, figures."""

    def __init__(self, event_type: type, name: str, prefix: str, key: Any, partitions: int):
        self.event_type = event_type
        self.name = name
        self.prefix = prefix
        self.key = key
        self.partitions = partitions if key is not None else 1
        #: the streams of the groups fed by this process exist (and match)
        self.stream_ready = False
        #: until when (monotonic) this process's pull requests may still deliver
        self.requests_until = 0.0
        #: this group's consumers exist (and match)
        self.consumers_ready = False
        self.pending: int | None = None
        #: the last pending figure per partition subject, summed into ``pending``
        self.pending_of: dict[str, int] = {}
        self.redelivered = 0
        self.acked = 0
        self.nacked = 0
        self.terminated = 0
        self.dead_lettered = 0
        self.lock = asyncio.Lock()

    def stream(self, group: str) -> str:
        """The stream that holds *group*'s copy of this type's events."""
        return stream_name(self.prefix, group, self.name)

    def subject(self, group: str) -> str:
        """The subject prefix of *group*'s stream (a partition number follows)."""
        return f"{self.prefix}.{group}.{self.name}"

    def consumers(self, group: str) -> list[tuple[str, str]]:
        """The durable consumers of *group*, with their filter subjects."""
        subject = self.subject(group)
        if self.key is None:
            return [(group, f"{subject}.*")]
        return [(f"{group}-{p}", f"{subject}.{p}") for p in range(self.partitions)]

    def keep_figures(self, old: Route) -> None:
        """Carry *old*'s counters over (the route was rebuilt for a new layout)."""
        self.redelivered, self.acked, self.nacked = old.redelivered, old.acked, old.nacked
        self.terminated, self.dead_lettered = old.terminated, old.dead_lettered

    def stats(self) -> BrokerStats:
        return BrokerStats(
            pending=self.pending,
            redelivered=self.redelivered,
            acked=self.acked,
            nacked=self.nacked,
            terminated=self.terminated,
            dead_lettered=self.dead_lettered,
        )


class Layout:
    """The routes of one open transport: created on first use, set up on JetStream."""

    def __init__(self, settings: Settings, js: JetStreamContext, bus: Any) -> None:
        self.settings = settings
        self.js = js
        self.bus = bus
        self.routes: dict[type, Route] = {}
        self.dead_letters_ready = False

    def known(self, event_type: type) -> Route | None:
        """The route of *event_type* if it was used before."""
        return self.routes.get(event_type)

    def route_of(self, event_type: type) -> Route:
        """The route of *event_type* (made now, or rebuilt when its key changed)."""
        route = self.routes.get(event_type)
        key = self.bus.config(event_type).key
        if route is None or (route.key is None) != (key is None):
            name = self.bus.names.resolve(event_type).name
            fresh = Route(event_type, name, self.settings.prefix, key, self.settings.partitions)
            if route is not None:
                fresh.keep_figures(route)
            route = self.routes[event_type] = fresh
        route.key = key
        return route

    async def for_publish(self, event_type: type) -> Route:
        """The route, its streams for every fed group created or checked."""
        route = self.route_of(event_type)
        if not route.stream_ready:
            async with route.lock:
                if not route.stream_ready:
                    for group in self.settings.groups:
                        await self._ensure_stream(route, group)
                    route.stream_ready = True
        return route

    async def for_consume(self, event_type: type) -> Route:
        """The route, this group's stream and consumers created or checked."""
        route = self.route_of(event_type)
        if not route.consumers_ready:
            async with route.lock:
                if not route.consumers_ready:
                    group = self.settings.group
                    await self._ensure_stream(route, group)
                    for durable, subject in route.consumers(group):
                        await self._ensure_consumer(
                            route.stream(group), self._consumer(route, durable, subject)
                        )
                    route.consumers_ready = True
        return route

    def forget(self, route: Route) -> None:
        """Check the route's streams and consumers again before their next use."""
        route.stream_ready = route.consumers_ready = False

    def reset(self) -> None:
        """Every route is checked again in the next run (their figures stay)."""
        for route in self.routes.values():
            self.forget(route)
        self.dead_letters_ready = False

    async def ensure_dead_letters(self) -> str:
        """The dead-letter stream, created or checked once per run; its subject prefix."""
        prefix = self.settings.prefix
        if not self.dead_letters_ready:
            name = f"{prefix}_dead_letters"
            await self._ensure(self._stream(name, [f"{prefix}.dead.>"], dead_letters=True))
            self.dead_letters_ready = True
        return f"{prefix}.dead"

    async def _ensure_stream(self, route: Route, group: str) -> None:
        stream = route.stream(group)
        await self._ensure(self._stream(stream, [f"{route.subject(group)}.*"], dead_letters=False))
        layout = (
            f"key {'set' if route.key is not None else 'not set'}, partitions={route.partitions}"
        )
        expected = {durable for durable, _ in route.consumers(group)}
        await self._check_layout(stream, group, expected, layout)

    async def _ensure(self, wanted: StreamConfig) -> None:
        """Create the stream *wanted* describes, or check the one that exists."""
        name = wanted.name
        assert name is not None
        within = self.settings.connect_timeout
        try:
            info = await patiently(lambda: self.js.stream_info(name), within)
        except nats.js.errors.NotFoundError:
            try:
                await patiently(lambda: self.js.add_stream(wanted), within)
            except nats.js.errors.APIError as exc:
                if not_ready(exc):
                    raise
                raise TransportError(
                    f"cannot create the stream {name}: {exc.description}"
                ) from None
            return
        differences = _differences(info.config, wanted, STREAM_FIELDS)
        if differences:
            raise InvalidConfiguration(
                f"the existing NATS stream {name} does not match this transport "
                f"({differences}); eventcore never changes it: update or delete it, or change "
                "the transport's settings"
            )

    async def _ensure_consumer(self, stream: str, wanted: ConsumerConfig) -> None:
        """Create the durable consumer *wanted* describes on *stream*, or check it."""
        durable = wanted.durable_name
        assert durable is not None
        within = self.settings.connect_timeout
        try:
            info = await patiently(lambda: self.js.consumer_info(stream, durable), within)
        except nats.js.errors.NotFoundError:
            try:
                await patiently(lambda: self.js.add_consumer(stream, wanted), within)
            except nats.js.errors.APIError as exc:
                if not_ready(exc):
                    raise
                raise TransportError(
                    f"cannot create the consumer {durable} on {stream}: {exc.description}"
                ) from None
            return
        differences = _differences(info.config, wanted, CONSUMER_FIELDS)
        if differences:
            raise InvalidConfiguration(
                f"the existing NATS consumer {durable} on {stream} does not match this "
                f"transport ({differences}); eventcore never changes it: delete it (or use "
                "another group), or change the settings"
            )

    async def _check_layout(
        self, stream: str, group: str, expected: set[str], layout: str
    ) -> None:
        """Refuse a stream whose consumers of *group* are not the *expected* ones
        (another process of the group runs with another key or number of partitions)."""
        infos = await patiently(
            lambda: self.js.consumers_info(stream), self.settings.connect_timeout
        )
        present = {i.name for i in infos if i.name == group or i.name.startswith(f"{group}-")}
        if present - expected:
            raise InvalidConfiguration(
                f"the NATS stream {stream} has the consumers {sorted(present)} for group "
                f"{group!r}, but this process expects {sorted(expected)} ({layout}): every "
                "process of a group must use the same key and partitions; to change them, "
                "delete the group's consumers when no process runs"
            )

    def _stream(self, name: str, subjects: list[str], dead_letters: bool) -> StreamConfig:
        """What a stream of this transport looks like (the dead letters: no limits,
        kept until deleted; the types': work queues within ``max_msgs`` / ``max_bytes``)."""
        s = self.settings
        limited = not dead_letters
        return StreamConfig(
            name=name,
            subjects=subjects,
            retention=RetentionPolicy.LIMITS if dead_letters else RetentionPolicy.WORK_QUEUE,
            max_msgs=s.max_msgs if limited and s.max_msgs is not None else -1,
            max_bytes=s.max_bytes if limited and s.max_bytes is not None else -1,
            discard=DiscardPolicy.NEW,
            duplicate_window=s.duplicate_window,
            storage=StorageType.FILE if s.storage == "file" else StorageType.MEMORY,
            num_replicas=s.replicas,
        )

    def _consumer(self, route: Route, durable: str, subject: str) -> ConsumerConfig:
        """A durable consumer of this transport on *route*, filtered on *subject*."""
        s = self.settings
        return ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait,
            # one more delivery than allowed: the last one only dead-letters
            max_deliver=s.max_deliver + 1,
            # a keyed partition: one message in flight across the service keeps the order
            max_ack_pending=1 if route.key is not None else s.max_ack_pending,
            filter_subject=subject,
            num_replicas=s.replicas,
        )


def _differences(have: Any, wanted: Any, fields: tuple[str, ...]) -> str:
    """The settings in which *have* (on the server) and *wanted* differ, in words."""
    return "; ".join(
        f"{field}: {getattr(have, field)!r} on the server, {getattr(wanted, field)!r} here"
        for field in fields
        if _normal(getattr(have, field)) != _normal(getattr(wanted, field))
    )


def _normal(value: Any) -> Any:
    """A config value compared by meaning (enums by value, lists as tuples)."""
    if isinstance(value, list):
        return tuple(value)
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
