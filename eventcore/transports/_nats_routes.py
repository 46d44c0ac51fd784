"""A routed type on JetStream: its streams, subjects and durable consumers, how they
are named, and creating or checking them on the server (an existing stream or
consumer that differs is reported, never changed)."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import nats.js.errors
from nats.js.api import ConsumerConfig, StreamConfig
from nats.js.client import JetStreamContext

from .._errors import InvalidConfiguration, TransportError
from .._transport import BrokerStats

#: the stream settings compared with an existing stream's
STREAM_FIELDS = ("subjects", "retention", "max_msgs", "max_bytes", "discard")
#: the consumer settings compared with an existing consumer's
CONSUMER_FIELDS = ("ack_policy", "ack_wait", "max_deliver", "max_ack_pending", "filter_subject")


def stream_name(prefix: str, group: str, name: str) -> str:
    """The JetStream stream of *group*'s copy of the events named *name*: readable,
    with a short hash of the exact name, so ``a.b_c`` and ``a_b.c`` differ."""
    digest = zlib.crc32(name.encode()) & 0xFFFF
    return f"{prefix}_{group}__{name.replace('.', '_')}_{digest:04x}"


class Route:
    """One routed type on this transport: its stream, subjects, consumers, figures."""

    def __init__(self, event_type: type, name: str, prefix: str, key: Any, partitions: int):
        self.event_type = event_type
        self.name = name
        self.prefix = prefix
        self.key = key
        self.partitions = partitions if key is not None else 1
        self.stream_ready = False
        self.subscriptions: list[Any] = []
        self.next_partition = 0
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


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    """Create the stream *wanted* describes, or check the one that exists."""
    name = wanted.name
    assert name is not None
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(wanted)
        except nats.js.errors.APIError as exc:
            raise TransportError(f"cannot create the stream {name}: {exc.description}") from None
        return
    differences = _differences(info.config, wanted, STREAM_FIELDS)
    if differences:
        raise InvalidConfiguration(
            f"the existing NATS stream {name} does not match this transport "
            f"({differences}); eventcore never changes it: update or delete it, or change "
            "the transport's settings"
        )


async def ensure_consumer(js: JetStreamContext, stream: str, wanted: ConsumerConfig) -> None:
    """Create the durable consumer *wanted* describes on *stream*, or check it."""
    durable = wanted.durable_name
    assert durable is not None
    try:
        info = await js.consumer_info(stream, durable)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_consumer(stream, wanted)
        except nats.js.errors.APIError as exc:
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


async def check_layout(
    js: JetStreamContext, stream: str, group: str, expected: set[str], layout: str
) -> None:
    """Refuse a stream whose consumers of *group* are not the *expected* ones (another
    process of the group runs with another key or number of partitions)."""
    present = {
        info.name
        for info in await js.consumers_info(stream)
        if info.name == group or info.name.startswith(f"{group}-")
    }
    if present - expected:
        raise InvalidConfiguration(
            f"the NATS stream {stream} has the consumers {sorted(present)} for group "
            f"{group!r}, but this process expects {sorted(expected)} ({layout}): every "
            "process of a group must use the same key and partitions; to change them, "
            "delete the group's consumers when no process runs"
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
