"""What the Redis tests share: the shared server's address, unique key prefixes
that are deleted afterwards, and waiting for a condition without sleeps in asserts."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio

from eventcore.transports.redis import RedisTransport

from ._servers import REDIS_URL, require

#: every wait in these tests gives up (fails) after this many seconds
LIMIT = 20.0


def shared_redis() -> str:
    """The machine's Redis URL, after skipping (or failing under CI) if none answers."""
    parts = urlsplit(REDIS_URL)
    require("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    return REDIS_URL


def raw_client(url: str) -> Any:
    """A plain redis-py asyncio client, to look at and tamper with the streams."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url)


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under *prefix* (the test's own)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextmanager
def unique_prefix(url: str) -> Iterator[str]:
    """A key prefix of the test's own, its keys deleted afterwards."""
    name = f"ectest-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        delete_prefix(url, name)


async def until(condition: Callable[[], bool], limit: float = LIMIT) -> None:
    """Wait until *condition()* holds (polling); fail after *limit* seconds."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 - the state is on Redis and in other tasks
            await anyio.sleep(0.01)


class RedisKit:
    """Fresh Redis transports under a prefix of their own."""

    def __init__(self, url: str) -> None:
        self.url = url

    def transport(self, namespace: str, group: str, *, capacity: int | None = None) -> Any:
        # a short claim_idle: a consumer that left entries pending at shutdown is
        # followed at once by another (a new process would be, after claim_idle)
        return RedisTransport(
            self.url, group=group, prefix=namespace, max_len=capacity, claim_idle=0.2
        )

    async def write_raw(self, namespace: str, name: str, data: bytes) -> None:
        client = raw_client(self.url)
        try:
            await client.xadd(f"{namespace}:{name}", {b"m": data})
        finally:
            await client.aclose()

    def cleanup(self, namespace: str) -> None:
        delete_prefix(self.url, namespace)
