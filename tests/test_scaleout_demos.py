"""``make demo-nats`` and ``make demo-redis``: two workers share the load behind a FastAPI
producer, and piped output stays legible."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.brokers._servers import NATS_URL, REDIS_URL, require

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    ("module", "name", "url"),
    [
        ("examples.redis_scaleout", "Redis", REDIS_URL),
        ("examples.nats_scaleout", "NATS", NATS_URL),
    ],
)
def test_the_scale_out_demo_piped(module: str, name: str, url: str) -> None:
    parts = urlsplit(url)
    require(name, parts.hostname or "127.0.0.1", parts.port or 0)
    done = subprocess.run(
        [sys.executable, "-m", module, "--seconds", "1.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "EVENTCORE_DEMO_PREFIX": "t" + uuid.uuid4().hex[:8]},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # regression: piped, rich ended the table without a line break, and the summary
    # was glued to its bottom border
    found = re.search(
        r"^(\d+) orders accepted \((\d+) refused.*: (\d+) \+ (\d+) = (\d+)$",
        done.stdout,
        re.MULTILINE,
    )
    assert found, done.stdout[-2000:]
    accepted, _, first, second, handled = map(int, found.groups())
    assert accepted > 0
    assert handled == accepted
    assert first > 0
    assert second > 0  # both workers took a share
