"""The public API is exactly what ``__all__`` says, and every name is documented."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import eventcore

TYPE_ALIASES = {"Principal", "PublishMiddleware", "CallNext"}


def test_all_names_exist_and_come_from_private_modules() -> None:
    for name in eventcore.__all__:
        obj = getattr(eventcore, name)
        if name not in TYPE_ALIASES and (isinstance(obj, type) or inspect.isfunction(obj)):
            assert obj.__module__.startswith("eventcore._"), name
            assert obj.__doc__, f"{name} has no docstring"


def test_no_public_name_is_left_out_of_all() -> None:
    # submodules (eventcore.testing, eventcore.integrations) are not re-exported names
    public = {
        n for n, v in vars(eventcore).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public == set(eventcore.__all__) - {"__version__"}


def test_publish_options_are_keyword_only_for_type_checkers(tmp_path: Path) -> None:
    # the implementation takes them positionally too (cheaper calls on CPython 3.11,
    # bench/PROFILE.md); the types users see must not
    code = tmp_path / "positional.py"
    code.write_text(
        "from eventcore import Dispatcher\n"
        "async def main(bus: Dispatcher) -> None:\n"
        "    await bus.publish(object(), 5)\n"
        "    await bus.publish_and_wait(object(), 5)\n"
        "    bus.publish_nowait(object(), 'someone')\n"
        "    await bus.publish(object(), timeout=5)\n"
    )
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--config-file", str(root / "pyproject.toml")),
            *("--cache-dir", str(root / ".mypy_cache"), str(code)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["3", "4", "5"], done.stdout
    assert all("Too many positional arguments" in line for line in errors), done.stdout
