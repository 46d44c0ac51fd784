"""Broker client errors as eventcore errors: every error a transport lets reach a
user derives from :class:`~eventcore.EventcoreError` and says what happened, to
which type or server, and what to do; credentials in URLs never appear.

* :class:`BrokerUnavailable` (``TransportError`` and the builtin
  ``ConnectionError``, so code that caught the client's error still does): the
  server cannot be reached, refused the connection, or stopped answering;
* :func:`unavailable` builds one from a client exception, keeping the server's
  own reason (``authorization violation``), never an empty ``TimeoutError``;
* :func:`refused_send` / :func:`unconfirmed` are the two outcomes of a publish
  that did not succeed: certainly not stored (a :class:`~eventcore.QueueFull`,
  so the type's overflow policy applies) or perhaps stored
  (:class:`~eventcore.PublishUnconfirmed`, a retry of the same event object is
  deduplicated).
"""

from __future__ import annotations

from ..._errors import PublishUnconfirmed, QueueFull, TransportError
from .common import redact


class BrokerUnavailable(TransportError, ConnectionError):
    """The broker cannot be reached, refused the connection, or stopped answering.

    :ivar broker: which broker ("NATS", "Redis", ...)
    :ivar reason: the server's or the client's reason, without credentials
    """

    def __init__(self, message: str, broker: str, reason: str) -> None:
        super().__init__(message)
        self.broker = broker
        self.reason = reason


def reason_of(exc: BaseException) -> str:
    """What *exc* says, without credentials; its type name when it says nothing
    (``TimeoutError()``), and the cause's reason when it has one."""
    text = redact(str(exc)).strip()
    if not text and exc.__cause__ is not None and exc.__cause__ is not exc:
        return reason_of(exc.__cause__)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unavailable(
    broker: str, where: str, exc: BaseException | str, doing: str
) -> BrokerUnavailable:
    """The error for a broker at *where* (a redacted address) that failed while
    *doing* something ("connecting", "publishing a Job")."""
    reason = exc if isinstance(exc, str) else reason_of(exc)
    return BrokerUnavailable(
        f"{broker} at {where} failed while {doing}: {reason}. Check that the server runs, "
        "that this address and the credentials are right, and that it accepts this client",
        broker,
        reason,
    )


def refused_send(event_type: type, why: str) -> QueueFull:
    """A publish the broker certainly did not store (full, unreachable, stalled before
    the write left): the type's overflow policy decides what ``publish`` does."""
    return QueueFull(f"no room on the broker for {event_type.__qualname__}: {why}", event_type)


def unconfirmed(
    event_type: type,
    event_id: str,
    broker: str,
    waited: float | None = None,
    *,
    deduplicated: bool = True,
) -> PublishUnconfirmed:
    """A publish whose acknowledgement did not come in time (within *waited*
    seconds): it may or may not be stored. With *deduplicated*, publishing the same
    event object again is safe (it is re-sent under the same id)."""
    within = "in time" if waited is None else f"within {waited:.3g} s"
    retry = (
        f"Publishing the same event object again is safe (it is re-sent as {event_id}, "
        "deduplicated)"
        if deduplicated
        else "Publishing it again may store it twice (turn on the transport's dedup to "
        "make retries safe)"
    )
    return PublishUnconfirmed(
        f"{broker} did not acknowledge a {event_type.__qualname__} {within}: it may or may "
        f"not be stored. {retry}",
        event_type,
        event_id,
    )
