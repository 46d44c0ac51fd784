"""Found by the fuzzer (``fuzz/``, target ``catalog_check``): ``eventcore catalog --check``
against a committed file that is not UTF-8 ended in a ``UnicodeDecodeError`` traceback;
it is reported as out of date, with the diff and the command that regenerates it."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventcore.__main__ import main

TARGET = "tests.wire.app:bus"


def test_a_committed_catalog_that_is_not_utf8_is_out_of_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = tmp_path / "catalog.json"
    committed.write_bytes(b'{"asyncapi": "3.0.0", \xff\xfe}\n')
    with pytest.raises(SystemExit) as done:
        main(["catalog", TARGET, "--check", str(committed)])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert "changed: regenerate it with" in err
    assert "\ufffd" in err  # the bytes that are not UTF-8, shown in the diff
