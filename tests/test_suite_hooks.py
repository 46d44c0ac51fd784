"""The suite's own hooks (tests/conftest.py) also hold when it runs on pytest-xdist's
workers, as ``make test`` runs it: a thread a test leaves running fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LEAVES_A_THREAD = """
import threading
import time


def test_leaves_a_thread() -> None:
    threading.Thread(target=time.sleep, args=(6.5,), name="left-behind").start()
"""


@pytest.mark.parametrize(
    "options", [["-n", "2"], ["-p", "no:xdist"]], ids=["xdist-workers", "one-process"]
)
def test_a_thread_left_running_fails_the_run(tmp_path: Path, options: list[str]) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_leaves.py").write_text(LEAVES_A_THREAD)
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, *options, "-q", "test_leaves.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "1 passed" in output, output
    assert "1 non-daemon thread(s) still running after the tests" in output, output
    assert "left-behind" in output, output
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, output
