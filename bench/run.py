"""``python -m bench.run [--quick]``: every scenario, then the table, the JSON and the plot.

The whole run writes ``bench/RESULTS.md`` and ``bench/results.png`` (committed)
and ``bench/out/run-*.json`` (not committed); ``--quick`` writes only into
``bench/out/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import report
from .scenarios import run_overload, run_timed, scenarios, spec_dict

HERE = Path(__file__).resolve().parent


#: the sections of RESULTS.md that the transports' benches (make bench-nats...) write by hand
TRANSPORT_SECTIONS = (
    "## NATS JetStream transport",
    "## Redis Streams transport",
    "## RabbitMQ transport",
)


def transport_sections(results: Path) -> str:
    """The broker transports' sections of *results*, kept when this run rewrites it."""
    if not results.exists():
        return ""
    text = results.read_text()
    starts = [text.find(f"\n{heading}") for heading in TRANSPORT_SECTIONS]
    found = [start for start in starts if start >= 0]
    return "\n" + text[min(found) :].lstrip("\n") if found else ""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; return the exit status (1 when eventcore lost or failed a run)."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a twentieth of the events, 0.5 s latency runs (< 1 min)",
    )
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 5, quick 3)")
    parser.add_argument("--only", nargs="*", default=(), help="scenario names to run")
    parser.add_argument("--out", type=Path, help="where RESULTS.md and the plot go")
    args = parser.parse_args(argv)

    rounds = args.rounds or (3 if args.quick else 5)
    specs = scenarios(args.quick)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    results_dir: Path = args.out or (out_dir if args.quick or args.only else HERE)
    results_dir.mkdir(parents=True, exist_ok=True)
    command = "make bench-quick" if args.quick else "make bench"
    if args.only or args.rounds:
        command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])

    started = time.time()

    def log(line: str) -> None:
        print(f"{time.time() - started:6.1f}s  {line}", flush=True)

    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "rounds": rounds,
        "quick": args.quick,
        "machine": report.machine(),
        "load_at_start": list(os.getloadavg()),
    }
    budget = 0.08 if args.quick else 0.35
    records = list(run_timed(specs, rounds, budget, log, args.only, args.quick))
    overload = next(s for s in specs if s.scenario == "overload")
    if not args.only or "overload" in args.only:
        records += run_overload(overload, 600.0, log)
    meta["minutes"] = (time.time() - started) / 60
    meta["load_average"] = [meta.pop("load_at_start"), list(os.getloadavg())]

    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    data = {"meta": meta, "specs": [spec_dict(s) for s in specs], "records": records}
    for name in (f"run-{stamp}.json", "latest.json"):
        (out_dir / name).write_text(json.dumps(data, indent=1))
    ran = [s for s in specs if not args.only or s.scenario in args.only]
    png = results_dir / "results.png"
    report.plot(records, ran, png)
    text = report.markdown(records, ran, meta, command, png.name)
    results = results_dir / "RESULTS.md"
    results.write_text(text + transport_sections(results))
    print()
    print(text)
    print(f"wrote {results_dir / 'RESULTS.md'}, {png}, {out_dir / f'run-{stamp}.json'}")
    failed = [r for r in records if r["contender"] == "eventcore" and r.get("ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
