"""The names rules may use, each declared once with its unit, source and meaning.

Built-in signals are listed in ``SIGNALS``. Two families are open-ended:

- ``metric:NAME`` or ``metric:NAME{label="value",...}``: a sample scraped from the target's ``metrics_url``,
  per worker by its ``pid`` label (a sample with no ``pid`` label counts for every worker of the target);
  several matching samples (other labels differ) are combined by their maximum.
- ``stack_share:PATTERN``: the share of recent stack samples whose frames match a pattern named in the config's
  ``stacks.patterns`` (the built-in ``deliver_cancellation`` needs no declaration).

A name that is neither is a config error, with the closest valid name suggested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Source = Literal["process", "stacks", "metrics", "probes", "target"]


@dataclass(frozen=True)
class SignalInfo:
    name: str
    unit: str
    source: Source
    doc: str


def _s(name: str, unit: str, source: Source, doc: str) -> SignalInfo:
    return SignalInfo(name, unit, source, doc)


SIGNALS: dict[str, SignalInfo] = {
    s.name: s
    for s in [
        _s("cpu_percent", "percent of one core", "process", "CPU used since the previous process sample."),
        _s(
            "loop_runnable_percent",
            "percent of wall time",
            "process",
            "Share of time the worker's main (event-loop) thread was runnable: on a CPU or waiting in the run "
            "queue for one (/proc schedstat). A spinning loop is runnable all the time even on a machine so busy "
            "that it gets 30 % of a core, where cpu_percent would understate it.",
        ),
        _s("rss_bytes", "bytes", "process", "Resident memory."),
        _s(
            "rss_growth_bytes_per_second",
            "bytes/s",
            "process",
            "Least-squares slope of RSS over the memory window (missing until it holds 3 points).",
        ),
        _s(
            "memory_limit_bytes",
            "bytes",
            "process",
            "The target's configured `memory_limit`, else the worker's cgroup memory limit (missing if neither).",
        ),
        _s("memory_used_ratio", "ratio", "process", "rss_bytes / memory_limit_bytes."),
        _s(
            "seconds_to_memory_limit",
            "seconds",
            "process",
            "Projected time until RSS reaches the limit at the current growth (infinite when not growing).",
        ),
        _s("open_fds", "count", "process", "Open file descriptors."),
        _s("fd_growth_per_second", "fds/s", "process", "Least-squares slope of open_fds over the fd window."),
        _s("sockets", "count", "process", "Open sockets (any family), counted from the process's fds."),
        _s("threads", "count", "process", "OS threads."),
        _s(
            "loop_wait_outside_selector",
            "0 or 1",
            "process",
            "1 when the worker's main (event-loop) thread sleeps in the kernel somewhere other than its selector "
            "(epoll/select/poll): a blocking call in the loop. Cheap, from /proc; a hint that triggers a stack look.",
        ),
        _s("stack_samples", "count", "stacks", "Stack samples in the latest py-spy window."),
        _s(
            "stack_active_ratio",
            "ratio",
            "stacks",
            "Share of samples in which the main (event-loop) thread was running, not waiting.",
        ),
        _s(
            "stack_loop_ratio",
            "ratio",
            "stacks",
            "Share of samples with the main thread inside event-loop machinery only (no application frame).",
        ),
        _s(
            "stack_blocked_ratio",
            "ratio",
            "stacks",
            "Share of samples with the event-loop thread stuck in a blocking call under a coroutine.",
        ),
        _s(
            "stack_spin_samples",
            "count",
            "stacks",
            "Samples showing anyio CancelScope._deliver_cancellation in the latest window.",
        ),
        _s("stack_spin_ratio", "ratio", "stacks", "stack_spin_samples / stack_samples."),
        _s(
            "stack_spin_confidence",
            "0-3",
            "stacks",
            "The diagnose engine's spin verdict on the latest look: 0 none, 1 low, 2 medium, 3 high confidence. "
            "It combines the loop thread's CPU (or time runnable), _deliver_cancellation hits, the share of "
            "loop machinery and work in flight, exactly as `watchdog diagnose` does.",
        ),
        _s(
            "stack_blocked_confidence",
            "0-3",
            "stacks",
            "The diagnose engine's blocked verdict: the loop thread stuck in one call outside its selector.",
        ),
        _s("stack_busy_confidence", "0-3", "stacks", "The diagnose engine's busy verdict: CPU-bound application code."),
        _s(
            "guard_limiter_saturation",
            "ratio",
            "metrics",
            "For a server using watchdog.guard: the fullest of the worker's limiters, in_flight / limit, each "
            "limiter matched by its name label (1.0: every slot taken, callers waiting).",
        ),
        _s("probe_ok", "0 or 1", "probes", "1 if the latest probe this worker answered passed."),
        _s(
            "probe_consecutive_failures",
            "count",
            "probes",
            "Probe failures in a row pinned on this worker: its answers name it (the probe's worker_pid rule), "
            "or it is the target's only worker.",
        ),
        _s("probe_latency_seconds", "seconds", "probes", "Duration of the latest successful probe answered here."),
        _s("target_workers", "count", "target", "Live workers of the target."),
        _s(
            "target_probe_consecutive_failures",
            "count",
            "target",
            "Probe failures in a row for the target as a whole, whichever worker (if any) was reached.",
        ),
        _s(
            "target_probe_failing_ratio",
            "ratio",
            "target",
            "Share of the target's workers whose latest attributed probe failed.",
        ),
    ]
}


def declared(source: Source) -> frozenset[str]:
    """The built-in signals one producer emits: its entries in the catalogue. A test runs each producer and
    holds what it emits to exactly this set, so a name cannot drift between its producer and the rules."""
    return frozenset(name for name, info in SIGNALS.items() if info.source == source)


_METRIC = re.compile(r"metric:([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_LABEL_OP = re.compile(r"\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(!=|=~|!~|>=|<=|==|>|<)")
_LABEL_ESCAPE = re.compile(r"\\(.)")
_STACK = re.compile(r"stack_share:([a-zA-Z_][a-zA-Z0-9_]*)")

BUILTIN_STACK_PATTERNS = {"deliver_cancellation": r"_deliver_cancellation"}


@dataclass(frozen=True)
class SignalRef:
    """A parsed signal name as a rule uses it."""

    text: str
    name: str
    source: Source
    metric: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    pattern: str | None = None

    @property
    def target_level(self) -> bool:
        return self.source == "target"


def parse_ref(text: str, *, stack_patterns: frozenset[str] = frozenset()) -> SignalRef:
    """Parse a signal reference, or raise ``ValueError`` saying what is wrong and what is close."""
    if text in SIGNALS:
        return SignalRef(text, text, SIGNALS[text].source)
    if text.startswith("metric:"):
        m = _METRIC.fullmatch(text)
        if m is None:
            raise ValueError(f'invalid metric reference {text!r}; write metric:NAME or metric:NAME{{label="v"}}')
        labels: list[tuple[str, str]] = []
        body = m.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if lm is None:
                op = _LABEL_OP.match(body, pos)
                why = (
                    f"a label matcher compares with '=' only, got {op.group(1)!r}"
                    if op is not None
                    else 'write each label as name="value" with \\", \\\\ and \\n escaped as in Prometheus text'
                )
                raise ValueError(f'invalid label matcher in {text!r}: {why}; write {{name="value",other="x"}}')
            labels.append((lm.group(1), unescape_label(lm.group(2))))
            pos = lm.end()
        return SignalRef(text, text, "metrics", metric=m.group(1), labels=tuple(sorted(labels)))
    if text.startswith("stack_share:"):
        m = _STACK.fullmatch(text)
        known = set(BUILTIN_STACK_PATTERNS) | stack_patterns
        if m is None or m.group(1) not in known:
            hint = _close(text.partition(":")[2], sorted(known))
            raise ValueError(
                f"unknown stack pattern in {text!r}{hint}; declare it under stacks.patterns "
                f"(known: {', '.join(sorted(known))})"
            )
        return SignalRef(text, text, "stacks", pattern=m.group(1))
    hint = _close(text, list(SIGNALS))
    raise ValueError(f"unknown signal {text!r}{hint}; see docs/signals.md, or use metric:NAME for a scraped metric")


def unescape_label(raw: str) -> str:
    """A label value as written between quotes in Prometheus text (``\\"``, ``\\\\``, ``\\n``) to its plain text."""
    return _LABEL_ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), raw)


def _close(word: str, options: list[str]) -> str:
    import difflib  # only for an error: not kept in the sidecar's memory

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_value(name: str, value: float | None) -> str:
    """A signal value the way an operator reads it: MiB, MiB/s, seconds, percent."""
    if value is None:
        return "missing"
    if value in (float("inf"), float("-inf")):
        return "never" if name == "seconds_to_memory_limit" else str(value)
    unit = SIGNALS[name].unit if name in SIGNALS else ""
    if unit == "bytes":
        return f"{value / 2**20:.0f} MiB"
    if unit == "bytes/s":
        return f"{value / 2**20:.1f} MiB/s"
    if unit == "seconds":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.1f} s"
    if unit == "ratio":
        return f"{value:.0%}"
    if unit.startswith("percent"):
        return f"{value:.0f} %"
    return f"{value:.3g}"


def describe_signals() -> str:
    """The signal reference (Markdown) for docs/signals.md."""
    lines = [
        "| signal | unit | source | meaning |",
        "|---|---|---|---|",
    ]
    for s in SIGNALS.values():
        lines.append(f"| `{s.name}` | {s.unit} | {s.source} | {s.doc} |")
    return "\n".join(lines) + "\n"
