"""``import eventcore`` needs neither msgspec nor pydantic; eventcore.wire says what it needs."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_eventcore_and_its_names_load_no_codec_library() -> None:
    out = _run(
        "import sys, eventcore, eventcore.wire\n"
        "bus = eventcore.Dispatcher()\n"
        "from dataclasses import dataclass\n"
        "@eventcore.wire.event('orders.placed')\n"
        "@dataclass\n"
        "class E:\n"
        "    x: int\n"
        "bus.register(E)\n"
        "print(sorted(m for m in ('msgspec', 'pydantic', 'jsonschema', 'pickle_never')"
        " if m in sys.modules))\n"
    )
    assert out == "[]"


def test_without_msgspec_the_codec_says_how_to_install_it() -> None:
    out = _run(
        "import sys\n"
        "sys.modules['msgspec'] = None\n"
        "import eventcore.wire as w\n"
        "w.EventNames().register(int, name='x')\n"
        "try:\n"
        "    w.Codec\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert "pip install 'eventcore-py[wire]'" in out
