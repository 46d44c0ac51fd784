"""Argument validation shared by the transports' constructors: each check raises
:class:`~eventcore.InvalidConfiguration` naming the argument, what it must be and
what it got, and returns the value (normalised) so a constructor reads
``self.ack_wait = seconds("ack_wait", ack_wait)``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..._errors import InvalidConfiguration

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def token(what: str, value: object, *, names: str = "broker names") -> str:
    """*value* if it is letters, digits, ``_`` or ``-`` (it becomes part of *names*)."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise InvalidConfiguration(
            f"{what} must be letters, digits, '_' or '-' (it names {names}), got {value!r}"
        )
    return value


def word(what: str, value: object) -> str:
    """*value* if it is a non-empty string without white space."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise InvalidConfiguration(f"{what} must be a non-empty word, got {value!r}")
    return value


def count(what: str, value: object, *, optional: bool = False) -> Any:
    """*value* if it is an int >= 1 (or None when *optional*)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " or None" if optional else ""
        raise InvalidConfiguration(f"{what} must be an int >= 1{extra}, got {value!r}")
    return value


def seconds(what: str, value: object, *, optional: bool = False) -> Any:
    """*value* as a float if it is a number of seconds > 0 (or None when *optional*)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        extra = " or None" if optional else ""
        raise InvalidConfiguration(f"{what} must be a number of seconds > 0{extra}, got {value!r}")
    return float(value)


def choice(what: str, value: object, allowed: Sequence[str]) -> str:
    """*value* if it is one of *allowed*."""
    if value not in allowed:
        options = " or ".join(repr(a) for a in allowed)
        raise InvalidConfiguration(f"{what} must be {options}, got {value!r}")
    assert isinstance(value, str)
    return value


def groups(value: object, default: str, *, check: Any = token) -> tuple[str, ...]:
    """The consumer groups a publisher feeds: *value* (a list of names, checked with
    *check*) without repeats, or ``(default,)`` when None or empty."""
    if isinstance(value, str):
        raise InvalidConfiguration("groups must be a list of group names, not one string")
    if value is None:
        return (default,)
    if not isinstance(value, Sequence):
        raise InvalidConfiguration(f"groups must be a list of group names, got {value!r}")
    return tuple(dict.fromkeys(check("group", g) for g in value)) or (default,)


def url(what: str, value: object, schemes: Sequence[str]) -> str:
    """*value* if it is a URL (or comma-separated URLs) with one of *schemes*."""
    if not isinstance(value, str) or not value:
        raise InvalidConfiguration(f"{what} must be a URL, got {type(value).__name__}")
    for part in value.split(","):
        scheme = part.strip().partition("://")[0] if "://" in part else ""
        if scheme and scheme not in schemes:
            allowed = ", ".join(f"{s}://" for s in schemes)
            raise InvalidConfiguration(f"{what} must start with {allowed}, got a {scheme}:// URL")
    return value
