"""The outbox's writing side: an event published in the caller's transaction becomes a
row of the outbox table, sent by a relay once (and only if) that transaction commits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import InvalidEvent
from ._connections import map_error, runner
from ._schema import DEFAULT_TABLES, Tables

if TYPE_CHECKING:
    from .._dispatcher import Dispatcher
    from .._wire.codec import Codec
    from ._relay import Relay


class Outbox:
    """Publish events in a database transaction (PostgreSQL)::

        outbox = Outbox(bus)
        async with session.begin():                  # SQLAlchemy AsyncSession (asyncpg)
            session.add(Order(...))
            await outbox.publish(OrderPlaced(...), session=session)
        # committed: a relay sends it; rolled back: nothing leaves

        async with bus, outbox.relay("postgresql://..."):   # the relay (see Relay)
            ...

    :param bus: the dispatcher whose names (and per-type ``key``) the envelope uses
    :param tables: the table names (:class:`Tables`)
    """

    def __init__(self, bus: Dispatcher, *, tables: Tables = DEFAULT_TABLES) -> None:
        self.bus = bus
        self.tables = tables
        self._codec: Codec | None = None
        self._insert = (
            f"INSERT INTO {tables.outbox} (event_id, type, key, body) VALUES ($1, $2, $3, $4)"
        )

    @property
    def codec(self) -> Codec:
        """The JSON codec of the envelopes (over the dispatcher's names)."""
        if self._codec is None:
            from .._wire.codec import Codec

            self._codec = Codec.for_dispatcher(self.bus)
        return self._codec

    async def publish(self, event: Any, *, session: Any) -> str:
        """Write *event* into the outbox in *session*'s transaction.

        Nothing leaves before that transaction commits; if it rolls back, nothing
        leaves at all. Once committed, a relay sends it (also after a crash).

        :param session: an SQLAlchemy ``AsyncSession`` / ``AsyncConnection`` on
            PostgreSQL, or an asyncpg ``Connection``, in a transaction
        :raises InvalidEvent: *event* is None, a class or a builtin value
        :raises EncodeError: the event does not encode (nothing was written)
        :raises NotInTransaction: the session is not in a transaction
        :raises UnsupportedDatabase: the session is not PostgreSQL's
        :raises MissingTable: the outbox table does not exist
        :raises DatabaseUnavailable: the connection failed
        :return: the event id (the broker's deduplication id, the inbox's key)
        """
        event_type = type(event)
        if event is None or isinstance(event, type) or event_type.__module__ == "builtins":
            raise InvalidEvent(f"publish() needs an event object, got {event!r}")
        codec = self.codec
        from .._wire.ids import new_event_id

        event_id = new_event_id()
        key_of = self.bus.config(event_type).key
        key = None if key_of is None else key_of(event)
        body = codec.encode(event, key=key, id=event_id)  # EncodeError before any write
        name = codec.names.resolve(event_type).name
        run = await runner(session, f"publish({event_type.__qualname__}, session=...)")
        try:
            await run(self._insert, (event_id, name, None if key is None else str(key), body))
        except Exception as exc:
            mapped = map_error(exc, self.tables.outbox, session)
            if mapped is exc:
                raise
            raise mapped from exc
        return event_id

    def relay(self, dsn: str, **options: Any) -> Relay:
        """A :class:`Relay` of this outbox's table to the dispatcher's routes
        (``async with bus, outbox.relay(dsn):``); *options* as :class:`Relay`'s."""
        from ._relay import Relay

        return Relay(self.bus, dsn, tables=self.tables, **options)
