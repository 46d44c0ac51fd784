"""The tables: ``python -m eventcore sql schema`` prints DDL that PostgreSQL runs (twice,
idempotent), and :func:`metadata` describes the same tables for SQLAlchemy/Alembic."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from eventcore.outbox import Tables, metadata

from .support import drop_tables, unique_tables

pytestmark = pytest.mark.anyio


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventcore", "sql", "schema", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def columns(conn: Any, table: str) -> list[tuple[str, str, bool]]:
    inspector = sa.inspect(conn)
    return [
        (c["name"], str(c["type"]).split("(")[0], bool(c["nullable"]))
        for c in inspector.get_columns(table)
    ]


def shape(conn: Any, tables: Tables) -> dict[str, Any]:
    inspector = sa.inspect(conn)
    return {
        name: (
            columns(conn, name),
            inspector.get_pk_constraint(name)["constrained_columns"],
            sorted(i["name"] for i in inspector.get_indexes(name)),
        )
        for name in (tables.outbox, tables.dead, tables.inbox)
    }


async def test_the_command_and_the_metadata_make_the_same_tables(dsn: str) -> None:
    by_ddl, by_metadata = unique_tables(), unique_tables()
    done = cli("--outbox", by_ddl.outbox, "--inbox", by_ddl.inbox, "--dead", by_ddl.dead)
    assert done.returncode == 0, done.stderr
    conn = await asyncpg.connect(dsn)
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        await conn.execute(done.stdout)
        await conn.execute(done.stdout)  # idempotent
        async with engine.begin() as sa_conn:
            await sa_conn.run_sync(metadata(by_metadata).create_all)
            ddl_shape = await sa_conn.run_sync(shape, by_ddl)
            md_shape = await sa_conn.run_sync(shape, by_metadata)
        assert list(ddl_shape.values()) == [
            (cols, pk, [index.replace(by_metadata.inbox, by_ddl.inbox) for index in indexes])
            for cols, pk, indexes in md_shape.values()
        ]
        for tables in (by_ddl, by_metadata):  # the trigger: an insert notifies on commit
            got: list[str] = []

            def notified(*args: Any, got: list[str] = got) -> None:
                got.append(args[2])

            await conn.add_listener(tables.channel, notified)
            other = await asyncpg.connect(dsn)
            try:
                await other.execute(
                    f"INSERT INTO {tables.outbox} (event_id, type, body) VALUES ('i', 't', '')"
                )
            finally:
                await other.close()
            await conn.execute("SELECT 1")  # notifications arrive between statements
            assert got == [tables.channel]
    finally:
        await engine.dispose()
        await conn.close()
        await drop_tables(dsn, by_ddl)
        await drop_tables(dsn, by_metadata)


def test_a_bad_table_name_is_refused_by_the_command() -> None:
    done = cli("--inbox", "x; DROP TABLE y")
    assert done.returncode == 2
    assert "lowercase SQL identifier" in done.stderr
