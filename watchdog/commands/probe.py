"""``watchdog probe -f FILE``: run a probe definition against its target and show each phase and the verdict."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchdog.probes import ProbeResult, ProbeSpec

NAME = "probe"
HELP = "Run a probe (probes/*.yaml) against its target: per-phase latencies and a verdict; exit 0 pass, 1 fail."
MAX_COUNT = 100_000


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= n <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_COUNT}, got {n}")
    return n


def _interval(text: str) -> float:
    from watchdog.config import parse_duration

    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 0 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", required=True, metavar="FILE", help="the probe definition (probes/*.yaml)")
    parser.add_argument("--url", metavar="URL", help="probe this URL instead of the one in the file")
    parser.add_argument("--json", action="store_true", help="print each result as one JSON object per line")
    parser.add_argument("--count", type=_count, default=1, metavar="N", help="run the probe N times (default 1)")
    parser.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="S",
        help="seconds between the starts of two probes with --count (a number, or 500ms, 2s; default 1)",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from watchdog.cli import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
    from watchdog.errors import ConfigError, ConfigErrors
    from watchdog.probes import load_probe
    from watchdog.probes._spec import check_url

    try:
        spec = load_probe(args.file)
    except ConfigErrors as errs:
        for err in errs:
            print(err, file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE
    if args.url is not None and (problem := check_url(args.url)) is not None:
        args._parser.print_usage(sys.stderr)
        print(f"watchdog probe: error: --url: {problem}", file=sys.stderr)
        return EXIT_USAGE
    results = asyncio.run(_probe_loop(spec, args))
    if not args.json and len(results) > 1:
        _summary(results)
    return EXIT_OK if results and all(r.ok for r in results) else EXIT_PROBLEM


async def _probe_loop(spec: ProbeSpec, args: argparse.Namespace) -> list[ProbeResult]:
    import time

    import aiohttp
    import anyio

    from watchdog.probes import run_probe

    results: list[ProbeResult] = []
    async with aiohttp.ClientSession() as http:
        for i in range(args.count):
            started = time.monotonic()
            result = await run_probe(spec, url=args.url, session=http)
            results.append(result)
            if args.json:
                print(json.dumps(result.to_json()), flush=True)
            elif args.count == 1:
                _table(result)
            else:
                _line(i + 1, result)
            if i + 1 < args.count:
                await anyio.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    return results


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _table(r: ProbeResult) -> None:
    print(f"{r.probe}: {r.url} ({r.transport})")
    for p in r.phases:
        took = _ms(p.latency_s) if p.latency_s or not p.ok else "-"
        print(f"  {p.name:<27} {took:>10}  {'ok  ' if p.ok else 'FAIL'}  {p.error or p.detail or ''}".rstrip())
    print(_verdict(r))


def _verdict(r: ProbeResult) -> str:
    facts = [_ms(r.latency_s)]
    if r.protocol_version:
        facts.append(f"protocol {r.protocol_version}")
    if r.worker_pid is not None:
        facts.append(f"worker {r.worker_pid}")
    if r.ok:
        return "PASS  " + ", ".join(facts)
    return f"FAIL  {r.reason}  ({', '.join(facts)})"


def _line(n: int, r: ProbeResult) -> None:
    phases = ", ".join(f"{p.name} {_ms(p.latency_s)}" for p in r.phases if p.latency_s)
    print(f"#{n} {_verdict(r)}  [{phases}]", flush=True)


def _summary(results: list[ProbeResult]) -> None:
    passed = sum(r.ok for r in results)
    lat = sorted(r.latency_s for r in results if r.ok)
    line = f"{len(results)} probes: {passed} passed, {len(results) - passed} failed"
    if lat:
        import statistics  # here: every command module is loaded by the CLI, `watchdog run` too (with decimal)

        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        line += f"; passing latency median {_ms(statistics.median(lat))}, p99 {_ms(p99)}"
    workers = sorted({r.worker_pid for r in results if r.worker_pid is not None})
    if workers:
        line += f"; workers {', '.join(map(str, workers))}"
    print(line)
