"""Command line: ``python -m eventcore demo`` (also the ``eventcore`` console script)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import anyio

from ._version import __version__


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="eventcore", description=__doc__)
    parser.add_argument("--version", action="version", version=f"eventcore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a simulated service under bursts")
    demo.add_argument("--seconds", type=float, default=6.0, help="how long the publishers run")
    demo.add_argument(
        "--backend", choices=("asyncio", "uvloop", "trio"), default="asyncio", help="event loop"
    )
    demo.add_argument("--plain", action="store_true", help="plain lines instead of a live table")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")

    from ._demo import run_demo

    backend, options = _backend(args.backend)
    live = False if args.plain else None
    anyio.run(lambda: run_demo(args.seconds, live=live), backend=backend, backend_options=options)


def _backend(name: str) -> tuple[str, dict[str, Any]]:
    if name == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return name, {}


if __name__ == "__main__":
    main()
