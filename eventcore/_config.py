"""Per-type settings (``Dispatcher.configure``) and their validation."""

from __future__ import annotations

from dataclasses import dataclass

from ._channel import Overflow
from ._errors import InvalidConfiguration


@dataclass(frozen=True)
class TypeConfig:
    """The settings of one event type (and of its subclasses that have none of their own).

    :param queue_size: how many accepted events may wait in the queue; the bound
        that makes a slow handler push back on its publishers
    :param concurrency: how many handler invocations of this type may run at once
    :param overflow: what happens to a publish when the queue is full
    """

    queue_size: int = 1024
    concurrency: int = 1
    overflow: Overflow = Overflow.BLOCK

    def __post_init__(self) -> None:
        _positive_int("queue_size", self.queue_size)
        _positive_int("concurrency", self.concurrency)
        if not isinstance(self.overflow, Overflow):
            raise InvalidConfiguration(
                f"overflow must be an eventcore.Overflow member, got {self.overflow!r}"
            )


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidConfiguration(f"{name} must be an int >= 1, got {value!r}")


def check_timeout(name: str, value: float | None) -> None:
    """Raise :class:`InvalidConfiguration` unless *value* is None or a finite number >= 0."""
    if value is None:
        return
    if (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0
    ):  # NaN fails too
        raise InvalidConfiguration(f"{name} must be a number >= 0 or None, got {value!r}")
