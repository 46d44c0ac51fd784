"""The soak: ``python -m soak --minutes N [--backends memory,nats,redis] [--out DIR]``.

Runs one service process per backend at once (NATS and Redis on private servers,
on free ports, in temporary folders), with a worker process beside each broker's
service that is SIGKILLed and restarted on a schedule, and the broker itself
restarted. Then judges the samples (``verdict``), writes ``report.md`` /
``report.json`` and ``soak.png`` into ``--out``, and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .verdict import MEMORY, TOLERANCES, TRIMMED, judge

COUNTERS = ("accepted", "handled", "failed", "dropped", "refused", "evicted", "abandoned")
HERE = Path(__file__).parent
ROOT = HERE.parent
#: seconds kept at the end without faults nor traffic, for the ledger to settle
SETTLE = 30.0
#: seconds between a worker's SIGKILL and its restart; between worker kills
WORKER_DOWN, WORKER_EVERY = 3.0, 30.0
#: seconds between broker restarts (the first at half of it)
BROKER_EVERY = 60.0
#: trimmed RSS samples a run needs for the memory verdict to be on them
MIN_TRIMMED = 5


@dataclass
class Backend:
    """One backend's processes and what became of them."""

    name: str
    out: Path
    server: Any = None
    url: str = ""
    service: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    workers_started: int = 0
    faults: list[tuple[float, str]] = field(default_factory=list)

    def spawn(self, *extra: str, log: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "soak.service", "--backend", self.name, *extra]
        if self.url:
            argv += ["--url", self.url, "--prefix", "soak"]
        with (self.out / log).open("ab") as sink:
            return subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)

    def start_worker(self, at: float) -> None:
        self.workers_started += 1
        journal = self.out / f"worker-{self.workers_started}.log"
        self.worker = self.spawn("--worker", "--out", str(journal), log="worker.out")
        self.faults.append((at, "worker started"))

    def kill_worker(self, at: float) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker.wait(10)
            self.worker = None
            self.faults.append((at, "worker killed"))


def _servers_module() -> Any:
    sys.path.insert(0, str(ROOT))
    from tests.brokers import _servers

    return _servers


def start_backend(name: str, out: Path, scratch: Path, args: argparse.Namespace) -> Backend:
    """Start *name*'s broker (if any) and its service process."""
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    backend = Backend(name, folder)
    if name != "memory":
        servers = _servers_module()
        program = "nats-server" if name == "nats" else "redis-server"
        if shutil.which(program) is None:
            raise SystemExit(f"{program} is not on PATH: the {name} soak needs a private server")
        make = servers.private_nats if name == "nats" else servers.private_redis
        (scratch / name).mkdir()
        backend.server = make(scratch / name)
        backend.server.start()
        scheme = "nats" if name == "nats" else "redis"
        backend.url = f"{scheme}://127.0.0.1:{backend.server.port}"
        backend.start_worker(0.0)
    rate = "1.0" if name == "memory" else "0.3"
    backend.service = backend.spawn(
        "--out", str(folder), "--feed", str(args.feed), "--settle", str(SETTLE - 5),
        "--rate", rate, "--life", str(args.life), "--trim-every", str(args.trim_every),
        log="service.log",
    )  # fmt: skip
    return backend


def run_faults(backends: list[Backend], feed: float) -> None:
    """Kill and restart workers and restart brokers on schedule, until the services end."""
    started = time.monotonic()
    next_kill, next_restart = WORKER_EVERY / 2, BROKER_EVERY / 2
    quiet = feed - 10  # no fault near the end: the ledger settles
    while any(b.service is not None and b.service.poll() is None for b in backends):
        now = time.monotonic() - started
        brokers = [b for b in backends if b.server is not None]
        if now >= next_kill and now < quiet:
            for backend in brokers:
                backend.kill_worker(now)
            next_kill += WORKER_EVERY
        if now >= next_kill - WORKER_EVERY + WORKER_DOWN:
            for backend in brokers:
                if backend.worker is None:
                    backend.start_worker(now)
        if now >= next_restart and now < quiet:
            for backend in brokers:
                backend.server.restart()
                backend.faults.append((now, "broker restarted"))
            next_restart += BROKER_EVERY
        time.sleep(0.2)


def load(path: Path) -> list[dict[str, Any]]:
    """The samples of one service."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def judge_backend(backend: Backend, feed: float) -> dict[str, Any]:
    """The verdict on one backend: growth per figure, broken identities, the ledger."""
    samples = load(backend.out / "samples.jsonl")
    during = [s for s in samples if s["t"] <= feed]
    failures: list[str] = []
    growth = []
    lines = []
    # the memory verdict is on the RSS after malloc_trim when the service trimmed
    # (soak/trim.py says why); the untrimmed RSS is then judged for information only
    trimmed = sum(1 for s in during if TRIMMED in s) >= MIN_TRIMMED
    if len(during) >= 20:
        for figure in TOLERANCES:
            if figure == TRIMMED and not trimmed:
                continue
            series = [s for s in during if figure in s]
            times = [s["t"] for s in series]
            verdict = judge(figure, times, [float(s[figure]) for s in series])
            growth.append(verdict)
            if figure == MEMORY and trimmed:
                lines.append(f"{verdict.line()}  (not judged: {TRIMMED} is)")
                continue
            lines.append(verdict.line())
            if verdict.grows:
                failures.append(f"{figure} grows: {verdict.line()}")
    else:
        failures.append(f"only {len(during)} samples")
    broken = [b for s in samples for b in s["broken"]]
    if broken:
        failures.append(f"{len(broken)} broken counter identities, first: {broken[0]}")
    ledger_path = backend.out / "ledger.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else None
    if ledger is None:
        failures.append("the service wrote no ledger (it died?): see service.log")
    elif ledger["lost"]:
        failures.append(f"{ledger['lost']} accepted events lost: {ledger['lost_examples'][:5]}")
    code = backend.service.returncode if backend.service is not None else None
    if code:
        failures.append(f"the service exited with {code}: see service.log")
    last = samples[-1] if samples else {}
    return {
        "backend": backend.name,
        "samples": len(samples),
        "ledger": ledger,
        "counters": {k: last.get(k) for k in COUNTERS},
        "lives": last.get("life"),
        "faults": backend.faults,
        "growth": [asdict(g) for g in growth],
        "growth_lines": lines,
        "failures": failures,
    }


def write_report(out: Path, results: list[dict[str, Any]], minutes: float) -> str:
    """report.json and report.md; the Markdown returned."""
    (out / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Soak: {minutes:g} minutes", ""]
    for r in results:
        state = "FAIL" if r["failures"] else "pass"
        lines += [f"## {r['backend']}: {state}", ""]
        lines.append(f"- samples {r['samples']}, dispatcher lives {r['lives']}")
        lines.append(f"- counters at the end: {r['counters']}")
        lines.append(f"- ledger: {r['ledger']}")
        kinds: dict[str, int] = {}
        for _, what in r["faults"]:
            kinds[what] = kinds.get(what, 0) + 1
        lines.append(f"- process faults: {kinds or 'none'} (plus each life's own)")
        lines += ["", "```", *r["growth_lines"], "```", ""]
        lines += [f"- FAILURE: {f}" for f in r["failures"]]
        lines.append("")
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def run(args: argparse.Namespace, names: list[str]) -> list[Backend]:
    """Start every backend, inject the faults until the services end, stop everything."""
    backends: list[Backend] = []
    with tempfile.TemporaryDirectory(prefix="eventcore-soak-") as scratch:
        try:
            backends.extend(start_backend(n, args.out, Path(scratch), args) for n in names)
            run_faults(backends, args.feed)
        finally:
            for backend in backends:
                if backend.service is not None and backend.service.poll() is None:
                    backend.service.kill()
                    backend.service.wait(10)
                backend.kill_worker(-1)
                if backend.server is not None:
                    backend.server.stop(kill=True)
    return backends


def finished(out: Path, names: list[str]) -> list[Backend]:
    """The backends of a run already in *out* (``--rejudge``), with the faults it reported."""
    report = out / "report.json"
    faults = (
        {r["backend"]: r["faults"] for r in json.loads(report.read_text())}
        if report.exists()
        else {}
    )
    return [
        Backend(name, out / name, faults=[tuple(f) for f in faults.get(name, [])])
        for name in names
        if (out / name).is_dir()
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 when every backend passed."""
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--backends", default="memory,nats,redis")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--life", type=float, default=40.0, help="seconds between restarts")
    parser.add_argument("--rejudge", action="store_true", help="judge the run in --out again")
    parser.add_argument(
        "--trim-every",
        type=int,
        default=10,
        help="samples between two malloc_trim(0) in a service, RSS read before and after "
        "(0: never; the verdict is then on the untrimmed RSS; see soak/trim.py)",
    )
    args = parser.parse_args(argv)
    args.feed = max(30.0, args.minutes * 60 - SETTLE)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.backends.split(",") if n]
    backends = finished(args.out, names) if args.rejudge else run(args, names)
    results = [judge_backend(b, args.feed) for b in backends]
    print(write_report(args.out, results, args.minutes))
    try:
        from .plot import plot

        print(f"plot: {plot(args.out, [b.name for b in backends], args.feed)}")
    except ImportError as exc:  # pragma: no cover - matplotlib is in the soak group
        print(f"no plot: {exc}")
    failed = [r["backend"] for r in results if r["failures"]]
    print(f"soak {'FAILED: ' + ', '.join(failed) if failed else 'passed'} (report: {args.out})")
    return 1 if failed else 0


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the brokers and processes are stopped on the way out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(main())
