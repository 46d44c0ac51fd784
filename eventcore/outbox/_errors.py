"""The outbox's and the inbox's errors, all :class:`~eventcore.EventcoreError` s.

::

    EventcoreError
    └── OutboxError
        ├── NotInTransaction (RuntimeError)   publish(session=...) outside a transaction
        ├── UnsupportedDatabase (TypeError)   not a PostgreSQL session or connection
        ├── MissingTable                      a table does not exist: create it first
        ├── DatabaseUnavailable (ConnectionError)  PostgreSQL did not answer
        └── NoEventId (RuntimeError)          an idempotent handler got an event that
                                              came neither from a relay nor a broker
"""

from __future__ import annotations

from .._errors import EventcoreError

SCHEMA_COMMAND = "python -m eventcore sql schema"


class OutboxError(EventcoreError):
    """Base class of the outbox's and the inbox's errors."""


class NotInTransaction(OutboxError, RuntimeError):
    """``publish(event, session=...)`` was given a session or connection that is not in
    a transaction: the event would leave whether or not the caller's work commits."""


class UnsupportedDatabase(OutboxError, TypeError):
    """The session or connection is not PostgreSQL's (through SQLAlchemy or asyncpg)."""


class MissingTable(OutboxError):
    """An outbox or inbox table does not exist.

    :ivar table: its name
    """

    def __init__(self, table: str) -> None:
        super().__init__(
            f"the table {table!r} does not exist: create it with `{SCHEMA_COMMAND}` "
            "(prints the DDL; or migrate from eventcore.outbox.metadata() with Alembic)"
        )
        self.table = table


class DatabaseUnavailable(OutboxError, ConnectionError):
    """PostgreSQL did not answer or dropped the connection; nothing was lost (the
    relay retries with backoff; an outbox row is removed only once sent)."""


class NoEventId(OutboxError, RuntimeError):
    """An idempotent handler was called for an event without a durable id: it must
    come from an outbox relay (in memory) or from a broker transport."""
