"""``watchdog diagnose PID``: what a running Python server is doing, with the evidence and what to do about it.

Exit codes: 0 nothing wrong found, 1 a problem found, 2 usage error, 3 cannot inspect the target (no such
process, not Python, unsupported Python, no ptrace permission, py-spy missing, exited mid-sampling).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchdog.diagnose.report import DiagnoseReport

NAME = "diagnose"
HELP = (
    "Sample a Python process (or a gunicorn/uvicorn master and all its workers) for a few seconds and say what "
    "it is doing: spin, busy, blocked, idle, memory or fd growth, with evidence and advice."
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}")
    return value


def _bounded(lo: float, hi: float, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be between {lo:g} and {hi:g}, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from watchdog.diagnose.collect import DEFAULT_DURATION, DEFAULT_RATE

    add = parser.add_argument
    add("pid", type=_positive_int, help="the process: a worker, a single server, or a master")
    add("--duration", type=_bounded(0.2, 600, "--duration"), default=DEFAULT_DURATION, metavar="SECONDS",
        help=f"sampling window (default {DEFAULT_DURATION:g})")  # fmt: skip
    add("--rate", type=_bounded(1, 1000, "--rate"), default=DEFAULT_RATE, metavar="HZ",
        help=f"stack samples per second (default {DEFAULT_RATE})")  # fmt: skip
    add("--nonblocking", action="store_true",
        help="do not pause the target while reading its stacks (fewer, less reliable samples)")  # fmt: skip
    add("--json", action="store_true", help="print the report as JSON (schema: watchdog/diagnose/schema.json)")
    add("--metrics-url", metavar="URL",
        help="the server's Prometheus /metrics: in-flight gauges with a pid label join the evidence")  # fmt: skip
    add("--show-secrets", action="store_true",
        help="show secrets in command lines and URLs as they are (hidden as *** by default)")  # fmt: skip
    add("--py-spy", metavar="PATH", help="the py-spy executable (default: next to this Python, then PATH)")
    add("--flamegraph", metavar="FILE",
        help="also write a flame graph of the samples (one per process, threads side by side) as a "
        "self-contained HTML file that opens offline in any browser")  # fmt: skip
    add("--concurrency", type=int, default=8, metavar="N", help="py-spy processes at once (default 8)")


def _write_flamegraph(report: DiagnoseReport, path: str) -> str:
    import time
    from pathlib import Path

    from watchdog.flamegraph import render_html, report_sections

    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.started_at))
    text = render_html(
        report_sections(report),
        title=f"watchdog diagnose {report.target_pid}",
        subtitle=f"sampled {when}, {report.duration_s:g} s at {report.rate_hz} Hz per process",
    )
    out = Path(path)
    out.write_text(text, encoding="utf-8")
    return str(out.resolve())


def run(args: argparse.Namespace) -> int:
    import anyio

    from watchdog.cli import EXIT_CANNOT_INSPECT, EXIT_USAGE
    from watchdog.diagnose import diagnose, render_text
    from watchdog.errors import InspectError
    from watchdog.redact import REDACTOR, outward

    if args.flamegraph:
        import os

        parent = os.path.dirname(os.path.abspath(args.flamegraph))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            print(f"watchdog diagnose: cannot write {args.flamegraph}: {parent} is not a writable directory",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    progress = None
    live = sys.stdout.isatty() and sys.stderr.isatty() and not args.json
    if live:

        def progress(msg: str) -> None:
            sys.stderr.write(f"\r\x1b[K{msg}")
            sys.stderr.flush()

    async def go() -> int:
        try:
            report = await diagnose(
                args.pid,
                duration=args.duration,
                rate=args.rate,
                nonblocking=args.nonblocking,
                py_spy=args.py_spy,
                metrics_url=args.metrics_url,
                max_concurrency=max(1, args.concurrency),
                progress=progress,
            )
        except InspectError as exc:
            if live:
                sys.stderr.write("\r\x1b[K")
            print(f"watchdog diagnose: {exc}", file=sys.stderr)
            return EXIT_CANNOT_INSPECT
        if live:
            sys.stderr.write("\r\x1b[K")
        if args.show_secrets:
            print(report.to_json() if args.json else render_text(report))
        elif args.json:
            print(json.dumps(outward(report.to_dict()), indent=2))
        else:
            print(REDACTOR.text(render_text(report)))
        if args.flamegraph:
            try:
                written = _write_flamegraph(report, args.flamegraph)
            except OSError as exc:
                print(f"watchdog diagnose: cannot write {args.flamegraph}: {exc.strerror or exc}", file=sys.stderr)
                return EXIT_USAGE
            print(f"flame graph: {written}", file=sys.stderr)
        return report.exit_code

    return anyio.run(go)
