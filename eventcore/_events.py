"""What is an event class: anything but the standard library's classes (a leaf module)."""

from __future__ import annotations

import sys
import types

from ._errors import InvalidEvent

_STDLIB = frozenset(sys.stdlib_module_names) | {"builtins"}


def is_library_class(cls: type) -> bool:
    """Whether *cls* comes from the standard library (its instances are never events).

    Classes made at run time by ``dataclasses.make_dataclass`` or ``types.new_class``
    say ``__module__ == "types"`` on some Pythons: they are the user's, unless the
    ``types`` module itself names them.
    """
    module = cls.__module__
    if module == "types":
        return getattr(types, cls.__qualname__, None) is cls
    return module.partition(".")[0] in _STDLIB


def check_event_class(cls: object, what: str) -> None:
    """Refuse anything but an event class (or ``object``, which subscribes to all)."""
    if not isinstance(cls, type) or (cls is not object and is_library_class(cls)):
        raise InvalidEvent(
            f"{what}() takes an event class: a class you define (a dataclass, attrs class, "
            f"pydantic model, ...), got {cls!r}; instances of standard-library types "
            "(int, dict, datetime, ...) are never events"
        )


def refuse_event(event: object) -> InvalidEvent:
    """The error for publishing what is not an event."""
    return InvalidEvent(
        f"publish() takes an event: an instance of a class you define (a dataclass, "
        f"attrs class, pydantic model, ...), got {event!r} of type "
        f"{event.__class__.__qualname__}; instances of standard-library types (int, dict, "
        "datetime, ...) are never events"
    )
