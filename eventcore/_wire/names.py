"""Stable event names: the ``@event`` decorator, validation, and the per-dispatcher registry.

A name is what a broker sees: NATS subjects and Redis Streams keys are built
from it, so it must stay the same when a class is renamed or moved. Give it
explicitly (``@event("orders.placed")`` or ``bus.register(OrderPlaced,
name="orders.placed")``); without one, the default ``module.QualName`` is used
with an :class:`EventNameWarning`. Needs nothing but the standard library.
"""

from __future__ import annotations

import re
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .errors import DuplicateEventName, InvalidEventName

T = TypeVar("T", bound=type)

MAX_NAME_LENGTH = 200
"""The longest event name: room for a transport's prefix within subject and key limits."""

#: dot-separated tokens of letters, digits, ``_`` and ``-``: valid in a NATS subject
#: (no wildcard ``*`` / ``>``, no whitespace, no empty token, no ``$`` system prefix)
#: and in a Redis key
_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


class EventNameWarning(UserWarning):
    """An event type got the default name ``module.QualName``: renaming or moving the
    class would change its name and break consumers. Give it an explicit name."""


@dataclass(frozen=True)
class EventName:
    """The registered identity of an event type on the wire.

    :ivar name: the stable name (``orders.placed``)
    :ivar version: the version this process writes
    :ivar min_version: the oldest version this process still reads
    :ivar event_type: the class
    :ivar defaulted: True when the name is the default ``module.QualName``
    """

    name: str
    version: int
    event_type: type
    min_version: int = 1
    defaulted: bool = False

    def accepts(self, version: int) -> bool:
        """Whether a message of *version* can be read as this type."""
        return self.min_version <= version <= self.version


def check_name(name: object) -> str:
    """Return *name* if it is a valid event name.

    :raises InvalidEventName: it is not a string of dot-separated tokens of
        ``[A-Za-z0-9_-]`` of at most :data:`MAX_NAME_LENGTH` characters
    """
    if not isinstance(name, str):
        raise InvalidEventName(f"an event name must be a str, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidEventName(
            f"event name {name[:40]!r}... is {len(name)} characters long; "
            f"the limit is {MAX_NAME_LENGTH}",
            name=name,
        )
    if _NAME.fullmatch(name) is None:
        raise InvalidEventName(
            f"invalid event name {name!r}: use dot-separated tokens of letters, digits, "
            "'_' and '-' (no spaces, no '*' or '>' wildcards, no empty token), "
            "e.g. 'orders.placed'",
            name=name,
        )
    return name


def _check_versions(version: int, min_version: int) -> None:
    for label, value in (("version", version), ("min_version", min_version)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidEventName(f"{label} must be an int >= 1, got {value!r}")
    if min_version > version:
        raise InvalidEventName(f"min_version {min_version} is above version {version}")


#: names given by @event, per class (not inherited by subclasses)
_declared: weakref.WeakKeyDictionary[type, tuple[str, int]] = weakref.WeakKeyDictionary()


def event(name: str, *, version: int = 1) -> Callable[[T], T]:
    """Class decorator: give an event type its stable wire name and version.

    Subclasses do not inherit it: every type on the wire has its own name.

    :raises InvalidEventName: the name or version is not valid
    """
    check_name(name)
    _check_versions(version, 1)

    def decorate(cls: T) -> T:
        if not isinstance(cls, type):
            raise TypeError(f"@event decorates a class, got {cls!r}")
        _declared[cls] = (name, version)
        return cls

    return decorate


def declared_name(event_type: type) -> tuple[str, int] | None:
    """The name and version given by ``@event`` to exactly *event_type*, if any."""
    return _declared.get(event_type)


def default_name(event_type: type) -> str:
    """``module.QualName`` of *event_type*."""
    return f"{event_type.__module__}.{event_type.__qualname__}"


class EventNames:
    """A registry of event names: type <-> name, one each way.

    A dispatcher owns one (``bus.names``); ``bus.register`` adds to it. Registered
    types are kept alive by the registry, like configured ones.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, EventName] = {}
        self._by_name: dict[str, EventName] = {}
        #: bumped on every change, so that codecs know when to rebuild their decoders
        self.revision = 0

    def register(
        self,
        event_type: type,
        *,
        name: str | None = None,
        version: int | None = None,
        min_version: int = 1,
    ) -> EventName:
        """Give *event_type* its wire name; idempotent for the same name and version.

        :param name: the stable name; default: the ``@event`` name, else
            ``module.QualName`` (with an :class:`EventNameWarning`)
        :param version: the version written; default: the ``@event`` version, else 1
        :param min_version: the oldest version still read (messages of older ones
            raise :class:`UnsupportedVersion`)
        :raises InvalidEventName: the name or a version is not valid
        :raises DuplicateEventName: the name belongs to another type, or the type
            already has another name
        :return: the registration
        """
        entry = self.describe(event_type, name=name, version=version, min_version=min_version)
        current = self._by_type.get(event_type)
        if current is not None:
            if current == entry:
                return current
            raise DuplicateEventName(
                f"{event_type.__qualname__} is already registered as {current.name!r} "
                f"version {current.version}; a type has one name",
                name=entry.name,
            )
        taken = self._by_name.get(entry.name)
        if taken is not None:
            raise DuplicateEventName(
                f"event name {entry.name!r} is already taken by "
                f"{default_name(taken.event_type)}; give {default_name(event_type)} "
                "another name",
                name=entry.name,
            )
        if entry.defaulted:
            warnings.warn(
                f"{entry.name} has no explicit event name, so its wire name is its module "
                "path: renaming or moving the class will break consumers. Give it one with "
                f'@event("...") or register({event_type.__qualname__}, name="...")',
                EventNameWarning,
                stacklevel=3,
            )
        self._by_type[event_type] = entry
        self._by_name[entry.name] = entry
        self.revision += 1
        return entry

    def describe(
        self,
        event_type: type,
        *,
        name: str | None = None,
        version: int | None = None,
        min_version: int = 1,
    ) -> EventName:
        """The registration *event_type* has, or would get, without registering it."""
        if not isinstance(event_type, type):
            raise TypeError(f"an event type must be a class, got {event_type!r}")
        if name is None and version is None and min_version == 1:
            current = self._by_type.get(event_type)
            if current is not None:
                return current
        declared = declared_name(event_type)
        defaulted = name is None and declared is None
        if name is None:
            name = declared[0] if declared is not None else default_name(event_type)
        if version is None:
            version = declared[1] if declared is not None else 1
        check_name(name)
        _check_versions(version, min_version)
        return EventName(name, version, event_type, min_version, defaulted)

    def resolve(self, event_type: type) -> EventName:
        """The registration of *event_type*, registering it by default if it has none."""
        found = self._by_type.get(event_type)
        return found if found is not None else self.register(event_type)

    def get(self, event_type: type) -> EventName | None:
        """The registration of *event_type*, or None."""
        return self._by_type.get(event_type)

    def lookup(self, name: str) -> EventName | None:
        """The registration under *name*, or None."""
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[EventName]:
        """The registrations, sorted by name."""
        return iter(sorted(self._by_name.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_type
