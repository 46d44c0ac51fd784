"""One target under atheris: ``python -m fuzz._one TARGET [libFuzzer options] DIRS``.

eventcore is imported with atheris's instrumentation, so coverage guides the search.
"""

from __future__ import annotations

import logging
import sys

import atheris

with atheris.instrument_imports(include=["eventcore", "fuzz"]):
    from fuzz.targets import TARGETS


def main() -> None:
    """Fuzz the target named first on the command line until libFuzzer stops."""
    logging.getLogger("eventcore").setLevel(logging.CRITICAL)  # no warning per input
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
