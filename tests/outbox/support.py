"""PostgreSQL for the outbox tests: the shared server (db ``test``) with tables of
unique names per test, or a private one to kill (:class:`PrivatePostgres`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from eventcore.outbox import Tables, schema_ddl
from tests.brokers._servers import answers, brokers_required, free_port

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_DSN = os.environ.get("EVENTCORE_PG_DSN", f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test")


def require_postgres() -> None:
    """Skip (fail under CI=true) unless the shared PostgreSQL answers."""
    if answers(PG_HOST, PG_PORT):
        return
    message = f"no PostgreSQL answers on {PG_HOST}:{PG_PORT}"
    if brokers_required():
        pytest.fail(f"{message}, and CI=true / EVENTCORE_REQUIRE_BROKERS=1 requires it")
    pytest.skip(f"{message}: start one to run the outbox tests")


def unique_tables() -> Tables:
    tag = uuid.uuid4().hex[:10]
    return Tables(outbox=f"t{tag}_outbox", inbox=f"t{tag}_inbox", dead=f"t{tag}_dead")


async def create_tables(dsn: str, tables: Tables) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(schema_ddl(tables))
    finally:
        await conn.close()


async def drop_tables(dsn: str, tables: Tables) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS {tables.outbox}, {tables.inbox}, {tables.dead} CASCADE;"
            f"DROP FUNCTION IF EXISTS {tables.outbox}_notify()"
        )
    finally:
        await conn.close()


@dataclass
class PrivatePostgres:
    """A PostgreSQL of the test's own (initdb + pg_ctl as the ``postgres`` user, on a
    free loopback port, in a temporary directory); never the shared one."""

    directory: Path
    port: int = 0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def bindir() -> Path | None:
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        except FileNotFoundError:
            return None
        path = Path(out.stdout.strip())
        return path if (path / "initdb").exists() else None

    def _as_postgres(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        bindir = self.bindir()
        if bindir is None:
            if brokers_required():
                pytest.fail("initdb/pg_ctl are not installed, and CI=true requires the checker")
            pytest.skip("initdb/pg_ctl are not installed: the crash checker needs them")
        self._bin = bindir
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self.port = free_port()
        self._as_postgres(
            str(bindir / "initdb"), "-D", str(self.directory / "data"), "-A", "trust",
            "-U", "postgres", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        self._as_postgres(
            str(self._bin / "pg_ctl"), "-D", str(self.directory / "data"), "-w",
            "-l", str(self.directory / "log"),
            "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=on -c max_connections=50",
            "start",
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not answers("127.0.0.1", self.port, 0.2):
            if time.monotonic() > deadline:
                raise RuntimeError((self.directory / "log").read_text()[-2000:])
            time.sleep(0.05)

    def crash(self) -> None:
        """Stop at once, without a checkpoint, as a crash would (restarts from the WAL)."""
        self._as_postgres(
            str(self._bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate",
            "stop",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            self.crash()
        except subprocess.CalledProcessError:
            pass


def private_directory() -> Path:
    """A temporary directory for a private PostgreSQL (the ``postgres`` user must be
    able to enter the temporary directory: set TMPDIR accordingly)."""
    return Path(tempfile.mkdtemp(prefix="eventcore-pg-"))


async def until(condition: Callable[[], bool], limit: float = 15.0) -> None:
    """Wait until *condition()* holds (polling); fail after *limit* seconds."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 - the state is in PostgreSQL and other tasks
            await anyio.sleep(0.01)
