"""What tells a real cancel-delivery spin from healthy cancel-heavy work, and who keeps the spin going.

**The scope.** anyio's ``CancelScope._deliver_cancellation(self, origin)`` re-arms itself with ``call_soon`` for
as long as a task in the cancelled scope will not finish. In a spin it is the *same* ``origin`` scope, sample
after sample and look after look; where timeouts fire all the time in healthy work (thousands of short
``move_on_after`` scopes a second), each sample shows another scope. Samples alone cannot tell the two apart (a
healthy cancel-heavy worker shows ~10 % ``_deliver_cancellation``); ``py-spy dump --locals`` can, because it
shows ``origin`` as ``<CancelScope at 0x7f...>``. A freed scope's memory may be reused by the next one (measured:
one task looping on ``move_on_after(0)`` rotated four addresses), so one address must hold nearly all the hits
(``same_share``), most of them re-armed deliveries (straight under the loop's ``Handle._run``), not one or two.

**The culprit.** The task that swallows the cancellation runs on every re-delivery: its frame recurs directly
beneath anyio/asyncio's sleep, checkpoint or ``get_cancelled_exc_class`` (the ``except`` line). The application
frame found there most often, far more than any other, is named; code that merely runs beside the spin in
another task shows up as its own work (its leaf frames), not beneath a cancelled await, and is never named.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from watchdog.diagnose import knowledge as k
from watchdog.signals.stacks import Frame, LocalFrame, LocalsDump, LocalsSeries, Stack

Confidence = Literal["high", "medium", "low"]
_SCOPE = re.compile(r"^<CancelScope at (0x[0-9a-fA-F]+)>$")
_OBJECT = re.compile(r"^<([\w.]+) at 0x[0-9a-fA-F]+>$")
_STRING = re.compile(r"^\"(.{1,80})\"$")
# what a task calls when it awaits again after catching the cancellation (anyio and asyncio names)
_CANCEL_CALL = re.compile(r"(?:^|\.)(?:get_cancelled_exc_class|cancel_shielded_checkpoint|checkpoint_if_cancelled)$")
_AWAIT_CALL = re.compile(
    r"(?:^|\.)(?:sleep|sleep_forever|sleep_until|checkpoint|wait|receive|acquire|get_cancelled_exc_class"
    r"|cancel_shielded_checkpoint|checkpoint_if_cancelled|wait_for|shield|gather)$"
)
# locals that name the task or tool a frame serves (MCP SDKs pass the tool's name down as ``name``)
_NAME_LOCALS = ("tool_name", "name", "task_name")
# every local this module reads: a locals series keeps these, of the loop thread, and nothing else
LOCALS_READ = frozenset({"origin", "waiter", *_NAME_LOCALS})


@dataclass(frozen=True)
class ScopeEvidence:
    """Which cancel scopes ``_deliver_cancellation`` was delivering, over ``dumps`` locals dumps of the loop
    thread in ``looks`` looks: ``scopes`` (address -> dumps, most first), ``redelivered`` (dumps of the top scope
    re-armed by ``call_soon``), ``hits`` (dumps in ``_deliver_cancellation`` with a readable ``origin``), and the
    ``awaited`` object types the delivery found (``waiter`` locals)."""

    dumps: int
    hits: int
    scopes: tuple[tuple[str, int], ...] = ()
    redelivered: int = 0
    looks: int = 1
    awaited: tuple[str, ...] = ()
    lifecycle: float = 0.0  # share of the loop thread's samples entering, leaving or cancelling a scope

    @property
    def top(self) -> tuple[str, int] | None:
        return self.scopes[0] if self.scopes else None

    def merged(self, earlier: ScopeEvidence | None) -> ScopeEvidence:
        """This look's evidence plus an earlier look's, when the earlier one pointed at the same scope (a spin
        keeps its scope; another scope means the earlier look saw something else, and it is dropped). A look that
        caught no delivery at all carries the earlier evidence on, its samples counted."""
        if earlier is None or earlier.top is None:
            return self
        if self.top is None:  # no delivery caught this time: it neither confirms nor denies the earlier scope
            return ScopeEvidence(self.dumps + earlier.dumps, earlier.hits, earlier.scopes, earlier.redelivered,
                                 self.looks + earlier.looks, earlier.awaited,
                                 max(self.lifecycle, earlier.lifecycle))  # fmt: skip
        if earlier.top[0] != self.top[0]:
            return self
        if earlier.decision() == "churn":  # an earlier look that saw many scopes says nothing for this one
            return self
        counts = Counter(dict(self.scopes)) + Counter(dict(earlier.scopes))
        return ScopeEvidence(self.dumps + earlier.dumps, self.hits + earlier.hits, tuple(counts.most_common()),
                             self.redelivered + earlier.redelivered, self.looks + earlier.looks,
                             tuple(dict.fromkeys(self.awaited + earlier.awaited)),
                             max(self.lifecycle, earlier.lifecycle))  # fmt: skip

    def decision(
        self, min_same: int = 3, same_share: float = 0.8, strict_same: int = 5, churn_lifecycle: float = 0.2
    ) -> Literal["same", "churn", "unknown"]:
        """``same``: one scope re-delivered again and again (a spin); ``churn``: deliveries spread over several
        scopes, or one address proven reused (timeouts firing in healthy work); ``unknown``: too few to say.

        A scope is cancelled once, so two *first* deliveries (from ``cancel``/``__enter__``, not re-armed) at one
        address are two scopes whose memory was reused. Where the samples show scopes being entered and
        cancelled all the time (``lifecycle`` share at least ``churn_lifecycle``: a spin makes no new scopes,
        0 % in every recorded spin, 35-63 % in churn), reuse is likely, and ``strict_same`` re-armed deliveries
        with no first delivery are needed.
        """
        top = self.top
        if top is not None and top[1] >= min_same and top[1] >= same_share * self.hits:
            first = top[1] - self.redelivered
            if first >= 2:
                return "churn"
            if self.lifecycle >= churn_lifecycle and (first > 0 or top[1] < strict_same):
                return "churn" if len(self.scopes) >= 2 else "unknown"
            return "same"
        if len(self.scopes) >= 2 and self.hits >= 2:
            return "churn"
        return "unknown"

    def sentence(self) -> str:
        looks = f" over {self.looks} looks" if self.looks > 1 else ""
        top = self.top
        if top is None:
            return f"py-spy --locals: no cancel delivery caught in {self.dumps} samples{looks}"
        if self.decision() == "same":
            return f"the same CancelScope {top[0]} re-delivered in {top[1]} of {self.dumps} samples{looks}"
        first = top[1] - self.redelivered
        if first >= 2:
            return (f"py-spy --locals: address {top[0]} delivered in {top[1]} of {self.dumps} samples{looks}, "
                    f"{first} of them first deliveries: new scopes reusing freed memory")  # fmt: skip
        if len(self.scopes) == 1:
            return f"py-spy --locals: CancelScope {top[0]} delivered in only {top[1]} of {self.dumps} samples{looks}"
        return (f"py-spy --locals: {self.hits} of {self.dumps} samples{looks} delivering cancellation to "
                f"{len(self.scopes)} different CancelScopes"
                + (f" (most often {top[0]}, {top[1]} times)" if top[1] > 1 else ", each once"))  # fmt: skip


_LIFECYCLE = re.compile(
    r"CancelScope\.(?:__enter__|__exit__|__init__|cancel|_timeout)$|(?:^|\.)(?:move_on_after|fail_after)$"
)


def lifecycle_share(stacks: tuple[Stack, ...], samples: int) -> float:
    """The share of samples creating, entering, leaving or cancelling a cancel scope: what timeout churn does
    all the time and a spin (one old scope re-delivered) does not."""
    if samples <= 0:
        return 0.0
    return sum(s.count for s in stacks if any(_LIFECYCLE.search(f.name) for f in s.frames)) / samples


def _outer_delivery(frames: tuple[LocalFrame, ...]) -> int | None:
    idx = [i for i, f in enumerate(frames) if k.SPIN_FRAME.search(f.frame.name)]
    return idx[-1] if idx else None


def scope_evidence(series: LocalsSeries | None, tid: int, lifecycle: float = 0.0) -> ScopeEvidence | None:
    """The scopes delivered in thread ``tid`` across a series of locals dumps (None when no dump was read)."""
    if series is None or not series.dumps:
        return None
    scopes: Counter[str] = Counter()
    rearmed: Counter[str] = Counter()
    awaited: list[str] = []
    seen = 0
    for d in series.dumps:
        frames = d.thread(tid)
        if frames is None:
            continue
        seen += 1
        i = _outer_delivery(frames)
        if i is None:
            continue
        m = _SCOPE.match(frames[i].local("origin") or "")
        if not m:
            continue  # a torn read (nonblocking) shows garbage: never count it
        addr = m.group(1).lower()
        scopes[addr] += 1
        if i + 1 < len(frames) and frames[i + 1].frame.name.endswith("Handle._run"):
            rearmed[addr] += 1
        for f in frames[: i + 1]:
            w = _OBJECT.match(f.local("waiter") or "")
            if w and w.group(1) not in awaited:
                awaited.append(w.group(1))
    if seen == 0:
        return None
    ordered = tuple(scopes.most_common())
    top = ordered[0][0] if ordered else None
    return ScopeEvidence(seen, sum(scopes.values()), ordered, rearmed[top] if top else 0, 1, tuple(awaited),
                         lifecycle)  # fmt: skip


def enough_seen(tid: int, decisive: int = 6, give_up_after: int = 12) -> Callable[[list[LocalsDump]], bool]:
    """A stop condition for a dump series: the same scope ``decisive`` times, three different scopes, or no
    delivery at all in ``give_up_after`` dumps (a spin shows one in 10-40 % of them on Python 3.11-3.13)."""

    def enough(dumps: list[LocalsDump]) -> bool:
        se = scope_evidence(LocalsSeries(tuple(dumps), len(dumps)), tid)
        if se is None:
            return len(dumps) >= give_up_after
        top = se.top
        if top is None:
            return se.dumps >= give_up_after
        return (top[1] >= decisive and se.decision() == "same") or len(se.scopes) >= 3

    return enough


@dataclass(frozen=True)
class Culprit:
    """The code most likely keeping a spin going: ``function`` at ``path``:``line`` (its most frequent line),
    found beneath a cancelled await in ``samples`` of the loop thread's ``of`` samples; ``application`` is False
    when only library code shows (then ``function`` is the library frame, and ``awaited`` the type of what the
    cancelled task awaits, when the locals show it). ``task`` is the task or tool name the locals gave."""

    function: str
    path: str
    line: int
    samples: int
    of: int
    confidence: Confidence
    application: bool = True
    task: str | None = None
    awaited: str | None = None
    catches: bool = False  # seen evaluating anyio's get_cancelled_exc_class: an ``except`` for cancellation
    lines: dict[int, int] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.samples / self.of if self.of else 0.0

    @property
    def where(self) -> str:
        return f"{Frame(self.function, self.path, self.line).short_path}:{self.line}"

    def summary(self) -> str:
        """One line for notifications: who, where, how often, how sure."""
        task = f", task {self.task!r}" if self.task else ""
        if not self.application:
            what = f" awaiting a {self.awaited}" if self.awaited else ""
            return (f"no application frame: library code {self.function} ({self.where}){what} recurs beneath "
                    f"the cancelled await in {self.samples} of {self.of} samples{task} "
                    f"({self.confidence} confidence)")  # fmt: skip
        return (f"{self.function} at {self.where}{task} keeps the spin going: beneath the cancelled await in "
                f"{self.samples} of {self.of} samples ({self.share:.0%}, {self.confidence} confidence)")  # fmt: skip

    def advice(self) -> str:
        if not self.application:
            return (f"No application frame shows: the cancellation is swallowed inside {self.function} "
                    f"({self.where}){f', awaiting a {self.awaited}' if self.awaited else ''}. Upgrade or bound that "
                    "library call (anyio.move_on_after(t, shield=True) around it); watchdog.guard's spin sentinel "
                    "sees the stuck task from inside the worker.")  # fmt: skip
        return (
            f"`{self.function}` at {self.where} catches the cancellation and awaits again: re-raise it "
            "(`except CancelledError: ...; raise`), or bound the wait with a cleanup timeout "
            "(anyio.move_on_after(t, shield=True))."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": Frame(self.function, self.path, self.line).short_path,
            "path": self.path,
            "line": self.line,
            "samples": self.samples,
            "of": self.of,
            "share": round(self.share, 4),
            "confidence": self.confidence,
            "application": self.application,
            "task": self.task,
            "awaited": self.awaited,
            "summary": self.summary(),
        }


def _is_app(f: Frame) -> bool:
    return bool(f.path) and not k.is_machinery(f) and not k.is_library(f)


def _beneath_await(frames: tuple[Frame, ...], want_app: bool) -> tuple[int, bool] | None:
    """Where the first frame of the kind wanted sits, when everything inside it is loop machinery that it
    called to await (sleep, checkpoint, get_cancelled_exc_class...); and whether it was catching cancellation."""
    for j, f in enumerate(frames):
        if k.is_machinery(f):
            continue
        if (want_app and not _is_app(f)) or (not want_app and (not f.path or _is_app(f))):
            return None
        if j == 0 or not _AWAIT_CALL.search(frames[j - 1].name):
            return None
        return j, any(_CANCEL_CALL.search(x.name) for x in frames[:j])
    return None


_Key = tuple[str, str]


_Tally = tuple[Counter[_Key], dict[_Key, Counter[int]], dict[_Key, Counter[int]]]


def _tally(stacks: tuple[Stack, ...], want_app: bool) -> _Tally:
    """Per (function, path): samples beneath an await, their lines, and the lines where it caught cancellation."""
    counts: Counter[_Key] = Counter()
    lines: dict[_Key, Counter[int]] = {}
    catching: dict[_Key, Counter[int]] = {}
    for s in stacks:
        if not s.frames or k.is_waiting(s.frames[0]) or any(k.SPIN_FRAME.search(f.name) for f in s.frames):
            continue
        hit = _beneath_await(s.frames, want_app)
        if hit is None:
            continue
        j, catches = hit
        f = s.frames[j]
        key = (f.name, f.path)
        counts[key] += s.count
        lines.setdefault(key, Counter())[f.line] += s.count
        if catches:
            catching.setdefault(key, Counter())[f.line] += s.count
    return counts, lines, catching


def _task_name(series: LocalsSeries | None, tid: int, function: str, path: str) -> str | None:
    """A string local naming the task or tool, in the frames beneath the culprit's in the dumps that show it."""
    if series is None:
        return None
    names: Counter[str] = Counter()
    for d in series.dumps:
        frames = d.thread(tid) or ()
        at = next((i for i, f in enumerate(frames) if f.frame.name == function and f.frame.path == path), None)
        if at is None:
            continue
        for f in frames[at + 1 :]:
            value = next((m.group(1) for n in _NAME_LOCALS if (m := _STRING.match(f.local(n) or ""))), None)
            if value:
                names[value] += 1
                break
    return names.most_common(1)[0][0] if names else None


def dump_stacks(series: LocalsSeries | None, tid: int) -> tuple[Stack, ...]:
    """Thread ``tid``'s stack in each dump of a locals series, one sample each: where a recording on a quiet VM
    landed at the loop's system calls, the dumps (taken from the target's CPU) show where it runs."""
    if series is None:
        return ()
    return tuple(Stack(tuple(f.frame for f in frames), 1) for d in series.dumps if (frames := d.thread(tid)))


def find_culprit(stacks: tuple[Stack, ...], samples: int, series: LocalsSeries | None, tid: int,
                 scopes: ScopeEvidence | None = None, min_share: float = 0.05) -> Culprit | None:  # fmt: skip
    """The application frame that keeps a spin going, or the library frame when no application frame shows.

    Named only when it dominates: at least ``min_share`` of the loop thread's samples beneath a cancelled await,
    and at least twice the next candidate (two tasks re-awaiting alike cannot be told apart, so none is named).
    """
    if samples <= 0:
        return None
    awaited = scopes.awaited[0] if scopes is not None and scopes.awaited else None
    for want_app in (True, False):
        counts, lines, catching = _tally(stacks, want_app)
        if not counts:
            continue
        ranked = counts.most_common(2)
        (key, n) = ranked[0]
        runner = ranked[1][1] if len(ranked) > 1 else 0
        if n < min_share * samples or n < 2 * runner:
            return None
        share = n / samples
        catches = key in catching
        conf: Confidence = "high" if (catches or share >= 0.2) and n >= 3 * runner else "medium"
        if share < 0.1:
            conf = "low"
        # the ``except`` line when it was seen catching (what to fix), else where it waits most
        line = (catching.get(key) or lines[key]).most_common(1)[0][0]
        name, path = key
        return Culprit(name, path, line, n, samples, conf, want_app, _task_name(series, tid, name, path),
                       awaited, catches, dict(lines[key]))  # fmt: skip
    return None
