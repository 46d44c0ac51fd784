"""NATS fixtures' helpers: transports with unique prefixes, removed afterwards."""

from __future__ import annotations

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
