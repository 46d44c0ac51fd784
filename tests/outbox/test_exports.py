"""eventcore.outbox's public names are what ``__all__`` says, each documented; the
package imports without SQLAlchemy or asyncpg until they are used."""

from __future__ import annotations

import inspect
import subprocess
import sys

import eventcore.outbox


def test_all_names_exist_and_are_documented() -> None:
    public = {
        n
        for n, v in vars(eventcore.outbox).items()
        if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public == set(eventcore.outbox.__all__)
    for name in eventcore.outbox.__all__:
        obj = getattr(eventcore.outbox, name)
        assert obj.__module__.startswith("eventcore.outbox._"), name
        assert obj.__doc__, f"{name} has no docstring"


def test_the_schema_command_needs_neither_sqlalchemy_nor_asyncpg() -> None:
    code = (
        "import sys; sys.modules['sqlalchemy'] = None; sys.modules['asyncpg'] = None\n"
        "from eventcore.__main__ import main; main(['sql', 'schema'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE IF NOT EXISTS eventcore_outbox" in done.stdout


def test_the_core_does_not_import_the_outbox() -> None:
    code = "import eventcore, sys; print('eventcore.outbox' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
