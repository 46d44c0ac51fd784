"""What the Redis transport's modules share: redis-py (imported with a clear error
when missing), the errors that mean a lost connection, and reading replies."""

from __future__ import annotations

from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ImportError(
        'the Redis transport needs redis-py (redis >= 5): pip install "eventcore-py[redis]"',
        name="redis",
    ) from exc

__all__ = [
    "CONNECTION_ERRORS",
    "FIELD",
    "NoScriptError",
    "ResponseError",
    "aioredis",
    "id_order",
    "message",
    "replies",
    "text",
]

#: the stream field that carries the encoded envelope
FIELD = b"m"
#: what a lost or refused connection raises
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def replies(reply: Any) -> list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREADGROUP's reply (RESP2 list or RESP3 dict) as (stream, entries) pairs."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    out = []
    for stream, entries in pairs:
        if isinstance(entries, list) and entries and isinstance(entries[0], list):
            entries = entries[0]  # RESP3 wraps the entries once more
        out.append((text(stream), [(e, f or {}) for e, f in entries]))
    return out


def message(fields: dict[bytes, bytes] | None) -> bytes | None:
    """An entry's message; None for an entry deleted while pending (no fields)."""
    if not fields:
        return None
    return fields.get(FIELD, b"")


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def id_order(entry: bytes) -> tuple[int, int]:
    ms, _, seq = entry.partition(b"-")
    return int(ms), int(seq or 0)
