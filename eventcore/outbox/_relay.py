"""The relay: committed outbox rows -> the event type's route -> confirmed -> deleted.

One relay per table sends at a time: each relay asks for a session-level advisory
lock on the table and only the holder sends; the others wait, and one of them takes
over when the holder's connection ends (its process died, or PostgreSQL restarted).
So several processes may run a relay on one table without sending a row twice in
normal operation; after a crash between a send and its delete the row is sent again
under the same event id, which the broker deduplicates and the inbox recognizes.

Order: rows are read in ``seq`` order (the order of their inserts). Rows of one
(type, key) are sent one after the other, each after the previous one was
confirmed; other rows are sent concurrently. A transaction's rows become visible
at its commit, so the events of one key arrive in commit order when each
transaction wrote its row after the previous one committed (lock the key's row,
e.g. ``SELECT ... FOR UPDATE``, before publishing); two transactions that write
rows of one key concurrently have no order between them.

The relay wakes on ``LISTEN``/``NOTIFY`` (a trigger notifies on commit) and polls
every ``poll_interval`` in case a notification was missed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio

from .._deadletters import DeadLetter, DeadLetterReason
from .._errors import (
    DispatcherClosed,
    EventcoreError,
    InvalidConfiguration,
    PublishTimeout,
    QueueFull,
    TransportError,
)
from .._wire.errors import WireError
from .._wire.ids import resending
from .._wire.names import declared_name
from ._errors import DatabaseUnavailable, MissingTable
from ._local import relayed
from ._schema import DEFAULT_TABLES, Tables
from ._stats import RelayStats

if TYPE_CHECKING:
    from .._dispatcher import Dispatcher
    from .._wire.codec import Codec

logger = logging.getLogger("eventcore.outbox")

#: the first key of the relays' advisory locks ("EVCR")
_LOCK_SPACE = 0x45564352
#: a send that failed for now: the row stays
_KEPT = "kept"
#: how the relay's connections show in pg_stat_activity
_APPLICATION = {"application_name": "eventcore-relay"}
_SENT = "sent"


class Relay:
    """Send an outbox table's committed rows to their types' routes (see the module doc).

    An async context manager, entered while the dispatcher runs: attached to it
    (``bus.attach(relay)``: it runs for each run's life, and stops before the queues
    drain) or on its own::

        async with bus, Relay(bus, "postgresql://127.0.0.1/app"):
            ...

    :param bus: the dispatcher whose routes (in memory, NATS, Redis) the events take;
        a row decodes if its type is registered in ``bus.names`` (``bus.register``,
        or an ``@event`` type that the dispatcher handles or configured); a row
        of a type unknown here is dead-lettered with the reason
    :param dsn: the PostgreSQL URL for asyncpg (``postgresql://user@host:port/db``)
    :param tables: the table names
    :param batch: rows read per round
    :param concurrency: sends in flight at once (rows of one key: one at a time)
    :param poll_interval: seconds between looks at the table without a notification
    :param max_backoff: the longest wait, in seconds, before retrying after a failure
    :param start_timeout: how long entering waits for PostgreSQL before it raises
        :class:`DatabaseUnavailable`
    :param stop_timeout: how long leaving waits for the sends under way
    :param stats_interval: seconds between counts of the backlog (``stats()``)
    """

    def __init__(
        self,
        bus: Dispatcher,
        dsn: str,
        *,
        tables: Tables = DEFAULT_TABLES,
        batch: int = 1000,
        concurrency: int = 100,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        stats_interval: float = 1.0,
    ) -> None:
        for label, value in (("batch", batch), ("concurrency", concurrency)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfiguration(f"{label} must be an int >= 1, got {value!r}")
        for label, seconds in (
            ("poll_interval", poll_interval),
            ("max_backoff", max_backoff),
            ("start_timeout", start_timeout),
            ("stop_timeout", stop_timeout),
            ("stats_interval", stats_interval),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise InvalidConfiguration(f"{label} must be a number > 0, got {seconds!r}")
        self.bus = bus
        self.dsn = dsn
        self.tables = tables
        self.batch = batch
        self.poll_interval = float(poll_interval)
        self.max_backoff = float(max_backoff)
        self.start_timeout = float(start_timeout)
        self.stop_timeout = float(stop_timeout)
        self.stats_interval = float(stats_interval)
        self.concurrency = concurrency
        self._codec: Codec | None = None
        self._conn: Any = None
        self._task_group: Any = None
        self._wake = anyio.Event()
        self._notified = False
        self._stopping = False
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        self._leader = False
        o = tables.outbox
        self._select = f"SELECT seq, event_id, type, key, body FROM {o} ORDER BY seq LIMIT $1"
        self._delete = f"DELETE FROM {o} WHERE seq = ANY($1::bigint[])"
        self._count = (
            f"SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at)) FROM {o}"
        )
        self._bury_row = (
            f"WITH moved AS (DELETE FROM {o} WHERE seq = $1 RETURNING *) "
            f"INSERT INTO {tables.dead} (seq, event_id, type, key, body, created_at, reason) "
            "SELECT seq, event_id, type, key, body, created_at, $2 FROM moved "
            "ON CONFLICT (seq) DO NOTHING"
        )
        # figures
        self._backlog: int | None = None
        self._oldest: float | None = None
        self._sent = self._dead = self._retried = self._errors = 0

    def __repr__(self) -> str:
        return f"<Relay of {self.tables.outbox} leader={self._leader}>"

    def stats(self) -> RelayStats:
        """The relay's figures (the backlog as last counted, every ``stats_interval``)."""
        return RelayStats(
            backlog=self._backlog,
            oldest_age=self._oldest,
            sent=self._sent,
            dead_lettered=self._dead,
            retried=self._retried,
            errors=self._errors,
            leader=self._leader,
            connected=self._conn is not None,
        )

    # -- life ------------------------------------------------------------------------

    async def __aenter__(self) -> Relay:
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise InvalidConfiguration(
                "the outbox relay runs on asyncio (and uvloop) only: asyncpg needs asyncio"
            ) from None
        from .._wire.codec import Codec

        self._codec = Codec.for_dispatcher(self.bus)
        # a relay may run again (attached to a dispatcher: once per run)
        self._stopping, self._leader, self._notified = False, False, False
        self._wake, self._stop, self._stopped = anyio.Event(), anyio.Event(), anyio.Event()
        await self._start()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._run)
        self._task_group.start_soon(self._watch)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._stopping = True
        self._wake.set()
        self._stop.set()
        with anyio.move_on_after(self.stop_timeout):
            await self._stopped.wait()
        self._task_group.cancel_scope.cancel()
        try:
            return bool(await self._task_group.__aexit__(*exc_info))
        finally:
            with anyio.CancelScope(shield=True):
                await self._disconnect()

    async def _start(self) -> None:
        """Connect and check the tables, retrying with backoff until ``start_timeout``."""
        deadline = time.monotonic() + self.start_timeout
        delay = 0.05
        while True:
            try:
                await self._connect()
            except DatabaseUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
                await anyio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            break
        for table in (self.tables.outbox, self.tables.dead):
            if await self._conn.fetchval("SELECT to_regclass($1)", table) is None:
                await self._disconnect()
                raise MissingTable(table)

    async def _connect(self) -> None:
        import asyncpg

        try:
            conn = await asyncpg.connect(
                self.dsn, timeout=self.start_timeout, server_settings=_APPLICATION
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"the outbox relay cannot reach PostgreSQL: {exc}; it retries with backoff"
            ) from exc
        await conn.add_listener(self.tables.channel, self._on_notify)
        self._conn = conn

    async def _disconnect(self) -> None:
        conn, self._conn, self._leader = self._conn, None, False
        if conn is not None:
            closed = False
            try:
                with anyio.move_on_after(1):
                    await conn.close()
                    closed = True
            except Exception:
                pass
            if not closed:
                conn.terminate()

    def _on_notify(self, *_: Any) -> None:
        self._notified = True
        self._wake.set()

    # -- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.05
        try:
            while not self._stopping:
                try:
                    if self._conn is None:
                        await self._connect()
                    waited = await self._round()
                except Exception as exc:  # the database failed: reconnect with backoff
                    self._errors += 1
                    logger.warning(
                        "outbox relay of %s: %s (reconnecting in %.2f s)",
                        self.tables.outbox,
                        exc,
                        delay,
                        exc_info=not _connection_error(exc),
                    )
                    await self._disconnect()
                    await self._sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
                if waited is None:  # rows stayed (their route failed for now)
                    await self._sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                else:
                    delay = 0.05
        finally:
            self._stopped.set()

    async def _round(self) -> bool | None:
        """One round: become the leader or wait, send a batch or wait for a notification.

        :return: None if some rows stayed for lack of their route, else True
        """
        conn = self._conn
        if not self._leader:
            self._leader = bool(
                await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    _LOCK_SPACE,
                    self.tables.outbox,
                )
            )
        if self._leader:
            self._notified = False
            self._wake = anyio.Event()
            read, kept = await self._pass(conn)
            if kept:
                return None
            if read == self.batch:
                return True  # more waiting: no pause
            if not self._notified:
                await self._sleep(self.poll_interval)
            return True
        # a standby: notifications are the leader's business; look again after a poll
        with anyio.move_on_after(self.poll_interval):
            await self._stop.wait()
        return True

    async def _sleep(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._wake.wait()

    async def _watch(self) -> None:
        """Count the backlog about once a second, on a connection of its own (a pass
        may wait long for its route, a standby relay does not read the table)."""
        import asyncpg

        conn: Any = None
        try:
            while True:
                try:
                    if conn is None:
                        conn = await asyncpg.connect(
                            self.dsn, timeout=self.start_timeout, server_settings=_APPLICATION
                        )
                    count, age = await conn.fetchrow(self._count)
                    self._backlog, self._oldest = int(count), None if age is None else float(age)
                except Exception as exc:  # counted again once PostgreSQL answers
                    logger.debug("outbox relay: the backlog count failed: %s", exc)
                    if conn is not None:
                        conn.terminate()
                    conn = None
                await anyio.sleep(self.stats_interval)
        finally:
            if conn is not None:
                conn.terminate()

    async def _pass(self, conn: Any) -> tuple[int, int]:
        """Send one batch; delete what was confirmed. :return: (rows read, rows kept)"""
        rows = await conn.fetch(self._select, self.batch)
        if not rows:
            return 0, 0
        codec = self._codec
        assert codec is not None
        self._know_types()
        chains: dict[Any, list[tuple[Any, Any]]] = {}
        for row in rows:
            try:
                envelope = codec.decode(row["body"])
            except WireError as exc:
                await self._bury(
                    conn, row, f"undecodable: {exc}", exc, DeadLetterReason.UNDECODABLE
                )
                continue
            key = row["seq"] if row["key"] is None else (row["type"], row["key"])
            chains.setdefault(key, []).append((row, envelope))
        done: list[int] = []
        refused: list[tuple[Any, Any, EventcoreError]] = []
        todo = iter(chains.values())  # shared by the senders: each takes the next chain
        async with anyio.create_task_group() as tg:
            for _ in range(min(self.concurrency, len(chains))):
                tg.start_soon(self._sender, todo, done, refused)
        for row, envelope, error in refused:
            reason = f"refused: {error}"
            await self._bury(conn, row, reason, error, DeadLetterReason.REJECTED, envelope)
        if done:
            await conn.execute(self._delete, done)
            self._sent += len(done)
        return len(rows), len(rows) - len(done) - len(refused)

    def _know_types(self) -> None:
        """Register the ``@event`` names of the types this process handles or
        configured, so that their rows decode (the others must be registered)."""
        names, bus = self.bus.names, self.bus
        for event_type in (
            *(sub.event_type for sub in bus.subscriptions()),
            *bus.configured_types(),
        ):
            if names.get(event_type) is None and declared_name(event_type) is not None:
                names.resolve(event_type)

    async def _sender(
        self,
        chains: Iterator[list[tuple[Any, Any]]],
        done: list[int],
        refused: list[tuple[Any, Any, EventcoreError]],
    ) -> None:
        """Send chains until none is left; the rows of one chain (one key) in order,
        stopping at the first that stays."""
        for chain in chains:
            for row, envelope in chain:
                outcome = await self._send(row["event_id"], envelope)
                if outcome is _SENT:
                    done.append(row["seq"])
                elif outcome is _KEPT:
                    self._retried += 1
                    break
                else:
                    refused.append((row, envelope, outcome))

    async def _send(self, event_id: str, envelope: Any) -> Any:
        """Send one event to its route: _SENT once confirmed, _KEPT if it must stay,
        or the error that refuses it for good."""
        bus, event = self.bus, envelope.event
        try:
            if bus.transport_of(type(event)) is None:  # in memory: handled here
                with relayed(event, event_id):
                    await bus.publish_and_wait(event)
                return _SENT
            with resending(event_id):  # the broker's deduplication id
                accepted = await bus.publish(event)
        except (QueueFull, PublishTimeout, TransportError, DispatcherClosed) as exc:
            logger.info("outbox relay: %s %s stays: %s", envelope.name, event_id, exc)
            return _KEPT
        except EventcoreError as exc:  # unauthorized, invalid: never sendable
            return exc
        return _SENT if accepted else _KEPT

    async def _bury(
        self,
        conn: Any,
        row: Any,
        reason: str,
        exc: BaseException,
        why: DeadLetterReason,
        envelope: Any = None,
    ) -> None:
        """Move *row* to the dead-letter table and report it (never a stuck relay)."""
        await conn.execute(self._bury_row, row["seq"], reason)
        self._dead += 1
        logger.error("outbox row %s (%s) dead-lettered: %s", row["seq"], row["type"], reason)
        letter = bytes(row["body"]) if envelope is None else envelope.event
        self.bus.report_dead_letter(DeadLetter(letter, why, exc))


def _connection_error(exc: BaseException) -> bool:
    """Whether *exc* says that the connection to PostgreSQL failed (no traceback needed)."""
    import asyncpg

    return isinstance(
        exc,
        (
            OSError,
            DatabaseUnavailable,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # a query on a connection the server ended
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CannotConnectNowError,
        ),
    )
