"""The ``watchdog`` command line: parses arguments, hands off to one command module, maps errors to exit codes.

Each command lives in ``watchdog/commands/<name>.py`` and exposes ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; command modules import their heavy dependencies inside ``run`` so that ``--help`` stays
fast. Only commands that work are listed in ``COMMANDS``.

Exit codes (documented in the README):

    0  success / nothing wrong found
    1  a problem was found (a failed probe, a diagnosis with findings)
    2  usage or configuration error
    3  cannot inspect the target (no such process, no permission)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from watchdog._version import __version__
from watchdog.errors import WatchdogError

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_CANNOT_INSPECT = 3

COMMANDS: tuple[str, ...] = (
    "watchdog.commands.check",
    "watchdog.commands.diagnose",
    "watchdog.commands.probe",
    "watchdog.commands.run",
    "watchdog.commands.status",
)


def _load(name: str) -> ModuleType:
    return importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchdog",
        description="Runtime diagnostics and watchdog for async Python (MCP) servers.",
        epilog="Exit codes: 0 ok, 1 problem found, 2 usage or config error, 3 cannot inspect the target.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _load(name)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("watchdog: error: a command is required (see 'watchdog --help')", file=sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args._run(args)
    except WatchdogError as exc:
        print(f"watchdog {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
