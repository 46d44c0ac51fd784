"""The outbox tests run on asyncio and uvloop (asyncpg needs asyncio), against the
shared PostgreSQL with tables of unique names, dropped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventcore.outbox import Tables

from .support import PG_DSN, create_tables, drop_tables, require_postgres, unique_tables


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """asyncio and uvloop: asyncpg needs asyncio."""
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@pytest.fixture
def dsn() -> str:
    """The shared PostgreSQL (skips, or fails under CI=true, when it does not answer)."""
    require_postgres()
    return PG_DSN


@pytest.fixture
async def tables(dsn: str) -> AsyncIterator[Tables]:
    """Tables of unique names, created before the test and dropped after it."""
    names = unique_tables()
    await create_tables(dsn, names)
    try:
        yield names
    finally:
        await drop_tables(dsn, names)
