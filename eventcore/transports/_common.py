"""What the broker transports share: key partitions, the asyncio check, redaction."""

from __future__ import annotations

import asyncio
import re
import zlib
from typing import Any

import msgspec

from .._errors import InvalidConfiguration

_encode = msgspec.json.Encoder().encode
_CREDENTIALS = re.compile(r"(?<=://)[^@/]*@")


def partition_of(key: Any, partitions: int) -> int:
    """The partition of *key* among *partitions*: the same in every process and on
    every Python (CRC-32 of the key's JSON, not ``hash()``, which is salted)."""
    if partitions == 1:
        return 0
    return zlib.crc32(_encode(key)) % partitions


def require_asyncio(transport: str) -> None:
    """Refuse to run a transport whose client needs asyncio on another event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise InvalidConfiguration(
            f"the {transport} transport runs on asyncio (and uvloop) only: its client "
            "library needs asyncio, and this dispatcher runs on another event loop "
            "(trio). Keep the types in memory on trio, or run the service on asyncio"
        ) from None


def redact(url: str) -> str:
    """*url* without its user and password (``nats://***@host:4222``)."""
    return _CREDENTIALS.sub("***@", url)
