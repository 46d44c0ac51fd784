"""The figures of a relay and an inbox, for ``stats()``, Prometheus and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RelayStats:
    """What a relay did and what waits in its outbox table.

    :ivar backlog: rows in the outbox (committed, not yet sent), as last counted
        (None before the first count)
    :ivar oldest_age: seconds since the oldest of them was written (None when empty)
    :ivar sent: rows sent and removed by this relay
    :ivar dead_lettered: rows moved to the dead-letter table (undecodable, refused)
    :ivar retried: sends that failed for now (broker full or down): the rows stay
    :ivar errors: database errors met (each followed by a reconnect with backoff)
    :ivar leader: whether this relay is the one sending (one per table at a time)
    :ivar connected: whether it has a connection to PostgreSQL now
    """

    backlog: int | None
    oldest_age: float | None
    sent: int
    dead_lettered: int
    retried: int
    errors: int
    leader: bool
    connected: bool


@dataclass(frozen=True)
class InboxStats:
    """What an inbox did.

    :ivar handled: events whose handler ran and committed with its inbox row
    :ivar duplicates: redeliveries acknowledged without running the handler
    :ivar failed: handler calls that raised (their transaction rolled back)
    :ivar expired: inbox rows removed after the retention
    """

    handled: int
    duplicates: int
    failed: int
    expired: int
