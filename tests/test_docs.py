"""The documentation site: every page is in the nav, it builds without a warning, and the
README stays a landing page. (Its code blocks run in ``tests/test_readme.py``.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.test_readme import BLOCKS

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def _nav_pages(nav: Any) -> list[str]:
    """The page paths of a mkdocs ``nav`` (nested lists of ``{title: page or list}``)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    raise AssertionError(f"unexpected nav entry {nav!r}")


def _config() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="the docs group (mkdocs) is not installed")
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return config


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    pages = _nav_pages(_config()["nav"])
    assert len(pages) == len(set(pages)), "a page is twice in the nav"
    on_disk = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert set(pages) - on_disk == set(), "nav entries without a file"
    assert on_disk - set(pages) == set(), "pages missing from the nav in mkdocs.yml"


def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    """``mkdocs build --strict`` (what ``make docs`` runs), into a temporary directory."""
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("the docs group (mkdocs-material, mkdocstrings) is not installed")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    home = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "Quickstart" in home
    api = (tmp_path / "reference" / "api.html").read_text(encoding="utf-8")
    assert "publish_and_wait" in api  # the reference comes from the docstrings
    assert ":class:" not in api  # their Sphinx roles dropped (mkdocs_hooks.py)


def test_the_readme_is_a_landing_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 200
    for needed in ("## Install", "## Quickstart", "make demo", "make test", "make docs"):
        assert needed in readme
    assert "pip install eventcore-py" in readme
    assert not re.search(r"pip install [\"']?eventcore[\[\s\"']", readme), "the old PyPI name"


def test_the_readme_s_links_lead_somewhere() -> None:
    """GitHub renders the README, not the site: its relative links name files that exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if "://" not in target]
    assert local
    missing = [target for target in local if not (ROOT / target).exists()]
    assert missing == []


def test_the_documented_distribution_name_is_the_project_s() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^name = "eventcore-py"$', pyproject, re.MULTILINE)
    documents = [ROOT / "README.md", *DOCS.rglob("*.md")]
    for document in documents:
        text = document.read_text(encoding="utf-8")
        assert not re.search(r"pip install [\"']eventcore\[", text), document


def test_blocks_that_cross_a_broker_name_their_events() -> None:
    """A routed type without a stable name works but warns (EventNameWarning): the docs'
    broker examples give theirs one, as a reader should."""
    uses = ("publish(", "@bus.on(", "subscribe(")
    routed = [b for b in BLOCKS if "Transport(" in b.code and any(u in b.code for u in uses)]
    assert routed
    for block in routed:
        assert "@event(" in block.code or "register(" in block.code, block.id


def test_the_layout_page_names_only_paths_that_exist() -> None:
    """docs/explanations/layout.md stays true when modules are split or renamed (the core's
    modules, one row each, are in docs/ARCHITECTURE.md, checked by test_architecture)."""
    layout = (DOCS / "explanations" / "layout.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:eventcore|examples|tests|bench)/[\w/.]*)`", layout))
    assert named
    assert sorted(path for path in named if not (ROOT / path).exists()) == []
