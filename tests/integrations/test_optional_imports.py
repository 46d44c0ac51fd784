"""``import eventcore`` (and eventcore.testing) needs none of the optional extras."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = ("fastapi", "starlette", "aiohttp", "prometheus_client", "opentelemetry")


def test_import_eventcore_imports_no_optional_dependency() -> None:
    code = (
        "import sys, eventcore, eventcore.testing, eventcore.integrations, "
        "eventcore.integrations.logging\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r})\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_import_eventcore_works_when_the_extras_are_missing() -> None:
    # Make every optional package unimportable, as on an install without extras.
    code = (
        "import sys\n"
        f"for name in {OPTIONAL!r}:\n"
        "    sys.modules[name] = None\n"
        "import eventcore, eventcore.testing, eventcore.integrations.logging\n"
        "try:\n"
        "    import eventcore.integrations.fastapi\n"
        "except ImportError as exc:\n"
        "    print('ImportError', exc.name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ImportError starlette.requests"
