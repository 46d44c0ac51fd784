"""The Redis transport's settings, checked once, and what one open run holds
(the client, the scripts, the ledger, the figures), shared by the package's
modules."""

from __future__ import annotations

import os
import secrets
import socket
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..._wire.codec import Codec
from .._kit import Ledger, validate, wire_name
from . import scripts
from .client import NoScriptError


@dataclass(frozen=True)
class Settings:
    """What a :class:`~eventcore.transports.redis.RedisTransport` was made with."""

    url: str
    group: str
    prefix: str
    partitions: int
    max_deliver: int
    claim_idle: float
    max_len: int | None
    dedup: float | None
    format: str
    max_size: int
    recreate_group: bool
    groups: tuple[str, ...]


def settings(
    url: object,
    *,
    group: object,
    prefix: object,
    partitions: object,
    max_deliver: object,
    claim_idle: object,
    max_len: object,
    dedup: object,
    format: object,
    max_size: object,
    recreate_group: bool,
    groups: Sequence[str] | None,
) -> Settings:
    """Check the constructor's arguments; raise InvalidConfiguration for a bad one."""
    own = validate.word("group", group)
    return Settings(
        url=validate.url("url", url, ("redis", "rediss", "unix")),
        group=own,
        prefix=validate.word("prefix", prefix),
        partitions=validate.count("partitions", partitions),
        max_deliver=validate.count("max_deliver", max_deliver),
        claim_idle=validate.seconds("claim_idle", claim_idle),
        max_len=validate.count("max_len", max_len, optional=True),
        dedup=validate.seconds("dedup", dedup, optional=True),
        format=validate.choice("format", format, ("json", "msgpack")),
        max_size=validate.count("max_size", max_size),
        recreate_group=bool(recreate_group),
        groups=() if groups is None else validate.groups(groups, own, check=validate.word),
    )


@dataclass
class Counters:
    """One routed type's figures in this process."""

    redelivered: int = 0
    acked: int = 0
    nacked: int = 0
    terminated: int = 0
    dead_lettered: int = 0
    pending: int | None = None


class Session:
    """One open run of the transport: the client, its scripts, the names of streams,
    the ledger of fetched entries and the figures."""

    def __init__(self, settings: Settings, redis: Any, bus: Any, consumer: str) -> None:
        self.settings = settings
        self.redis = redis
        self.bus = bus
        self.consumer = consumer
        self.codec = Codec.for_dispatcher(bus, format=settings.format, max_size=settings.max_size)  # type: ignore[arg-type]
        self.shas: dict[str, str] = {}
        #: (stream, entry id) fetched and not yet acknowledged on Redis
        self.ledger: Ledger[Any] = Ledger()
        self.counters: dict[type, Counters] = defaultdict(Counters)
        self._bases: dict[type, tuple[int, str]] = {}

    async def load_scripts(self) -> None:
        """Load (again, after Redis restarted) the Lua scripts."""
        for name, lua in scripts.ALL.items():
            self.shas[name] = await self.redis.script_load(lua)

    async def evalsha(self, name: str, keys: Sequence[Any], *args: Any) -> Any:
        """Run the script *name*, loading the scripts again if Redis lost them."""
        try:
            return await self.redis.evalsha(self.shas[name], len(keys), *keys, *args)
        except NoScriptError:
            await self.load_scripts()
            return await self.redis.evalsha(self.shas[name], len(keys), *keys, *args)

    def stream(self, event_type: type, partition: int = 0) -> str:
        """The stream of *event_type*'s partition *partition* (cached per names revision)."""
        names = self.bus.names
        known = self._bases.get(event_type)
        if known is None or known[0] != names.revision:
            base = stream_name(self.settings.prefix, wire_name(event_type, names))
            known = self._bases[event_type] = (names.revision, base)
        return known[1] if partition == 0 else f"{known[1]}:{partition}"

    def streams(self, event_type: type) -> list[str]:
        """Every stream *event_type*'s events may be on (all its partitions)."""
        return [self.stream(event_type, p) for p in range(self.settings.partitions)]

    def dead_stream(self, event_type: type) -> str:
        """The dead-letter stream of *event_type*."""
        return f"{self.settings.prefix}:dead:{wire_name(event_type, self.bus.names)}"


def stream_name(prefix: str, name: str, partition: int = 0) -> str:
    """The stream of the events named *name*, partition *partition*."""
    base = f"{prefix}:{name}"
    return base if partition == 0 else f"{base}:{partition}"


def consumer_name() -> str:
    """This process's consumer name: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
