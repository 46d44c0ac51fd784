"""The fuzz targets (``fuzz/``): every committed seed replays clean, and a short run of
each target under atheris finds nothing (``make fuzz`` is the long run)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fuzz.__main__ import run_target
from fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
#: seconds per target in the bounded run (targets side by side): the long run is `make fuzz`
BOUNDED_SECONDS = 2


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_replays_without_a_crash(target: str) -> None:
    seeds = sorted((CORPUS / target).iterdir())
    assert seeds, f"no seeds for {target}: run python -m fuzz.seeds"
    for seed in seeds:
        TARGETS[target](seed.read_bytes())


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (wheels for Linux x86-64 only): no bounded fuzz run",
)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_bounded_fuzz_run_of_the_target_finds_no_crash(target: str, tmp_path: Path) -> None:
    # one process per target; pytest-xdist's workers run the targets side by side
    outcome = run_target(target, BOUNDED_SECONDS, tmp_path)
    log = (tmp_path / outcome.target / "fuzz.log").read_text(errors="replace")
    assert not outcome.crashed, f"{outcome.target} crashed: {outcome.crashes}\n{log[-4000:]}"
    assert outcome.executions > 0, f"{outcome.target} ran nothing\n{log[-2000:]}"
    print(json.dumps({outcome.target: outcome.executions}), file=sys.stderr)
