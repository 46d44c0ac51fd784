"""The crash checker of promise 15 (effectively once), against a private PostgreSQL
and a private NATS server: an app writes orders and publishes each in the same
transaction, with a relay; two consumers charge each order through an idempotent
handler. Processes are SIGKILLed at random points (the app before a commit, after
a commit, at any moment of its relay; a consumer after its commit before its ack,
or at any moment) and PostgreSQL is crashed and restarted mid-run. Afterwards every
committed order has exactly one charge, no charge lacks its order, and the outbox is
empty. Negative controls show that the checker catches double charges (a handler
that is not idempotent) and lost events (a dual write: publish after the commit)."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eventcore.outbox import schema_ddl
from tests.brokers._servers import PrivateServer, private_nats

from .support import PrivatePostgres, private_directory

#: under pytest-xdist the module's tests share one worker, so one pair of private
#: servers starts
pytestmark = pytest.mark.xdist_group("checker-private-servers")

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Verdict:
    orders: int = 0
    charges: int = 0
    doubled: int = 0
    missing: int = 0
    phantom: int = 0
    outbox_left: int = 0
    kills: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (self.doubled or self.missing or self.phantom or self.outbox_left)


class Servers:
    """A private PostgreSQL and a private NATS server, shared by the module's runs
    (each run has its own database and stream prefix)."""

    def __init__(self, pg: PrivatePostgres, nats: PrivateServer) -> None:
        self.pg, self.nats = pg, nats


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    directory = private_directory()
    nats_dir = Path(tempfile.mkdtemp(prefix="eventcore-nats-"))
    pg = PrivatePostgres(directory)
    nats = private_nats(nats_dir)
    try:
        pg.init()
        pg.start()
        nats.start()
        yield Servers(pg, nats)
    finally:
        nats.stop(kill=True)
        pg.stop()
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(nats_dir, ignore_errors=True)


def query(dsn: str, sql: str) -> Any:
    """Run *sql* on a connection of its own: the first value of a SELECT."""
    import asyncio

    import asyncpg

    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            if sql.lstrip().upper().startswith("SELECT"):
                return await conn.fetchval(sql)
            return await conn.execute(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


class Cluster:
    """The processes of one checker run, on its own database and stream prefix."""

    def __init__(self, servers: Servers, name: str, directory: Path) -> None:
        self.servers, self.directory = servers, directory
        self.pg = servers.pg
        self.dsn = servers.pg.dsn.rsplit("/", 1)[0] + f"/{name}"
        self.prefix = name
        self.nats_url = f"nats://127.0.0.1:{servers.nats.port}"
        self.stop_file = directory / "stop"
        self.processes: dict[str, subprocess.Popen[str]] = {}
        self.started: dict[str, float] = {}
        self.kills: Counter[str] = Counter()
        self.rng = random.Random(0)  # the same kill schedule on every run

    def count(self, sql: str) -> int:
        return int(query(self.dsn, sql))

    def spawn(self, name: str, *options: str) -> None:
        """Start (again) the process *name* (``app``, ``consumer1``, ...)."""
        role = "app" if name == "app" else "consumer"
        argv = [
            sys.executable, "-m", "tests.outbox.checker_worker", role,
            "--dsn", self.dsn, "--nats", self.nats_url, "--prefix", self.prefix,
            "--stop", str(self.stop_file), *options,
        ]  # fmt: skip
        with (self.directory / f"{name}.log").open("a") as log:
            self.processes[name] = subprocess.Popen(
                argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        self.started[name] = time.monotonic()

    def age(self, name: str) -> float:
        """Seconds since *name* was (re)started."""
        return time.monotonic() - self.started[name]

    def kill(self, name: str, *, chaos: bool = False) -> None:
        """SIGKILL *name* (counted as chaos when it is part of the run)."""
        process = self.processes[name]
        if process.poll() is None:
            process.kill()
            if chaos:
                self.kills[f"SIGKILL {name.rstrip('0123456789')}"] += 1
        process.wait()

    def ended(self) -> list[str]:
        """Names of the processes that ended (they killed themselves)."""
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def self_kills(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for log in self.directory.glob("*.log"):
            for line in log.read_text().splitlines():
                if line.startswith("died "):
                    found[f"self-kill {log.stem.rstrip('0123456789')} {line[5:]}"] += 1
        return found

    def close(self) -> None:
        for name in list(self.processes):
            self.kill(name)


@contextmanager
def new_cluster(servers: Servers) -> Iterator[Cluster]:
    """A run of its own: a new database with the tables, a new stream prefix."""
    name = f"run{uuid.uuid4().hex[:10]}"
    directory = Path(tempfile.mkdtemp(prefix="eventcore-checker-"))
    query(servers.pg.dsn, f"CREATE DATABASE {name}")
    run = Cluster(servers, name, directory)
    try:
        query(
            run.dsn,
            schema_ddl()
            + "CREATE TABLE orders (id text PRIMARY KEY);"
            + "CREATE TABLE charges (order_id text NOT NULL);",  # no key: doubles show
        )
        yield run
    finally:
        run.close()
        shutil.rmtree(directory, ignore_errors=True)


def committed_orders(cluster: Cluster) -> int:
    """The orders committed so far (0 while PostgreSQL does not answer)."""
    import asyncpg

    try:
        return cluster.count("SELECT count(*) FROM orders")
    except (OSError, asyncpg.PostgresError):
        return 0


#: where the app kills itself, in turn at each of its starts ("": it is killed from
#: outside, at a random moment, usually while its relay sends)
ALL_DEATHS = ("before-commit", "after-commit", "")


@dataclass
class Plan:
    """What one run does: the modes, the app's deaths in turn, the chaos, and the
    self-kills that must have happened before it stops (within ``limit`` seconds)."""

    app_mode: str
    consumer_mode: str
    seconds: float
    chaos: bool
    deaths: tuple[str, ...] = ALL_DEATHS
    needed: tuple[str, ...] = ()
    limit: float = 60.0
    #: orders the app must have committed before the run stops (on a busy machine
    #: ``seconds`` alone committed too few to exercise the crashes)
    orders: int = 0


def app_options(cluster: Cluster, plan: Plan, start: int) -> list[str]:
    where = plan.deaths[start % len(plan.deaths)]
    if not where:
        return ["--mode", plan.app_mode]
    die_at = str(cluster.rng.randint(3, 20))
    return ["--mode", plan.app_mode, "--die-where", where, "--die-at", die_at]


def consumer_options(cluster: Cluster, plan: Plan) -> list[str]:
    return ["--mode", plan.consumer_mode, "--die-at", str(cluster.rng.randint(10, 150))]


def run_checker(cluster: Cluster, plan: Plan) -> Verdict:
    rng = cluster.rng
    starts = 0
    cluster.spawn("app", *app_options(cluster, plan, starts))
    for name in ("consumer1", "consumer2"):
        cluster.spawn(name, *consumer_options(cluster, plan))
    restarted_pg = not plan.chaos
    begun = time.monotonic()

    def done() -> bool:
        elapsed = time.monotonic() - begun
        if elapsed > plan.limit:
            return True
        kills = cluster.self_kills() + cluster.kills
        if not (elapsed > plan.seconds and restarted_pg and all(kills[k] for k in plan.needed)):
            return False
        return not plan.orders or committed_orders(cluster) > plan.orders

    while not done():
        time.sleep(rng.uniform(0.5, 1.5))
        victims = cluster.ended()  # killed themselves
        if not restarted_pg and time.monotonic() - begun > plan.seconds / 2:
            cluster.pg.crash()  # PostgreSQL crashes mid-run, and comes back
            cluster.kills["PostgreSQL crash + restart"] += 1
            time.sleep(0.5)
            cluster.pg.start()
            restarted_pg = True
        elif plan.chaos:
            victim = rng.choice(["app", "consumer1", "consumer2"])
            dies_itself = victim == "app" and plan.deaths[starts % len(plan.deaths)]
            # only a process that has had time to start (imports take a while here)
            if not dies_itself and cluster.age(victim) > 1.5:
                cluster.kill(victim, chaos=True)
                victims.append(victim)
        for name in dict.fromkeys(victims):
            if name == "app":
                starts += 1
                cluster.spawn(name, *app_options(cluster, plan, starts))
            else:
                cluster.spawn(name, *consumer_options(cluster, plan))
    # quiesce: no more writes or kills; relay and consume what is left
    cluster.stop_file.touch()
    cluster.close()
    for name in ("app", "consumer1", "consumer2"):
        cluster.spawn(name, "--mode", plan.app_mode if name == "app" else plan.consumer_mode)
    # settled: the outbox empty and the figures still, briefly if every order has a
    # charge, else for 4 s (a control that lost events never catches up)
    last: Any = None
    still = 0
    settle = time.monotonic() + 30
    while time.monotonic() < settle:
        figures = (
            cluster.count("SELECT count(*) FROM eventcore_outbox"),
            cluster.count("SELECT count(*) FROM charges"),
            cluster.count("SELECT count(*) FROM orders"),
        )
        still = still + 1 if figures == last else 0
        if figures[0] == 0 and (still >= 8 or (still >= 1 and figures[1] >= figures[2])):
            break
        last = figures
        time.sleep(0.5)
    cluster.close()
    verdict = Verdict(kills=cluster.kills + cluster.self_kills())
    verdict.orders = cluster.count("SELECT count(*) FROM orders")
    verdict.charges = cluster.count("SELECT count(*) FROM charges")
    verdict.doubled = cluster.count(
        "SELECT count(*) FROM (SELECT order_id FROM charges GROUP BY order_id "
        "HAVING count(*) > 1) d"
    )
    verdict.missing = cluster.count(
        "SELECT count(*) FROM orders o WHERE NOT EXISTS "
        "(SELECT 1 FROM charges c WHERE c.order_id = o.id)"
    )
    verdict.phantom = cluster.count(
        "SELECT count(*) FROM charges c WHERE NOT EXISTS "
        "(SELECT 1 FROM orders o WHERE o.id = c.order_id)"
    )
    verdict.outbox_left = cluster.count("SELECT count(*) FROM eventcore_outbox")
    print(f"\n{plan.app_mode}/{plan.consumer_mode}: {verdict}")
    return verdict


def test_each_committed_order_is_charged_exactly_once_across_crashes(servers: Servers) -> None:
    with new_cluster(servers) as cluster:
        needed = (
            "self-kill app before-commit",
            "self-kill app after-commit",
            "self-kill consumer after-commit-before-ack",
            "SIGKILL app",
            "SIGKILL consumer",
        )
        plan = Plan("outbox", "inbox", 16, chaos=True, needed=needed, orders=100)
        verdict = run_checker(cluster, plan)
    assert verdict.orders > 100
    assert verdict.kills["PostgreSQL crash + restart"] == 1
    assert verdict.kills["SIGKILL app"] >= 1
    assert verdict.kills["SIGKILL consumer"] >= 1
    assert verdict.kills["self-kill app before-commit"] >= 1
    assert verdict.kills["self-kill app after-commit"] >= 1
    assert verdict.kills["self-kill consumer after-commit-before-ack"] >= 1
    assert verdict.ok, verdict


def test_negative_controls_the_checker_sees_double_charges_and_lost_events(
    servers: Servers,
) -> None:
    """Two runs side by side: consumers without the inbox (a kill between commit and
    ack charges twice), and an app that publishes after its commit (a kill between
    the two loses the event)."""

    def control(plan: Plan) -> Verdict:
        with new_cluster(servers) as cluster:
            return run_checker(cluster, plan)

    with ThreadPoolExecutor(2) as pool:
        needed = ("self-kill consumer after-commit-before-ack",)
        plain = pool.submit(control, Plan("outbox", "plain", 5, False, ("",), needed))
        needed = ("self-kill app after-commit",)
        dual = pool.submit(control, Plan("dual", "inbox", 5, False, ("after-commit",), needed))
        no_inbox, dual_write = plain.result(), dual.result()
    assert no_inbox.kills["self-kill consumer after-commit-before-ack"] > 0
    assert no_inbox.doubled > 0
    assert not no_inbox.ok
    assert dual_write.kills["self-kill app after-commit"] > 0
    assert dual_write.missing > 0
    assert not dual_write.ok
