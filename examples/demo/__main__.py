"""``python -m examples.demo serve|inject``: run the fault lab, or trigger one of its faults."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

FAULTS = ("spin", "crunch", "leak", "saturate", "block", "churn", "timeouts")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the demo MCP server (gunicorn + uvicorn workers) and its downstream")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--downstream-port", type=int, default=8001)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--latency", type=float, default=0.05, help="downstream latency in seconds at start")
    s.add_argument("--limit", type=int, default=4, help="concurrent downstream calls allowed per worker")
    s.add_argument("--stateful", action="store_true", help="stateful MCP sessions (use with --workers 1)")
    s.add_argument("--pidfile", help="where gunicorn writes the master's pid")
    s.add_argument("--json-ready", action="store_true", help="print one JSON 'ready' line instead of the banner")
    s.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print worker cpu/rss/fds every 2 s (default: when stdout is a terminal)",
    )

    i = sub.add_parser("inject", help="trigger one fault through real MCP calls")
    i.add_argument("fault", choices=FAULTS)
    i.add_argument("--url", default="http://127.0.0.1:8000/mcp", help="the demo server's MCP endpoint")
    i.add_argument("--downstream-url", default="http://127.0.0.1:8001", help="for saturate")
    i.add_argument("--mode", default="auto", help="MCP client mode: auto (2026-07-28) or legacy (initialize)")
    i.add_argument("--seconds", type=float, default=None, help="crunch/block/leak/timeouts duration")
    i.add_argument("--rate", type=float, default=10.0, help="leak: MiB per second")
    i.add_argument("--callers", type=int, default=16, help="saturate: concurrent callers")
    i.add_argument("--latency", type=float, default=10.0, help="saturate: downstream latency in seconds")
    i.add_argument("--calls", type=int, default=20, help="churn: calls (each leaves one client open)")
    return p


async def _inject(args: argparse.Namespace) -> int:
    from examples.demo import inject

    url, mode = args.url, args.mode
    if args.fault == "spin":
        pid = await inject.spin(url, mode=mode)
        print(f"spin: worker {pid} took the stubborn call; the call was abandoned and the worker now spins")
    elif args.fault == "crunch":
        seconds = args.seconds or 10.0
        print(f"crunch: {seconds:g} s of CPU work ...", flush=True)
        pid = await inject.crunch(url, seconds, mode=mode)
        print(f"crunch: worker {pid} did {seconds:g} s of legitimate CPU work")
    elif args.fault == "leak":
        seconds = args.seconds or 60.0
        pid = await inject.leak(url, args.rate, seconds, mode=mode)
        print(f"leak: worker {pid} now grows by {args.rate:g} MiB/s for {seconds:g} s")
    elif args.fault == "block":
        seconds = args.seconds or 10.0
        pid = await inject.block(url, seconds, mode=mode)
        print(f"block: worker {pid} has its event loop blocked for {seconds:g} s")
    elif args.fault == "timeouts":
        seconds = args.seconds or 10.0
        print(f"timeouts: {seconds:g} s of healthy cancel-heavy work (a control: never a spin) ...", flush=True)
        result = await inject.timeouts(url, seconds, mode=mode)
        print(f"timeouts: {result}")
    elif args.fault == "churn":
        pids = await inject.churn(url, args.calls, mode=mode)
        for pid, n in sorted(pids.items()):
            print(f"churn: worker {pid} opened {n} HTTP clients and closed none")
    elif args.fault == "saturate":
        metrics_url = url.rsplit("/", 1)[0] + "/metrics"
        hold = args.seconds or 15.0
        print(f"saturate: downstream latency {args.latency:g} s, {args.callers} callers for {hold:g} s ...", flush=True)
        seen = await inject.saturate(
            url, args.downstream_url, metrics_url, callers=args.callers, latency=args.latency, hold=hold, mode=mode
        )
        for pid in sorted(seen.limit):
            print(
                f"saturate: worker {pid}: in flight {seen.in_flight.get(pid, 0):g} of limit "
                f"{seen.limit[pid]:g}, {seen.waiting.get(pid, 0):g} waiting"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from examples.demo.serve import ServeOptions, serve

        watch = sys.stdout.isatty() if args.watch is None else args.watch
        opts = ServeOptions(
            host=args.host,
            port=args.port,
            downstream_port=args.downstream_port,
            workers=args.workers,
            latency=args.latency,
            limit=args.limit,
            stateful=args.stateful,
            pidfile=args.pidfile,
            json_ready=args.json_ready,
            watch=watch,
        )
        return asyncio.run(serve(opts))
    from examples.demo.inject import InjectError

    try:
        return asyncio.run(_inject(args))
    except (InjectError, OSError) as exc:
        print(f"inject {args.fault}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
