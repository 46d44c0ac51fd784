"""The NATS transport's settings, checked once (every module of the package reads
them from here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..._wire.codec import DEFAULT_MAX_SIZE
from .._kit import validate

_NAMES = "NATS streams and consumers"


@dataclass(frozen=True)
class Settings:
    """What a :class:`~eventcore.transports.nats.NatsTransport` was made with (see
    its doc for each field)."""

    servers: tuple[str, ...]
    group: str
    prefix: str = "eventcore"
    partitions: int = 1
    max_deliver: int = 5
    ack_wait: float = 30.0
    max_msgs: int | None = None
    max_bytes: int | None = None
    max_ack_pending: int = 1024
    groups: tuple[str, ...] = ()
    duplicate_window: float = 120.0
    publish_timeout: float = 5.0
    connect_timeout: float = 5.0
    fetch_wait: float = 1.0
    storage: str = "file"
    replicas: int = 1
    format: str = "json"
    max_size: int = DEFAULT_MAX_SIZE
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def setup_timeout(self) -> float:
        """The timeout of one set-up call (stream and consumer info, creation): a
        few seconds, retried up to ``connect_timeout`` while JetStream elects a
        leader (never ``publish_timeout``)."""
        return min(2.0, self.connect_timeout)


def settings(
    url: object,
    *,
    group: object,
    prefix: object,
    partitions: object,
    max_deliver: object,
    ack_wait: object,
    max_msgs: object,
    max_bytes: object,
    max_ack_pending: object,
    groups: Sequence[str] | None,
    duplicate_window: object,
    publish_timeout: object,
    connect_timeout: object,
    fetch_wait: object,
    storage: object,
    replicas: object,
    format: object,
    max_size: int,
    options: Mapping[str, Any] | None,
) -> Settings:
    """Check the constructor's arguments; raise InvalidConfiguration for a bad one."""
    checked_url = validate.url("url", url, ("nats", "tls", "ws", "wss"))
    own = validate.token("group", group, names=_NAMES)
    return Settings(
        servers=tuple(part.strip() for part in checked_url.split(",")),
        group=own,
        prefix=validate.token("prefix", prefix, names=_NAMES),
        partitions=validate.count("partitions", partitions),
        max_deliver=validate.count("max_deliver", max_deliver),
        ack_wait=validate.seconds("ack_wait", ack_wait),
        max_msgs=validate.count("max_msgs", max_msgs, optional=True),
        max_bytes=validate.count("max_bytes", max_bytes, optional=True),
        max_ack_pending=validate.count("max_ack_pending", max_ack_pending),
        groups=validate.groups(
            groups, own, check=lambda what, g: validate.token(what, g, names=_NAMES)
        ),
        duplicate_window=validate.seconds("duplicate_window", duplicate_window),
        publish_timeout=validate.seconds("publish_timeout", publish_timeout),
        connect_timeout=validate.seconds("connect_timeout", connect_timeout),
        fetch_wait=validate.seconds("fetch_wait", fetch_wait),
        storage=validate.choice("storage", storage, ("file", "memory")),
        replicas=validate.count("replicas", replicas),
        format=validate.choice("format", format, ("json", "msgpack")),
        max_size=validate.count("max_size", max_size),
        options=dict(options or {}),
    )
