"""The caller's database handle, whatever it is: an SQLAlchemy ``AsyncSession`` or
``AsyncConnection`` on PostgreSQL, or a plain asyncpg ``Connection``; checked to be in
a transaction, and turned into one way to run a statement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._errors import DatabaseUnavailable, MissingTable, NotInTransaction, UnsupportedDatabase

#: run one statement with positional arguments ($1, $2, ...); the rows it returned
Run = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


def _module(obj: Any) -> str:
    return type(obj).__module__.partition(".")[0]


async def runner(handle: Any, what: str) -> Run:
    """How to run statements in *handle*'s current transaction.

    :param what: what is being done, for the error messages
    :raises NotInTransaction: *handle* is in autocommit or not in a transaction
    :raises UnsupportedDatabase: *handle* is not PostgreSQL's
    """
    module = _module(handle)
    if module == "asyncpg":
        if not hasattr(handle, "is_in_transaction"):
            raise UnsupportedDatabase(f"{what}: an asyncpg Connection is needed, got {handle!r}")
        if not handle.is_in_transaction():
            raise NotInTransaction(
                f"{what}: the asyncpg connection is not in a transaction, so the event would "
                "leave even if the caller's work rolled back; use `async with conn.transaction():`"
            )
        return asyncpg_run(handle)
    if module == "sqlalchemy":
        return await _sqlalchemy_runner(handle, what)
    raise UnsupportedDatabase(
        f"{what}: session= must be an SQLAlchemy AsyncSession / AsyncConnection on "
        f"PostgreSQL or an asyncpg Connection, got {type(handle).__qualname__}"
    )


def asyncpg_run(conn: Any) -> Run:
    """Run statements on an asyncpg connection."""

    async def run(sql: str, args: Sequence[Any]) -> list[Any]:
        return list(await conn.fetch(sql, *args))

    return run


#: statements written with $1, $2, ... as SQLAlchemy text() with :p1, :p2, ...
_texts: dict[str, Any] = {}


def _text(sql: str, arity: int) -> Any:
    found = _texts.get(sql)
    if found is None:
        from sqlalchemy import text

        statement = sql
        for n in range(arity, 0, -1):  # $10 before $1
            statement = statement.replace(f"${n}", f":p{n}")
        found = _texts[sql] = text(statement)
    return found


def sqlalchemy_run(executor: Any) -> Run:
    """Run statements (written with ``$1``, ``$2``, ...) on an SQLAlchemy
    ``AsyncSession`` or ``AsyncConnection``."""

    async def run(sql: str, args: Sequence[Any]) -> list[Any]:
        params = {f"p{n}": value for n, value in enumerate(args, 1)}
        result = await executor.execute(_text(sql, len(args)), params)
        return list(result.fetchall()) if result.returns_rows else []

    return run


def driver_run(conn: Any) -> Run:
    """Run statements on an SQLAlchemy ``AsyncConnection`` whose driver takes ``$1``
    parameters (asyncpg) as they are: no compilation on the way."""

    async def run(sql: str, args: Sequence[Any]) -> list[Any]:
        result = await conn.exec_driver_sql(sql, tuple(args))
        return list(result.fetchall()) if result.returns_rows else []

    return run


async def _sqlalchemy_runner(handle: Any, what: str) -> Run:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(handle, AsyncSession):
        from sqlalchemy.exc import InvalidRequestError

        try:
            conn = await handle.connection()  # begins the session's transaction (autobegin)
        except InvalidRequestError as exc:  # autobegin=False and no begin()
            raise NotInTransaction(f"{what}: the session is not in a transaction") from exc
    elif isinstance(handle, AsyncConnection):
        conn = handle
        if not conn.in_transaction():
            raise NotInTransaction(
                f"{what}: the connection is not in a transaction; use `async with conn.begin():`"
            )
    else:
        raise UnsupportedDatabase(
            f"{what}: an SQLAlchemy AsyncSession or AsyncConnection is needed, "
            f"got {type(handle).__qualname__} (a synchronous Session cannot be awaited)"
        )
    if conn.dialect.name != "postgresql":
        raise UnsupportedDatabase(
            f"{what}: the outbox lives in PostgreSQL, but this session's database is "
            f"{conn.dialect.name}"
        )
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    if options.get("isolation_level") == "AUTOCOMMIT":
        raise NotInTransaction(
            f"{what}: the connection is in AUTOCOMMIT, so the event would leave even if the "
            "caller's work rolled back"
        )
    if conn.dialect.paramstyle == "numeric_dollar":  # asyncpg
        return driver_run(conn)
    return sqlalchemy_run(conn)


def map_error(exc: BaseException, table: str, handle: Any = None) -> BaseException:
    """The eventcore error for a database error *exc* met on *table* (through the
    connection or session *handle*), or *exc*."""
    closed = getattr(handle, "is_closed", None)  # asyncpg: a connection the server ended
    if getattr(exc, "connection_invalidated", False) or (callable(closed) and closed()):
        return DatabaseUnavailable(f"the connection to PostgreSQL was lost ({table}): {exc}")
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    cause = getattr(cause, "__cause__", None) or cause
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if code == "42P01":  # undefined_table
        return MissingTable(table)
    if code is not None and code[:2] in ("08", "57"):  # connection exception, shutdown
        return DatabaseUnavailable(f"PostgreSQL failed on {table}: {cause}")
    if isinstance(cause, (OSError, ConnectionError)) or type(cause).__name__ in (
        "ConnectionDoesNotExistError",
        "InterfaceError",
    ):
        return DatabaseUnavailable(f"PostgreSQL is unreachable ({table}): {cause}")
    return exc
