"""examples/outbox_fastapi.py runs as pasted: one charge per committed order, also
when its worker dies between a charge's commit and its acknowledgement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests.brokers._servers import NATS_URL, require

ROOT = Path(__file__).resolve().parents[2]


def test_the_fastapi_example_charges_each_committed_order_once(dsn: str) -> None:
    parts = urlsplit(NATS_URL)
    require("NATS", parts.hostname or "127.0.0.1", parts.port or 4222)
    done = subprocess.run(
        [sys.executable, "-m", "examples.outbox_fastapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "POST /orders A2 total=-1.0: 422" in done.stdout
    assert "A3 delivered again: already charged, acked" in done.stdout
    assert "orders committed: 5, charges: 5, orders charged: 5" in done.stdout
