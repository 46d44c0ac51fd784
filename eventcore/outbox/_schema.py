"""The tables: their names, their DDL, and the same as SQLAlchemy ``MetaData``.

Three tables (names configurable through :class:`Tables`):

* the outbox: one row per event published in a transaction, until a relay sent it
  (``seq`` is the order of writing; a trigger wakes relays with ``NOTIFY``);
* its dead letters: rows that no longer decode, with the reason;
* the inbox: one row per (event id, handler) that an idempotent handler committed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .._errors import InvalidConfiguration

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,40}")


@dataclass(frozen=True)
class Tables:
    """The names of the outbox's tables (lowercase SQL identifiers, unquoted).

    :ivar outbox: the events waiting to be sent; also the ``NOTIFY`` channel
    :ivar inbox: the (event id, handler) pairs already handled
    :ivar dead: outbox rows that could not be sent (undecodable), with the reason
    """

    outbox: str = "eventcore_outbox"
    inbox: str = "eventcore_inbox"
    dead: str = "eventcore_outbox_dead"

    def __post_init__(self) -> None:
        for label, name in (("outbox", self.outbox), ("inbox", self.inbox), ("dead", self.dead)):
            if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
                raise InvalidConfiguration(
                    f"the {label} table name must be a lowercase SQL identifier of at most "
                    f"41 characters ([a-z_][a-z0-9_]*), got {name!r}"
                )
        if len({self.outbox, self.inbox, self.dead}) != 3:
            raise InvalidConfiguration(f"the three table names must differ: {self}")

    @property
    def channel(self) -> str:
        """The ``LISTEN``/``NOTIFY`` channel that wakes the relays."""
        return self.outbox


#: the default names
DEFAULT_TABLES = Tables()


def trigger_statements(tables: Tables = DEFAULT_TABLES) -> list[str]:
    """The statements of the trigger that wakes relays on commit, one by one (Alembic
    does not autogenerate triggers: ``for s in trigger_statements(tables):
    op.execute(s)`` in the migration that creates the outbox)."""
    o = tables.outbox
    return [
        (
            f"CREATE OR REPLACE FUNCTION {o}_notify() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN PERFORM pg_notify('{tables.channel}', ''); RETURN NULL; END $$"
        ),
        f"DROP TRIGGER IF EXISTS {o}_notify ON {o}",
        (
            f"CREATE TRIGGER {o}_notify AFTER INSERT ON {o}\n"
            f"    FOR EACH STATEMENT EXECUTE FUNCTION {o}_notify()"
        ),
    ]


def trigger_ddl(tables: Tables = DEFAULT_TABLES) -> str:
    """:func:`trigger_statements` as one script."""
    return "".join(f"{statement};\n" for statement in trigger_statements(tables))


def schema_ddl(tables: Tables = DEFAULT_TABLES) -> str:
    """The DDL of the three tables and the trigger, idempotent (``IF NOT EXISTS``)."""
    o, d, i = tables.outbox, tables.dead, tables.inbox
    return f"""CREATE TABLE IF NOT EXISTS {o} (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL,
    type text NOT NULL,
    key text,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS {d} (
    seq bigint PRIMARY KEY,
    event_id text NOT NULL,
    type text NOT NULL,
    key text,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL,
    reason text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS {i} (
    event_id text NOT NULL,
    handler text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (event_id, handler)
);
CREATE INDEX IF NOT EXISTS {i}_handled_at ON {i} (handled_at);
{trigger_ddl(tables)}"""


def metadata(tables: Tables = DEFAULT_TABLES, metadata: Any = None) -> Any:
    """The tables as SQLAlchemy ``Table`` s in *metadata* (a new ``MetaData`` by
    default), for Alembic's autogenerate; ``create_all`` also creates the trigger.

    :return: the ``MetaData``
    """
    import sqlalchemy as sa

    md = sa.MetaData() if metadata is None else metadata
    outbox = sa.Table(
        tables.outbox,
        md,
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
    )
    sa.Table(
        tables.dead,
        md,
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(
            "failed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
    )
    sa.Table(
        tables.inbox,
        md,
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("handler", sa.Text, primary_key=True),
        sa.Column(
            "handled_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.Index(f"{tables.inbox}_handled_at", "handled_at"),
    )
    for statement in trigger_statements(tables):
        ddl = sa.DDL(statement.replace("%", "%%"))  # type: ignore[no-untyped-call]
        sa.event.listen(outbox, "after_create", ddl)
    return md
