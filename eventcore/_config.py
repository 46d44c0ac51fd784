"""Per-type settings (``Dispatcher.configure``), overflow and retry policies, and their
validation."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ._errors import InvalidConfiguration


class Overflow(enum.Enum):
    """What ``publish`` does when the event type's queue is full.

    The queue size is the backpressure knob: a full queue is the signal that
    handlers cannot keep up, and the policy says who pays for it.
    """

    #: The publisher waits for room (``timeout=`` bounds the wait: ``PublishTimeout``).
    BLOCK = "block"
    #: The new event is refused: ``publish`` returns ``False`` and ``on_drop`` is told.
    DROP_NEWEST = "drop_newest"
    #: The oldest queued event is evicted to ``on_drop``; the new one is accepted.
    DROP_OLDEST = "drop_oldest"
    #: ``publish`` raises :class:`~eventcore.QueueFull`.
    RAISE = "raise"


@dataclass(frozen=True)
class Retry:
    """How often and how patiently to retry a failing handler.

    The n-th retry waits ``min(max_backoff, backoff * multiplier ** (n - 1))``
    seconds, spread by ``±jitter`` (a fraction) so that many failing handlers do
    not retry in lock-step.

    :param attempts: total calls, the first one included (``attempts=1``: no retry)
    :param backoff: the wait before the first retry, in seconds
    :param multiplier: how much longer each following wait is
    :param max_backoff: the longest wait
    :param jitter: the random spread of each wait, as a fraction of it (0 to 1)
    :param on: the exception types worth retrying; others fail at once
    """

    attempts: int = 3
    backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 10.0
    jitter: float = 0.1
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        _positive_int("attempts", self.attempts)
        check_timeout("backoff", self.backoff)
        check_timeout("max_backoff", self.max_backoff)
        if not (isinstance(self.multiplier, (int, float)) and self.multiplier >= 1):
            raise InvalidConfiguration(
                f"multiplier must be a number >= 1, got {self.multiplier!r}"
            )
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter <= 1):
            raise InvalidConfiguration(f"jitter must be a number in [0, 1], got {self.jitter!r}")
        if not self.on or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.on
        ):
            raise InvalidConfiguration(f"on must be a tuple of exception types, got {self.on!r}")

    def delay(self, retry: int) -> float:
        """The wait before retry number *retry* (1 for the first retry)."""
        base = min(self.max_backoff, self.backoff * self.multiplier ** (retry - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))

    def wants(self, exc: BaseException, attempt: int) -> bool:
        """Whether a call that raised *exc* on attempt number *attempt* is tried again."""
        return attempt < self.attempts and isinstance(exc, self.on)


@dataclass(frozen=True)
class TypeConfig:
    """The settings of one event type (and of its subclasses that have none of their own).

    :param queue_size: how many accepted events may wait; the bound that makes a
        slow handler push back on its publishers
    :param concurrency: how many handler invocations of this type may run at once
    :param overflow: what happens to a publish when the queue is full
    :param key: ``key(event)`` -> a hashable; events with equal keys are handled
        one at a time in accepted order, different keys concurrently
    :param handler_timeout: default for subscriptions without their own ``timeout=``
    :param retry: default for subscriptions without their own ``retry=``
    :param transport: the broker transport the type is routed through (None: the
        dispatcher's, else in memory); see ``eventcore._transport``
    """

    queue_size: int = 1024
    concurrency: int = 1
    overflow: Overflow = Overflow.BLOCK
    key: Callable[[Any], Hashable] | None = field(default=None, compare=False)
    handler_timeout: float | None = None
    retry: Retry | None = None
    transport: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _positive_int("queue_size", self.queue_size)
        _positive_int("concurrency", self.concurrency)
        if not isinstance(self.overflow, Overflow):
            raise InvalidConfiguration(
                f"overflow must be an eventcore.Overflow member, got {self.overflow!r}"
            )
        if self.key is not None and not callable(self.key):
            raise InvalidConfiguration(f"key must be a callable, got {self.key!r}")
        check_timeout("handler_timeout", self.handler_timeout)
        check_retry(self.retry)
        check_transport(self.transport)

    def changed(
        self,
        queue_size: int | None,
        concurrency: int | None,
        overflow: Overflow | None,
        key: Callable[[Any], Hashable] | _Unset | None,
        handler_timeout: float | _Unset | None,
        retry: Retry | _Unset | None,
        transport: Any,
    ) -> TypeConfig:
        """These settings with the given ones changed (None, or UNSET where None is a
        value, keeps one): what ``Dispatcher.configure`` applies."""
        return TypeConfig(
            self.queue_size if queue_size is None else queue_size,
            self.concurrency if concurrency is None else concurrency,
            self.overflow if overflow is None else overflow,
            self.key if key is UNSET else key,
            self.handler_timeout if handler_timeout is UNSET else handler_timeout,
            self.retry if retry is UNSET else retry,
            self.transport if transport is UNSET else transport,
        )


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET
"""Marks an argument that was not given (where None means something)."""


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidConfiguration(f"{name} must be an int >= 1, got {value!r}")


def check_timeout(name: str, value: float | None) -> None:
    """Raise :class:`InvalidConfiguration` unless *value* is None or a finite number >= 0."""
    if value is None:
        return
    # `not value >= 0` also refuses NaN
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidConfiguration(f"{name} must be a number >= 0 or None, got {value!r}")


def check_retry(value: object) -> None:
    """Raise :class:`InvalidConfiguration` unless *value* is None or a :class:`Retry`."""
    if value is not None and not isinstance(value, Retry):
        raise InvalidConfiguration(f"retry must be an eventcore.Retry or None, got {value!r}")


def check_transport(value: object) -> None:
    """Raise :class:`InvalidConfiguration` unless *value* is None or has ``send`` and
    ``source`` (see ``eventcore._transport.Transport``)."""
    if value is not None and not (
        callable(getattr(value, "send", None)) and callable(getattr(value, "source", None))
    ):
        raise InvalidConfiguration(
            f"transport must have send() and source() methods (see eventcore.Transport), "
            f"got {value!r}"
        )
