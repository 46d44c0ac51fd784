"""Effectively once on PostgreSQL: a transactional outbox and an idempotent inbox.

::

    from eventcore.outbox import Inbox, Outbox

    outbox = Outbox(bus)
    async with session.begin():                      # the caller's transaction
        session.add(order)
        await outbox.publish(OrderPlaced(order.id, order.total), session=session)

    async with bus, outbox.relay("postgresql://127.0.0.1/app"):   # sends committed rows
        ...

    inbox = Inbox(async_sessionmaker(engine))

    @bus.on(OrderPlaced)
    @inbox.idempotent                                # effects + inbox row, one commit
    async def charge(event: OrderPlaced, session: AsyncSession) -> None: ...

The tables: ``python -m eventcore sql schema`` prints their DDL, :func:`metadata`
gives them to SQLAlchemy / Alembic. Needs ``pip install "eventcore-py[sql]"``
(SQLAlchemy 2 and asyncpg); the relay runs on asyncio and uvloop.
"""

from ._errors import DatabaseUnavailable as DatabaseUnavailable
from ._errors import MissingTable as MissingTable
from ._errors import NoEventId as NoEventId
from ._errors import NotInTransaction as NotInTransaction
from ._errors import OutboxError as OutboxError
from ._errors import UnsupportedDatabase as UnsupportedDatabase
from ._inbox import Inbox as Inbox
from ._relay import Relay as Relay
from ._schema import Tables as Tables
from ._schema import metadata as metadata
from ._schema import schema_ddl as schema_ddl
from ._schema import trigger_ddl as trigger_ddl
from ._schema import trigger_statements as trigger_statements
from ._stats import InboxStats as InboxStats
from ._stats import RelayStats as RelayStats
from ._writer import Outbox as Outbox

__all__ = [
    "DatabaseUnavailable",
    "Inbox",
    "InboxStats",
    "MissingTable",
    "NoEventId",
    "NotInTransaction",
    "Outbox",
    "OutboxError",
    "Relay",
    "RelayStats",
    "Tables",
    "UnsupportedDatabase",
    "metadata",
    "schema_ddl",
    "trigger_ddl",
    "trigger_statements",
]
