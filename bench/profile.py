"""``python -m bench.profile``: cProfile of eventcore's hot path, per scenario.

Profiles eventcore alone on asyncio for the 1-type, fan-out-10 and 10,000-types
scenarios and writes ``bench/out/profile-SCENARIO.txt``: the functions by own
time, with the cost per published event (cProfile inflates every call about
equally, so read the shares, not the absolute figures).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
from pathlib import Path

from .contenders import Eventcore
from .scenarios import run_once
from .workloads import Spec

OUT = Path(__file__).resolve().parent / "out"
SPECS = (
    Spec("1type", "throughput: 1 type, 1 handler", 200_000),
    Spec("fanout10", "fan-out: 10 handlers", 40_000, n_handlers=10),
    Spec("types10000", "10,000 types round-robin", 20_000, n_types=10_000),
)


def main(argv: list[str]) -> None:
    """Profile each scenario (or those named in *argv*) and write the reports."""
    OUT.mkdir(exist_ok=True)
    for spec in SPECS:
        if argv and spec.scenario not in argv:
            continue
        plain = run_once(Eventcore(), spec, "asyncio", 120.0)
        profiler = cProfile.Profile()
        profiler.enable()
        profiled = run_once(Eventcore(), spec, "asyncio", 600.0)
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(25)
        head = (
            f"# {spec.title}: eventcore on asyncio, {spec.n_events:,} events\n"
            f"# unprofiled: {plain['events_per_s']:,.0f} events/s "
            f"({1e9 / plain['events_per_s']:,.0f} ns per event); "
            f"profiled run ok={profiled['ok']}\n"
            f"# per event, divide tottime by {spec.n_events:,}\n"
        )
        path = OUT / f"profile-{spec.scenario}.txt"
        path.write_text(head + text.getvalue())
        print(head + "\n".join(text.getvalue().splitlines()[:45]))


if __name__ == "__main__":
    main(sys.argv[1:])
