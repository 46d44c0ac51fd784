"""Run the fuzz targets under atheris: ``python -m fuzz [--total S | --seconds S] [TARGET ...]``.

Each target runs in a process of its own, its new inputs kept in
``OUT/<target>/corpus`` (the committed seeds in ``fuzz/corpus/<target>`` are read,
never written), a crashing input saved as ``OUT/<target>/crash-*``; a libFuzzer
dictionary of the target's tokens is read from ``fuzz/dicts/<target>.dict``. Writes
``OUT/summary.json`` (executions, coverage, corpus size, crashes per target)
and exits 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .targets import TARGETS

HERE = Path(__file__).parent
ROOT = HERE.parent
_PROGRESS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_EXECUTED = re.compile(r"stat::number_of_executed_units: (\d+)")


@dataclass
class Outcome:
    """What one target's run found."""

    target: str
    seconds: float
    executions: int = 0
    coverage: int = 0
    features: int = 0
    corpus: int = 0
    exit_code: int = 0
    crashes: list[str] = field(default_factory=list)

    @property
    def crashed(self) -> bool:
        """Whether the run ended on a crash (or did not run)."""
        return self.exit_code != 0 or bool(self.crashes)


def run_target(target: str, seconds: float, out: Path, max_len: int = 4096) -> Outcome:
    """Fuzz *target* for *seconds*; its log goes to ``OUT/<target>/fuzz.log``."""
    folder = out / target
    corpus = folder / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    log = folder / "fuzz.log"
    argv = [
        sys.executable, "-m", "fuzz._one", target,
        f"-max_total_time={max(1, round(seconds))}", "-print_final_stats=1",
        f"-artifact_prefix={folder}/", "-timeout=20", "-rss_limit_mb=3072",
        f"-max_len={max_len}", str(corpus), str(HERE / "corpus" / target),
    ]  # fmt: skip
    words = HERE / "dicts" / f"{target}.dict"
    if words.exists():
        argv.insert(5, f"-dict={words}")
    started = time.monotonic()
    with log.open("wb") as sink:
        code = subprocess.call(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    outcome = Outcome(target, round(time.monotonic() - started, 1), exit_code=code)
    text = log.read_text(errors="replace")
    progress = _PROGRESS.findall(text)
    if progress:
        last = progress[-1]
        outcome.coverage, outcome.features, outcome.corpus = map(int, last[1:])
        outcome.executions = int(last[0])
    executed = _EXECUTED.findall(text)
    if executed:
        outcome.executions = int(executed[-1])
    outcome.crashes = sorted(
        str(p) for kind in ("crash", "timeout", "oom", "leak") for p in folder.glob(f"{kind}-*")
    )
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Run the chosen targets one after the other; print and write the summary."""
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], metavar="TARGET")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--total", type=float, help="seconds for all targets together")
    budget.add_argument("--seconds", type=float, help="seconds per target")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    targets = args.targets or list(TARGETS)
    per_target = args.seconds or (args.total or 600.0) / len(targets)
    outcomes = []
    for target in targets:
        outcome = run_target(target, per_target, args.out)
        outcomes.append(outcome)
        state = f"CRASH {outcome.crashes or outcome.exit_code}" if outcome.crashed else "ok"
        print(
            f"{target:18} {outcome.executions:>9} execs  cov {outcome.coverage:>5}  "
            f"ft {outcome.features:>6}  corpus {outcome.corpus:>5}  {outcome.seconds:>6} s  "
            + state,
            flush=True,
        )
    summary = args.out / "summary.json"
    summary.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    print(f"summary: {summary}")
    return 1 if any(o.crashed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
