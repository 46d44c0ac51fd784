"""Every ```python block of README.md and docs/**/*.md runs (or type-checks) as pasted.

How a block is checked depends on the HTML comment right before its fence (blank
lines between are allowed; GitHub does not render the comment):

- no marker: a script. It runs with ``python block.py`` in a fresh process and
  must exit 0; it may import the ``file:`` blocks above it.
- ``<!-- file: NAME.py -->``: a module the reader saves as NAME.py. It is written
  into the same directory so that later blocks can import it; a ``test_*.py`` file
  runs under pytest, any other is imported (not run as ``__main__``, so a server
  started under ``if __name__ == "__main__":`` does not start). The apps among them
  are also served in process below (httpx ASGITransport, aiohttp's test client).
- ``<!-- fragment -->``: lines out of context (``await`` at the top level, names
  from the surrounding text). It is compiled as the body of an ``async def`` after
  :data:`PRELUDE`, which defines the names fragments use.

Every block, fragments included, is also type-checked with mypy under the
project's settings (strict).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

PRELUDE = """\
from __future__ import annotations

from dataclasses import dataclass

import anyio

from eventcore import Dispatcher, DropReason, Overflow, Retry


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    total: float


@dataclass(frozen=True)
class Charge:
    account: str
    amount: float


def report(event: object, handler: object, exception: BaseException) -> None: ...
def report_drop(event: object, reason: DropReason) -> None: ...
async def audit(event: OrderPlaced) -> None: ...
async def notify(event: Charge) -> None: ...


bus = Dispatcher()
event = OrderPlaced("A1", 10.0)
"""
"""The names fragments use, defined as the text around them describes them."""

_WRAPPER = "\n\nasync def _fragment() -> None:\n"
FRAGMENT_SHIFT = (PRELUDE + _WRAPPER).count("\n")
"""How many lines the prelude and the wrapper add before a fragment's first line."""

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*(fragment|file:\s*(\S+\.py))\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One ```python block: where it is, how to check it, and its code."""

    document: Path
    line: int  # of the opening fence, 1-based
    kind: str  # "script", "file" or "fragment"
    filename: str
    code: str

    @property
    def id(self) -> str:
        return f"{_relative(self.document)}:{self.line}"

    def source(self) -> str:
        """The file written for the block (a fragment inside an async function)."""
        if self.kind != "fragment":
            return self.code
        return PRELUDE + _WRAPPER + textwrap.indent(self.code, "    ")


def extract(document: Path, text: str | None = None) -> list[Block]:
    """The ```python blocks of *document* (or of *text*, as if it were that document)."""
    lines = (document.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not _FENCE.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{document.name}:{index + 1}: unclosed code fence")
        if fence.group(1) in ("python", "py"):
            marker = _marker_before(lines, index)
            stem = f"{_stem(document)}_line{index + 1}"
            kind, filename = "script", f"{stem}.py"
            if marker is not None and marker.group(2):
                kind, filename = "file", marker.group(2)
            elif marker is not None:
                kind, filename = "fragment", f"{stem}_fragment.py"
            code = "\n".join(lines[index + 1 : end]) + "\n"
            blocks.append(Block(document, index + 1, kind, filename, code))
        index = end + 1
    return blocks


def _relative(document: Path) -> str:
    """*document*'s path from the repository root (its name, when outside it)."""
    try:
        return document.relative_to(ROOT).as_posix()
    except ValueError:
        return document.name


def _stem(document: Path) -> str:
    """A module name for *document*'s blocks, unique across ``docs/`` and its folders."""
    return re.sub(r"\W", "_", _relative(document).removesuffix(".md")).lower()


def _marker_before(lines: list[str], fence: int) -> re.Match[str] | None:
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    return _MARKER.match(lines[before].strip()) if before >= 0 else None


BLOCKS = [block for document in DOCUMENTS for block in extract(document)]


def write_blocks(directory: Path, blocks: list[Block]) -> None:
    for block in blocks:
        (directory / block.filename).write_text(block.source(), encoding="utf-8")


def check(block: Block, directory: Path) -> None:
    """Run *block* as the module docstring says; fail with its output if it fails."""
    if block.kind == "fragment":
        compile(block.source(), block.filename, "exec")
        return
    if block.kind == "script":
        command = [sys.executable, block.filename]
    elif block.filename.startswith("test_"):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        # warnings are errors, as in this project (pytest-asyncio's about its own
        # unset option aside: that is the reader's configuration, not the block)
        command += ["-o", "asyncio_default_fixture_loop_scope=function", "-W", "error"]
        command.append(block.filename)
    else:
        command = [sys.executable, "-c", f"import {Path(block.filename).stem}"]
    done = subprocess.run(
        command, cwd=directory, capture_output=True, text=True, timeout=90, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{block.id} ({block.kind} {block.filename}) failed with exit code "
            f"{done.returncode}:\n{done.stdout}\n{done.stderr}"
        )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every block written out, as a reader who saves each one would have them."""
    directory = tmp_path_factory.mktemp("readme")
    write_blocks(directory, BLOCKS)
    return directory


def test_the_readme_has_blocks_of_each_kind() -> None:
    kinds = {block.kind for block in BLOCKS}
    assert kinds == {"script", "file", "fragment"}
    names = [block.filename for block in BLOCKS]
    assert len(names) == len(set(names)), "two blocks claim the same file name"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block_runs_as_pasted(block: Block, workdir: Path) -> None:
    check(block, workdir)


@pytest.mark.timeout(300)
def test_blocks_type_check(workdir: Path) -> None:
    """mypy --strict (the project's settings) over every block, fragments included."""
    files = [block.filename for block in BLOCKS]
    done = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")),
            *("--cache-dir", str(ROOT / ".mypy_cache"), *files),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    legend = "\n".join(f"{block.filename}: {block.id}" for block in BLOCKS)
    shift = f"a fragment's line N is line N + {FRAGMENT_SHIFT} of its file"
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{legend}\n({shift})"


def load(workdir: Path, filename: str) -> ModuleType:
    """Import one of the ``file:`` blocks in this process, under a name of its own."""
    spec = importlib.util.spec_from_file_location(
        f"readme_{Path(filename).stem}", workdir / filename
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.asyncio
async def test_readme_fastapi_app_serves_in_process(workdir: Path) -> None:
    main = load(workdir, "main.py")
    app: Any = main.app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/orders", json={"total": 12.5})
    assert response.status_code == 202
    assert response.json() == {"accepted": True}
    assert main.bus.stats(main.OrderPlaced).handled == 1


@pytest.mark.asyncio
async def test_readme_aiohttp_app_serves_in_process(workdir: Path) -> None:
    module = load(workdir, "aiohttp_app.py")
    async with TestClient(TestServer(module.app)) as client:
        response = await client.post("/orders", json={"total": 12.5})
        assert response.status == 202
        assert await response.json() == {"accepted": True}
    assert module.bus.stats(module.OrderPlaced).handled == 1  # its subscriber ran


@pytest.mark.asyncio
async def test_readme_dashboard_app_serves_in_process(workdir: Path) -> None:
    module = load(workdir, "dashboard_app.py")
    app: Any = module.app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # its client is 127.0.0.1: loopback
        base = "http://127.0.0.1"  # a loopback Host too: no auth= answers only those
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            page = await client.get("/dashboard/")
            snapshot = await client.get("/dashboard/snapshot.json")
    assert page.status_code == 200
    assert snapshot.status_code == 200
    assert "types" in snapshot.json()["sample"]


BROKEN = """\
Text.

```python
print(undefined_name)
```

<!-- fragment -->
```python
await bus.publish(event)
```
"""


def test_a_broken_block_fails_the_suite(tmp_path: Path) -> None:
    script, fragment = extract(tmp_path / "BROKEN.md", BROKEN)
    assert (script.kind, script.line, fragment.kind) == ("script", 3, "fragment")
    write_blocks(tmp_path, [script, fragment])
    check(fragment, tmp_path)  # compiles: `await` inside the wrapper, names from the prelude
    with pytest.raises(pytest.fail.Exception, match="NameError: name 'undefined_name'"):
        check(script, tmp_path)
