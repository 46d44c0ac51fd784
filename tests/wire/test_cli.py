"""``eventcore catalog`` (write, --check) and the help texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventcore.__main__ import main

GOLDEN = Path(__file__).parent / "golden"
TARGET = "tests.wire.app:bus"


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out
    assert ":class:" not in out
    assert "demo" in out
    assert "catalog" in out


def test_demo_help_shows_each_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: 6.0)" in out
    assert "(default: asyncio)" in out
    assert "(default: False)" in out


def test_catalog_writes_to_stdout_and_to_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    main(["catalog", TARGET])
    doc = json.loads(capsys.readouterr().out)
    assert doc["asyncapi"] == "3.0.0"
    out = tmp_path / "catalog.md"
    main(["catalog", TARGET, "--format", "markdown", "-o", str(out)])
    assert out.read_text().startswith("# Events")
    main(["catalog", "tests.wire.app:make_bus", "--format", "jsonschema"])  # a factory
    assert "events" in json.loads(capsys.readouterr().out)
    main(["catalog", TARGET, "--title", "shop", "--api-version", "2.0.0"])
    assert json.loads(capsys.readouterr().out)["info"] == {
        "title": "shop",
        "version": "2.0.0",
        "description": "Event types and handlers of an eventcore Dispatcher.",
    }


def test_check_passes_on_the_committed_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    main(["catalog", TARGET, "--check", str(GOLDEN / "asyncapi.json")])
    assert "up to date" in capsys.readouterr().out
    main(["catalog", TARGET, "--format", "jsonschema", "--check", str(GOLDEN / "jsonschema.json")])


def test_check_fails_with_a_diff_when_the_catalog_changed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stale = tmp_path / "asyncapi.json"
    stale.write_text((GOLDEN / "asyncapi.json").read_text().replace('": 500', '": 400'))
    with pytest.raises(SystemExit) as done:
        main(["catalog", TARGET, "--check", str(stale)])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert '-      "x-eventcore-queue-size": 400' in err
    assert '+      "x-eventcore-queue-size": 500' in err
    assert "regenerate it with" in err


def test_check_of_a_missing_file_says_not_found(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Regression: a missing file printed a diff of the whole catalog against nothing."""
    missing = tmp_path / "missing.json"
    with pytest.raises(SystemExit) as done:
        main(["catalog", TARGET, "--check", str(missing)])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert f"{missing}: not found" in err
    assert f"-o {missing}" in err  # how to write it
    assert "+++" not in err  # no diff


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.wire.app", "MODULE:ATTR"),
        ("tests.wire.no_such_module:bus", "cannot import"),
        ("tests.wire.app:nope", "no attribute"),
        ("tests.wire.app:OrderPlaced", "not an eventcore Dispatcher"),
    ],
)
def test_bad_targets_are_usage_errors(
    target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["catalog", target])
    assert done.value.code == 2
    assert message in capsys.readouterr().err
