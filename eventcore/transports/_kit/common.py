"""What the broker transports share: key partitions, the asyncio check, redaction."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import msgspec

from ..._errors import InvalidConfiguration

_encode = msgspec.json.Encoder().encode


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


def redact(text: str) -> str:
    """*text* (a URL, or a message that may quote URLs) without user names,
    passwords or tokens: everything before the last ``@`` of a word becomes ``***``
    (``nats://***@host:4222``), with or without a scheme."""
    return " ".join(_redact_word(word) for word in text.split(" "))


def _redact_word(word: str) -> str:
    if "@" not in word:
        return word
    scheme, separator, rest = word.partition("://")
    if not separator:
        scheme, rest = "", word
    host = rest.rpartition("@")[2]
    return f"{scheme}{separator}***@{host}"


def wire_name(event_type: type | str, names: Any = None) -> str:
    """The name *event_type* travels under: a string as it is; a class by its
    registration in *names* (a dispatcher's ``names``, when one is open), else by
    its ``@event`` name, else ``module.QualName``."""
    if isinstance(event_type, str):
        return event_type
    if names is not None:
        return str(names.resolve(event_type).name)
    from ..._wire.names import declared_name, default_name

    declared = declared_name(event_type)
    return declared[0] if declared is not None else default_name(event_type)
