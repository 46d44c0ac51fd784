"""Command line: ``eventcore demo``, ``eventcore top``, ``eventcore catalog`` and
``eventcore sql schema`` (also ``python -m eventcore``)."""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from ._version import __version__

DESCRIPTION = """\
eventcore: an asyncio-native event dispatcher with per-type bounded queues.
Run 'eventcore COMMAND --help' for the options of a command.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventcore",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"eventcore {__version__}")
    commands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )
    demo = commands.add_parser(
        "demo",
        help="run a simulated service under bursts",
        description="Run a simulated shop service: one event type per overflow policy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument(
        "--seconds",
        type=float,
        default=6.0,
        help="how long the publishers run (in a terminal the dashboard stays up after "
        "the summary until Ctrl-C)",
    )
    demo.add_argument(
        "--backend", choices=("asyncio", "uvloop", "trio"), default="asyncio", help="event loop"
    )
    demo.add_argument("--plain", action="store_true", help="plain lines instead of a live table")
    demo.add_argument(
        "--no-dashboard", action="store_true", help="do not serve the live dashboard"
    )
    demo.add_argument(
        "--port", type=int, default=0, help="the dashboard's port on 127.0.0.1 (0: a free one)"
    )
    top = commands.add_parser(
        "top",
        help="show a dashboard's live feed in the terminal",
        description=(
            "Show the live feed of an eventcore dashboard (URL: where it is mounted, e.g. "
            "http://127.0.0.1:8000/dashboard/), like htop: keys d, r, n sort by depth, "
            "rate, name; q quits."
        ),
    )
    top.add_argument("url", metavar="URL", help="the dashboard's address")
    top.add_argument("--sort", choices=("depth", "rate", "name"), default="depth")
    top.add_argument("--user", help="HTTP Basic user (password: $EVENTCORE_DASHBOARD_PASSWORD)")
    top.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra request header (repeatable)",
    )
    top.add_argument(
        "--once",
        action="store_true",
        help="print one table and exit (two samples a second apart: true rates)",
    )
    catalog = commands.add_parser(
        "catalog",
        help="write the AsyncAPI / JSON Schema / Markdown catalog of a dispatcher",
        description=(
            "Load a Dispatcher (MODULE:ATTR, e.g. myapp.events:bus; a callable is called) "
            "and write the catalog of its events and handlers. The output is sorted, so "
            "CI can diff it; --check fails when the committed catalog is out of date."
        ),
    )
    catalog.add_argument("target", metavar="MODULE:ATTR", help="where the Dispatcher is")
    catalog.add_argument(
        "--format",
        choices=("asyncapi", "jsonschema", "markdown"),
        default="asyncapi",
        help="what to write (default: asyncapi)",
    )
    out = catalog.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    out.add_argument(
        "--check", metavar="FILE", help="exit 1, showing a diff, when FILE is not up to date"
    )
    catalog.add_argument(
        "--title", default="eventcore events", help="AsyncAPI info.title (default: %(default)s)"
    )
    catalog.add_argument(
        "--api-version",
        default="0.0.0",
        help="AsyncAPI info.version, your API's version (default: %(default)s)",
    )
    sql = commands.add_parser(
        "sql",
        help="the outbox's and inbox's tables on PostgreSQL",
        description="The tables of eventcore.outbox (pip install 'eventcore-py[sql]').",
    )
    sql_commands = sql.add_subparsers(dest="sql_command", required=True, metavar="SUBCOMMAND")
    schema = sql_commands.add_parser(
        "schema",
        help="print the DDL of the outbox, its dead letters and the inbox",
        description='Print the tables\' DDL (idempotent), e.g. | psql "$DATABASE_URL".',
    )
    schema.add_argument("--outbox", default="eventcore_outbox", help="(default: %(default)s)")
    schema.add_argument("--inbox", default="eventcore_inbox", help="(default: %(default)s)")
    schema.add_argument("--dead", default="eventcore_outbox_dead", help="(default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "catalog":
        _catalog(parser, args)
        return
    if args.command == "top":
        _top(parser, args)
        return
    if args.command == "sql":
        _sql_schema(parser, args)
        return
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")

    from ._demo import run_demo

    backend, options = _backend(args.backend)
    live = False if args.plain else None
    port = None if args.no_dashboard else args.port
    try:
        anyio.run(
            lambda: run_demo(args.seconds, live=live, dashboard_port=port),
            backend=backend,
            backend_options=options,
        )
    except KeyboardInterrupt:
        print("\nstopped")


def _sql_schema(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from ._errors import InvalidConfiguration
    from .outbox._schema import Tables, schema_ddl

    try:
        tables = Tables(outbox=args.outbox, inbox=args.inbox, dead=args.dead)
    except InvalidConfiguration as exc:
        parser.error(str(exc))
    sys.stdout.write(schema_ddl(tables))


def _top(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    import urllib.error

    try:
        from rich.console import Console

        from .dashboard.top import auth_headers, run_top, snapshot_once, table
    except ImportError:
        parser.error("eventcore top needs rich: pip install 'eventcore-py[dashboard]'")
    password = os.environ.get("EVENTCORE_DASHBOARD_PASSWORD")
    headers = auth_headers(args.user, password, args.header)
    try:
        if args.once:
            answer = snapshot_once(args.url, headers)
            Console().print(table(answer["sample"], args.sort, args.url, len(answer["letters"])))
        else:
            anyio.run(lambda: run_top(args.url, headers, sort=args.sort))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()
        raise SystemExit(f"eventcore top: {args.url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"eventcore top: cannot reach {args.url}: {exc}") from None
    except KeyboardInterrupt:
        pass


def _backend(name: str) -> tuple[str, dict[str, Any]]:
    if name == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return name, {}


def _catalog(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from . import catalog
    from ._dispatcher import Dispatcher

    bus = _load(parser, args.target, Dispatcher)
    if args.format == "asyncapi":
        text = catalog.render_asyncapi(bus, title=args.title, version=args.api_version)
    else:
        text = catalog.render(bus, args.format)
    if args.check is not None:
        path = Path(args.check)
        if not path.is_file():
            sys.stderr.write(
                f"{path}: not found; write the catalog of {args.target} with "
                f"eventcore catalog {args.target} --format {args.format} -o {path}\n"
            )
            raise SystemExit(1)
        # a committed file that is not UTF-8 is out of date too (replaced bytes show in the diff)
        old = path.read_text(encoding="utf-8", errors="replace")
        if old != text:
            sys.stderr.writelines(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"{path} (committed)",
                    tofile=f"{path} (from {args.target})",
                )
            )
            sys.stderr.write(
                f"\nthe catalog of {args.target} changed: regenerate it with "
                f"eventcore catalog {args.target} --format {args.format} -o {path}\n"
            )
            raise SystemExit(1)
        print(f"{path}: up to date")
    elif args.output is not None:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _load(parser: argparse.ArgumentParser, target: str, kind: type[Any]) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        parser.error(f"expected MODULE:ATTR (e.g. myapp.events:bus), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the app's own modules
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        parser.error(f"cannot import {module_name!r}: {exc}")
    for part in attr.split("."):
        if not hasattr(obj, part):
            parser.error(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, (kind, type)) and callable(obj):  # a factory function
        obj = obj()
    if not isinstance(obj, kind):
        parser.error(f"{target} is {type(obj).__name__}, not an eventcore Dispatcher")
    return obj


if __name__ == "__main__":
    main()
