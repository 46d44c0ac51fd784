"""NATS fixtures' helpers: transports with unique prefixes, removed afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
import nats.js.errors

from eventcore.transports.nats import NatsTransport

from ._servers import NATS_URL


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@asynccontextmanager
async def nats_transports(url: str = NATS_URL) -> AsyncIterator[Callable[..., NatsTransport]]:
    """A factory of transports on one unique prefix; its streams are deleted at the end."""
    prefix = unique_prefix()

    def make(group: str = "service", **options: Any) -> NatsTransport:
        options.setdefault("fetch_wait", 0.1)
        options.setdefault("prefix", prefix)
        return NatsTransport(url, group=group, **options)

    try:
        yield make
    finally:
        await delete_streams(url, prefix)


async def delete_streams(url: str, prefix: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix + "_"):
                try:
                    await js.delete_stream(info.config.name)
                except nats.js.errors.NotFoundError:
                    pass
    finally:
        await nc.close()


PUBLISHER = "publisher"


class NatsKit:
    """Fresh NATS transports under a prefix of their own.

    A JetStream publisher names the groups it writes for (``groups=``): here the
    suite's publisher writes for every consumer group made in its namespace, as a
    real service would list the services that consume its events.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.groups: dict[str, list[str]] = {}
        self.publishers: dict[str, list[NatsTransport]] = {}

    def transport(self, namespace: str, group: str, *, capacity: int | None = None) -> Any:
        groups = self.groups.setdefault(namespace, [])
        publishers = self.publishers.setdefault(namespace, [])
        transport = NatsTransport(
            self.url,
            group=group,
            prefix=namespace,
            max_msgs=capacity,
            fetch_wait=0.1,
            ack_wait=5.0,
        )
        if group == PUBLISHER:
            publishers.append(transport)
        elif group not in groups:
            groups.append(group)
        for publisher in publishers:  # made before any of them starts
            publisher.groups = tuple(groups) or (PUBLISHER,)
        return transport

    async def write_raw(self, namespace: str, name: str, data: bytes) -> None:
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            for group in self.groups.get(namespace, []):
                await js.publish(f"{namespace}.{group}.{name}.0", data)
        finally:
            await nc.close()

    def cleanup(self, namespace: str) -> None:
        asyncio.run(delete_streams(self.url, namespace))
        self.groups.pop(namespace, None)
        self.publishers.pop(namespace, None)
