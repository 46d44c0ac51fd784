"""No file of the project names a path of the machine it was written on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

#: files allowed to name such paths: the lead's notes on planted faults, and this test
EXEMPT = {"tests/contract/PLANTED.md", "tests/test_no_machine_paths.py"}

#: an absolute path under a machine's work, temporary or home directories (not a URL path)
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])/(?:work|tmp|root|home|Users)(?:/|\b)")


def project_files() -> list[str]:
    """The files git tracks (the whole tree when this is not a git checkout)."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in done.stdout.decode().split("\0") if name]


def test_no_file_names_a_machine_path() -> None:
    found = []
    for name in project_files():
        if name in EXEMPT:
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # a binary file (a plot), or deleted in the work tree
        for number, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "absolute paths of a machine:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("see /work/elsewhere/README.md", True),
        ("copy it to `/tmp/ec-try`", True),
        ('Path("/root")', True),
        ("https://example.org/home/page", False),
        ("src/tmp/file.py and ./tmp/x", False),
        ("a/work/b", False),
    ],
)
def test_the_pattern(text: str, flagged: bool) -> None:
    assert bool(MACHINE_PATH.search(text)) is flagged
