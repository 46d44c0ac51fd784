"""The examples run as users run them: ``python examples/NAME.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("quickstart.py", "B1 handled by ['send_receipt', 'flag_for_review']"),
        ("overflow_policies.py", "stats: accepted=20 dropped=0 evicted=15 refused=0 handled=5"),
        ("delivery_control.py", "'a': [0, 3000, 6000, 9000, 99000]"),
        ("authorization.py", "refused:         'web' may not publish PasswordChanged"),
        ("middleware_and_context.py", "[req-3] welcome mail to grace@example.org (source req-3)"),
    ],
)
def test_example_runs(script: str, expected: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
