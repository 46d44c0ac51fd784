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

        outbox = Outbox(bus, relay="postgresql://...")  # its relay runs while bus runs
        async with session.begin():                     # SQLAlchemy AsyncSession (asyncpg)
            session.add(Order(...))
            await bus.publish(OrderPlaced(...), session=session)   # = outbox.publish
        # committed: the relay sends it; rolled back: nothing leaves

    Creating it attaches it to the dispatcher (``bus.attach``): ``bus.publish(event,
    session=...)`` writes here, and the relay (``relay=``) starts with each run of the
    dispatcher and stops before its queues drain. Without ``relay=``, run one with
    ``async with outbox.relay(dsn):`` (or in another process).

    :param bus: the dispatcher whose names (and per-type ``key``) the envelope uses
    :param tables: the table names (:class:`Tables`)
    :param relay: the PostgreSQL URL (asyncpg) of a relay run with the dispatcher
    :param relay_options: that relay's options (see :class:`Relay`)
    """

    def __init__(
        self,
        bus: Dispatcher,
        *,
        tables: Tables = DEFAULT_TABLES,
        relay: str | None = None,
        **relay_options: Any,
    ) -> None:
        self.bus = bus
        self.tables = tables
        #: the relay that runs with each run of the dispatcher (``relay=dsn``), or None
        self.attached_relay: Relay | None = None
        if relay is not None:
            self.attached_relay = self.relay(relay, **relay_options)
        bus.attach(self)  # bus.publish(event, session=...) writes here
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

    async def __aenter__(self) -> Outbox:
        """Start the attached relay, if any (the dispatcher does it at each start)."""
        if self.attached_relay is not None:
            await self.attached_relay.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        """Stop the attached relay, if any."""
        if self.attached_relay is None:
            return None
        return await self.attached_relay.__aexit__(*exc_info)

    def relay(self, dsn: str, **options: Any) -> Relay:
        """A :class:`Relay` of this outbox's table to the dispatcher's routes
        (``async with bus, outbox.relay(dsn):``); *options* as :class:`Relay`'s."""
        from ._relay import Relay

        return Relay(self.bus, dsn, tables=self.tables, **options)
