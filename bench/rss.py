"""One overload run in this (fresh) process: peak RSS growth while a contender is flooded.

``python -m bench.rss CONTENDER LOOP N`` prints one JSON record. The baseline is
the resident set after a short warm-up run and a collection; a thread samples
the resident set every 2 ms during the run, and the growth is its peak minus the
baseline (``ru_maxrss``, the process's lifetime peak, is recorded beside it).
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import threading

import psutil

from .contenders import BY_NAME
from .scenarios import run_once, scenarios

MB = 1024 * 1024


class Sampler(threading.Thread):
    """Samples this process's resident set size until stopped; keeps the peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        """Sample every 2 ms."""
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, self.process.memory_info().rss)


def main(argv: list[str]) -> None:
    """Run one contender's overload scenario and print its record as JSON."""
    name, backend, n_events = argv[0], argv[1], int(argv[2])
    contender = BY_NAME[name]()
    spec = next(s for s in scenarios(quick=False) if s.scenario == "overload")
    spec = type(spec)(spec.scenario, spec.title, n_events, body=spec.body)
    run_once(contender, spec.scaled(2_000 / n_events), backend, timeout=60)  # warm-up
    gc.collect()
    before = psutil.Process().memory_info().rss
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = Sampler()
    sampler.start()
    record = run_once(contender, spec, backend, timeout=1200)
    sampler.stop.set()
    sampler.join()
    peak = max(sampler.peak, psutil.Process().memory_info().rss)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    record.update(
        rss_before_mb=before / MB,
        rss_peak_mb=peak / MB,
        rss_growth_mb=max(0, peak - before) / MB,
        maxrss_growth_mb=max(0, maxrss - maxrss_before) / MB,
    )
    print(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
