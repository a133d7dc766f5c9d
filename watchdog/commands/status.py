"""``watchdog status``: what a running watchdog sees, in a terminal, from its ``/v1/status``.

The same picture as the status page at ``/``: targets, workers with their current signals, rule states, the
budget, the last probe's phases, recent events with links to their flame graphs. Colour when the output is a
terminal (and ``NO_COLOR`` is unset); ``--json`` prints the document as the watchdog sent it; ``--watch``
redraws it every ``--interval`` seconds until Ctrl-C.

Exit codes: 0 nothing firing, 1 a rule is firing or a target has a problem, 2 usage error, 3 the watchdog
cannot be read (not listening, timed out, refused the token, or answered something that is not its status).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

NAME = "status"
HELP = "Show what a running watchdog sees: workers, signals, rules, budget, probe, recent events (from /v1/status)."
DEFAULT_URL = "http://127.0.0.1:9464"


class Unreachable(Exception):
    """The watchdog's status could not be read; the message says why, for the operator."""


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--interval must be a number of seconds, got {text!r}") from None
    if not 0.2 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"--interval must be between 0.2 and 3600 seconds, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--url", default=os.environ.get("WATCHDOG_URL", DEFAULT_URL), metavar="URL",
        help=f"the watchdog's server (default $WATCHDOG_URL, else {DEFAULT_URL})")  # fmt: skip
    add("--watch", action="store_true", help="redraw every --interval seconds until Ctrl-C")
    add("--interval", type=_interval, default=2.0, metavar="SECONDS", help="--watch's period (default 2)")
    add("--json", action="store_true", help="print the /v1/status document as it came (one per line with --watch)")
    add("--token", default=os.environ.get("WATCHDOG_TOKEN"), metavar="TOKEN",
        help="bearer token, if the watchdog requires one (default $WATCHDOG_TOKEN)")  # fmt: skip
    add("--timeout", type=_interval, default=5.0, metavar="SECONDS", help="how long to wait for an answer")


def status_url(url: str) -> str:
    """``http://host:port`` (or ``.../``, or the full ``.../v1/status``) -> the status document's URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--url must be an http:// or https:// URL such as {DEFAULT_URL}, got {url!r}")
    base = url.rstrip("/")
    return base if base.endswith("/v1/status") else base + "/v1/status"


def fetch(url: str, token: str | None, timeout: float, *, want: str = "targets") -> dict[str, Any]:
    """The status document at ``url``; raises ``Unreachable`` with the reason."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked
            body = resp.read(32 << 20)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            hint = "give --token or set WATCHDOG_TOKEN" if not token else "the token was refused"
            raise Unreachable(f"{url}: HTTP {exc.code}: {hint}") from None
        raise Unreachable(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        raise Unreachable(
            f"cannot reach the watchdog at {url}: {reason} (is `watchdog run` listening there?)"
        ) from None
    except TimeoutError:
        raise Unreachable(f"the watchdog at {url} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach the watchdog at {url}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise Unreachable(f"{url} did not answer with JSON: is that the watchdog's address?") from None
    if not isinstance(doc, dict) or want not in doc:
        raise Unreachable(f"{url} answered JSON that is not the watchdog's (no {want!r})")
    return doc


def problem(doc: Mapping[str, Any]) -> bool:
    """True when any rule is firing or any target has a problem (exit code 1)."""
    for t in doc.get("targets") or []:
        if t.get("problem"):
            return True
        states = list(t.get("rules") or []) + [r for w in t.get("workers") or [] for r in w.get("rules") or []]
        if any(s.get("state") == "firing" for s in states):
            return True
    return False


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: object, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else str(text)


def _clean(text: object) -> str:
    """Values from the outside world (cmdlines, messages) must not drive the terminal: no control characters."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


def fetch_flames(base: str, token: str | None, timeout: float) -> dict[int, str]:
    """The newest kept flame graph's URL per worker pid, from ``/v1/flamegraphs``; empty when there is none
    (an older watchdog, or flame graphs turned off): they are a nicety here, never a reason to fail."""
    try:
        doc = fetch(base + "/v1/flamegraphs", token, timeout, want="flamegraphs")
    except Unreachable:
        return {}
    out: dict[int, str] = {}
    for f in doc.get("flamegraphs") or []:
        if isinstance(f, dict) and isinstance(f.get("worker"), int) and isinstance(f.get("url"), str):
            out.setdefault(f["worker"], base + f["url"])
    return out


def render(
    doc: Mapping[str, Any], *, base: str, color: bool, events: int = 12, flames: Mapping[int, str] | None = None
) -> str:
    """The status document as text for a terminal; ``flames`` maps worker pids to their newest flame graph."""
    flames = flames or {}
    from watchdog.agent.page import MAIN_SIGNALS, fmt, when

    s = _Style(color)
    state_code = {"firing": "1;31", "pending": "33", "resolved": "32"}
    sev_code = {"critical": "31", "warning": "33"}
    mode = "  " + s("DRY RUN (actions recorded as would-have)", "1;33") if doc.get("dry_run") else ""
    out = [s(f"mcp-watchdog {_clean(doc.get('version'))}", "1") + f" · up {float(doc.get('uptime_seconds') or 0):.0f} s"
           + mode]  # fmt: skip
    for t in doc.get("targets") or []:
        budget = t.get("budget") or {}
        out.append("")
        out.append(
            s(f"target {_clean(t.get('name'))}", "1")
            + f" · budget {budget.get('recycles_in_window')}/{budget.get('max_recycles')} recycles used in the window"
        )
        for err in (t.get("problem"), t.get("metrics_error") and f"metrics: {t.get('metrics_error')}"):
            if err:
                out.append("  " + s(_clean(err), "31"))
        for r in t.get("rules") or []:
            out.append(
                f"  target rule {_clean(r.get('rule'))}: " + s(r.get("state"), state_code.get(r.get("state"), "0"))
            )
        probe = t.get("last_probe")
        if probe:
            ok = bool(probe.get("ok"))
            lat = probe.get("latency")
            took = f" in {lat * 1000:.0f} ms" if isinstance(lat, (int, float)) else ""
            on = f" on worker {probe.get('worker')}" if probe.get("worker") else ""
            verdict = s("passed", "32") if ok else s("FAILED", "1;31")
            out.append(f"  last probe {verdict}{took}{on}: {_clean(probe.get('reason'))}")
            for p in probe.get("probes") or []:
                for ph in p.get("phases") or []:
                    lat = ph.get("latency_s")
                    mark = s("ok", "32") if ph.get("ok") else s("failed", "31")
                    took = f"{lat * 1000:6.0f} ms" if isinstance(lat, (int, float)) else " " * 9
                    detail = _clean(ph.get("error") or ph.get("detail") or "")
                    out.append(
                        f"    {_clean(p.get('probe')):<14} {_clean(ph.get('name')):<18} {mark:<6} {took}  {detail}"
                    )
        header = f"  {'WORKER':>8} {'CPU':>6} {'RSS':>9} {'FDS':>5} {'SOCKETS':>7}  RULES / LAST STACK LOOK"
        out.append(s(header, "2"))
        for w in t.get("workers") or []:
            sig = w.get("signals") or {}
            cells = [fmt(n, sig[n]) if n in sig else "-" for n in MAIN_SIGNALS[:4]]
            rules = ", ".join(
                f"{_clean(r.get('rule'))}: " + s(r.get("state"), state_code.get(r.get("state"), "0"))
                for r in w.get("rules") or []
            )
            firing = any(r.get("state") == "firing" for r in w.get("rules") or [])
            pid = s(f"{w.get('pid'):>8}", "1;31") if firing else f"{w.get('pid'):>8}"
            stack_look = w.get("stack_verdict") or {}
            look = _clean(stack_look.get("summary", ""))
            errors = "; ".join(_clean(x) for x in (w.get("process_error"), w.get("stack_error")) if x)
            line = f"  {pid} {cells[0]:>6} {cells[1]:>9} {cells[2]:>5} {cells[3]:>7}  {rules or '-'}"
            out.append(line + (f" · {look}" if look else "") + (" · " + s(errors, "31") if errors else ""))
    evs = list(doc.get("events") or [])[-events:]
    if evs:
        out.append("")
        out.append(s("recent events (newest first)", "1"))
        for ev in reversed(evs):
            evidence = ev.get("evidence") or {}
            flame = evidence.get("flamegraph") or (evidence.get("diagnosis") or {}).get("flamegraph")
            if isinstance(flame, str):
                flame = base + flame
            elif ev.get("kind") in ("rule_firing", "recycle_started", "recycle", "budget_denied"):
                flame = flames.get(ev.get("worker"))
            link = f"  flame graph: {flame}" if isinstance(flame, str) else ""
            sev = str(ev.get("severity", "info"))
            kind = s(f"{_clean(ev.get('kind')):<16}", sev_code.get(sev, "0"))
            out.append(f"  {s(when(ev.get('time')), '2')} {kind} {_clean(ev.get('message'))}{s(link, '35')}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from watchdog.cli import EXIT_CANNOT_INSPECT, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE

    try:
        url = status_url(args.url)
    except ValueError as exc:
        print(f"watchdog status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    base = url[: -len("/v1/status")]
    tty = sys.stdout.isatty()
    color = tty and not os.environ.get("NO_COLOR")
    while True:
        try:
            doc = fetch(url, args.token, args.timeout)
        except Unreachable as exc:
            if not args.watch:
                print(f"watchdog status: {exc}", file=sys.stderr)
                return EXIT_CANNOT_INSPECT
            # on stderr, so that --json --watch stays one JSON document per line on stdout
            print(f"watchdog status: {exc} (retrying every {args.interval:g} s)", file=sys.stderr, flush=True)
        else:
            code = EXIT_PROBLEM if problem(doc) else EXIT_OK
            if args.json:
                text = json.dumps(doc, indent=None if args.watch else 1)
            else:
                flames = fetch_flames(base, args.token, args.timeout)
                text = render(doc, base=base, color=color, flames=flames)
            if args.watch and tty and not args.json:
                sys.stdout.write("\033[H\033[2J")  # redraw in place
            print(text, flush=True)
            if not args.watch:
                return code
        time.sleep(args.interval)
