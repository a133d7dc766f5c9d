"""Flame graphs from stack samples the watchdog already holds: one self-contained HTML file, no network.

The layout is Brendan Gregg's (``flamegraph.pl``): the root at the bottom, each stack's frames stacked on it,
a frame's width its share of the samples, siblings sorted by name so the same code lands in the same place.
Below the root come the threads (``thread 1234 MainThread``), so one graph shows a whole process. Each frame is
an SVG ``<g>`` with a ``<title>`` (full name, file, line, samples, share): the graph reads without script, in
any browser or SVG viewer, and its text names every frame. A small inline script adds what ``flamegraph.pl``'s
does: search (a regex, matches highlighted, their share of the samples shown; ``#q=REGEX`` in the URL searches
on load) and click to zoom.

Colour says whose code a frame is (``KINDS``), from the same classification the diagnose engine judges with
(``watchdog.diagnose.knowledge``): anyio's ``_deliver_cancellation`` (the spin) stands out in magenta, the
event loop's own machinery is blue, its wait in the selector grey, other installed packages green, the
standard library yellow, the application's own code warm red and orange.

Why our own renderer: py-spy renders flame graphs only from its own recording, not from samples we already
hold; ``flamegraph.pl`` would need Perl at run time and colours by palette, not by our frame classes;
d3-flame-graph needs d3 inlined into every file (~300 KB) and draws nothing without script. This module is a
pure function of the samples: ``render_html(sections)``.
"""

from __future__ import annotations

import html
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from watchdog.diagnose import knowledge
from watchdog.signals.stacks import Frame, Stack, StackSamples, ThreadStacks

if TYPE_CHECKING:
    from watchdog.diagnose.report import DiagnoseReport

WIDTH = 1200
ROW = 17
_CHAR = 7.0  # px per character of the 12 px monospace label
MIN_WIDTH = 0.3  # px: narrower frames are left out (their samples still count in the parent's width)

KINDS: dict[str, tuple[str, str]] = {
    # kind: (legend, base colour hue spec "h s l")
    "spin": ("anyio _deliver_cancellation (the spin)", "300 85 55"),
    "loop": ("event-loop machinery (asyncio, anyio, selectors)", "210 60 68"),
    "wait": ("loop waiting for I/O (selector)", "0 0 78"),
    "library": ("installed packages", "110 45 55"),
    "stdlib": ("standard library", "50 70 55"),
    "app": ("application code", "15 80 58"),
    "thread": ("thread", "0 0 88"),
}


def classify(frame: Frame) -> str:
    """The kind of a frame, for its colour: ``spin``, ``wait``, ``loop``, ``library``, ``stdlib`` or ``app``."""
    if knowledge.SPIN_FRAME.search(frame.name):
        return "spin"
    if knowledge.is_waiting(frame):
        return "wait"
    if knowledge.is_machinery(frame):
        return "loop"
    if "/site-packages/" in frame.path or "/dist-packages/" in frame.path:
        return "library"
    if knowledge.is_library(frame) or frame.path.startswith("<frozen "):
        return "stdlib"
    return "app"


@dataclass
class _Node:
    label: str
    kind: str
    detail: str = ""
    count: int = 0
    children: dict[str, _Node] = field(default_factory=dict)

    def child(self, label: str, kind: str, detail: str) -> _Node:
        node = self.children.get(label)
        if node is None:
            node = self.children[label] = _Node(label, kind, detail)
        return node

    def depth(self) -> int:
        best, todo = 0, [(self, 1)]
        while todo:  # iterative: a deeply recursive application must not make the renderer recurse as deep
            node, d = todo.pop()
            best = max(best, d)
            todo.extend((c, d + 1) for c in node.children.values())
        return best


# A helper thread waiting in one of these (a thread pool's queue, an exporter's timer) is idle: py-spy leaves
# idle samples out of its own flame graphs unless asked (``--idle``), and so do we for helper threads. The main
# thread keeps them: its loop waiting in the selector is evidence (an idle worker, not a spinning one).
_PARKED_LEAF = re.compile(r"(?:^|\.)(?:wait|get|select|poll|sleep|acquire|_wait_for_tstate_lock)$")
_PARKED_PATH = re.compile(r"(?:^|/)(?:threading|queue|selectors)\.py$|concurrent/futures/")


def _parked(s: Stack) -> bool:
    return bool(s.frames and _PARKED_LEAF.search(s.frames[0].name) and _PARKED_PATH.search(s.frames[0].path))


def shown_threads(samples: StackSamples) -> tuple[list[ThreadStacks], list[str], int]:
    """The threads a graph shows: the main thread whole, helper threads without their idle samples. Also the
    helper threads left out (idle all window) and how many idle samples of the others were left out."""
    shown: list[ThreadStacks] = []
    left_out: list[str] = []
    dropped = 0
    for t in samples.threads:
        if t.tid == samples.pid or t.name == "MainThread":
            shown.append(t)
            continue
        busy = tuple(s for s in t.stacks if not _parked(s))
        n = sum(s.count for s in busy)
        dropped += t.samples - n
        if busy:
            shown.append(ThreadStacks(t.tid, t.name, n, busy))
        else:
            left_out.append(t.name or str(t.tid))
    if not shown:  # nothing but idle helpers: show them as they are rather than nothing
        return list(samples.threads), [], 0
    return shown, left_out, dropped


def _tree(samples: StackSamples) -> _Node:
    root = _Node("all", "thread", "every sampled thread")
    for t in shown_threads(samples)[0]:
        label = f"thread {t.tid}" + (f" {t.name}" if t.name else "")
        thread = root.child(label, "thread", f"native thread id {t.tid}")
        for s in t.stacks:
            root.count += s.count
            thread.count += s.count
            node = thread
            for f in reversed(s.frames):  # outermost first
                node = node.child(str(f), classify(f), f.path)
                node.count += s.count
    return root


def _fill(kind: str, label: str) -> str:
    h, s, lum = (int(x) for x in KINDS[kind][1].split())
    jitter = zlib.crc32(label.encode()) % 17 - 8  # neighbours of one kind stay tellable apart, stably
    if kind in ("spin", "thread", "wait"):
        jitter //= 3
    return f"hsl({h + jitter},{s}%,{max(20, min(92, lum + jitter // 2))}%)"


def _fit(label: str, width: float) -> str:
    room = int((width - 6) / _CHAR)
    if room < 3:
        return ""
    return label if len(label) <= room else label[: room - 2] + ".."


def _svg(samples: StackSamples, gid: int) -> tuple[str, dict[str, int]]:
    """One process's graph as an SVG element, and the samples whose innermost frame is of each kind."""
    root = _tree(samples)
    total = max(1, root.count)
    depth = root.depth()
    height = depth * ROW + 4
    scale = WIDTH / total
    leaves: dict[str, int] = {}
    parts: list[str] = []

    todo = [(root, 0, 0)]
    while todo:
        node, x, level = todo.pop()
        inner = node.count - sum(c.count for c in node.children.values())
        if inner > 0 and level > 1:
            leaves[node.kind] = leaves.get(node.kind, 0) + inner
        w = node.count * scale
        if w >= MIN_WIDTH:
            y = height - (level + 1) * ROW
            share = 100.0 * node.count / total
            title = f"{node.label}\n{node.detail}\n{node.count} samples, {share:.1f} %" if node.detail else node.label
            parts.append(
                f'<g class="f k-{node.kind}" data-x="{x}" data-n="{node.count}" data-d="{level}">'
                f"<title>{html.escape(title)}</title>"
                f'<rect x="{x * scale:.2f}" y="{y}" width="{w:.2f}" height="{ROW - 1}" rx="2" '
                f'fill="{_fill(node.kind, node.label)}"/>'
                f'<text x="{x * scale + 3:.2f}" y="{y + ROW - 5}" data-l="{html.escape(node.label)}">'
                f"{html.escape(_fit(node.label, w))}</text></g>"
            )
        offset = x
        for child in sorted(node.children.values(), key=lambda c: c.label):
            todo.append((child, offset, level + 1))
            offset += child.count
    svg = (
        f'<svg id="g{gid}" class="flame" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" data-total="{total}" preserveAspectRatio="xMinYMin meet">{"".join(parts)}</svg>'
    )
    return svg, leaves


@dataclass(frozen=True)
class Section:
    """One graph of the file: a ``heading`` (``worker 1234``), a line of ``facts``, and the ``samples``."""

    heading: str
    samples: StackSamples
    facts: str = ""


def report_sections(report: DiagnoseReport) -> list[Section]:
    """One section per process of a diagnosis that has samples (the master first, then its workers)."""
    out = []
    for p in report.processes:
        ev = p.evidence
        if ev is None:
            continue
        who = f"{p.role} {p.pid}" + (f" ({p.server})" if p.server else "")
        state = p.state
        facts = f"CPU {ev.cpu_percent:.0f} %" + (f" · {state.kind}: {state.summary}" if state is not None else "")
        out.append(Section(who, ev.stacks, facts))
    return out


def render_html(sections: Sequence[Section] | Iterable[Section], *, title: str, subtitle: str = "") -> str:
    """A self-contained HTML page with one searchable, zoomable flame graph per section."""
    body: list[str] = []
    for i, sec in enumerate(sections):
        svg, leaves = _svg(sec.samples, i)
        n = sum(leaves.values()) or 1
        shares = " · ".join(
            f'<span class="sw k-{k}"></span>{html.escape(k)} {100.0 * c / n:.0f} %'
            for k, c in sorted(leaves.items(), key=lambda kv: -kv[1])
        )
        sampled = sec.samples
        _, hidden, dropped = shown_threads(sampled)
        how = (
            f"{sampled.samples} samples over {sampled.duration_s:g} s at {sampled.rate_hz} Hz"
            f"{', nonblocking' if sampled.nonblocking else ''}"
            f"{f', {sampled.errors} errors' if sampled.errors else ''}"
            + (f" · idle helper threads left out: {', '.join(hidden)}" if hidden else "")
            + (f" · {dropped} idle samples of helper threads left out" if dropped else "")
        )
        body.append(
            f'<section><h2>{html.escape(sec.heading)}</h2><p class="facts">{html.escape(sec.facts)}'
            f"{' · ' if sec.facts else ''}{html.escape(how)}</p>"
            f'<p class="facts">innermost frame by kind: {shares or "no samples"}</p>{svg}</section>'
        )
    legend = "".join(
        f'<span class="lg"><span class="sw k-{k}"></span>{html.escape(text)}</span>' for k, (text, _) in KINDS.items()
    )
    return _PAGE.format(
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        legend=legend,
        swatches="".join(f".sw.k-{k}{{background:{_fill(k, k)}}}" for k in KINDS),
        body="".join(body) or "<p>No samples.</p>",
        script=_SCRIPT,
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:12px;color:#222;background:#fff}}
h1{{font-size:18px;margin:0 0 4px}} h2{{font-size:15px;margin:18px 0 2px}}
.facts,.sub{{color:#555;margin:2px 0;font-size:13px}}
.bar{{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd;z-index:1}}
#q{{width:22em;max-width:60%;font:13px monospace}} #matched{{margin-left:8px;font-weight:600}}
.lg{{margin-right:12px;font-size:12px;white-space:nowrap}}
.sw{{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}}
{swatches}
svg.flame{{display:block;margin-top:4px}}
svg.flame text{{font:12px monospace;fill:#000;pointer-events:none}}
svg.flame g.f{{cursor:pointer}} svg.flame g.f:hover rect{{stroke:#000;stroke-width:.6}}
svg.flame g.hit rect{{fill:#e0f !important;stroke:#000}} svg.flame g.above rect{{opacity:.45}}
svg.flame g.hidden{{display:none}}
#detail{{font:12px monospace;white-space:pre-wrap;min-height:3em;color:#333}}
</style></head><body>
<div class="bar"><h1>{title}</h1><p class="sub">{subtitle}</p>
<input id="q" type="search" placeholder="search frames (regex), e.g. _deliver_cancellation">
<button id="reset" type="button">reset zoom</button><span id="matched"></span>
<div>{legend}</div><div id="detail">click a frame to zoom; hover for its file, line and samples</div></div>
{body}
<script>{script}</script>
</body></html>
"""

# Search and zoom in the manner of flamegraph.pl's script, over the data-x (first sample), data-n (samples)
# and data-d (depth) of each frame.
_SCRIPT = r"""
(function(){
var W=1200,CH=7;
function fit(t,w){var r=Math.floor((w-6)/CH);if(r<3)return '';return t.length<=r?t:t.slice(0,r-2)+'..';}
function lay(svg,x0,n,d0){var s=W/n;svg.querySelectorAll('g.f').forEach(function(g){
 var x=+g.dataset.x,c=+g.dataset.n,d=+g.dataset.d,r=g.querySelector('rect'),t=g.querySelector('text');
 var inside=x>=x0&&x+c<=x0+n&&d>=d0, below=d<d0&&x<=x0&&x+c>=x0+n;
 g.classList.toggle('hidden',!(inside||below));g.classList.toggle('above',below);
 var nx=below?0:(x-x0)*s,w=below?W:c*s;r.setAttribute('x',nx.toFixed(2));r.setAttribute('width',w.toFixed(2));
 t.setAttribute('x',(nx+3).toFixed(2));t.textContent=fit(t.dataset.l,w);});}
function reset(){document.querySelectorAll('svg.flame').forEach(function(svg){lay(svg,0,+svg.dataset.total,0);});}
document.querySelectorAll('svg.flame').forEach(function(svg){
 svg.addEventListener('click',function(e){var g=e.target.closest('g.f');if(!g)return;
  lay(svg,+g.dataset.x,+g.dataset.n,+g.dataset.d);});
 svg.addEventListener('mouseover',function(e){var g=e.target.closest('g.f');
  if(g)document.getElementById('detail').textContent=g.querySelector('title').textContent;});});
document.getElementById('reset').onclick=reset;
document.getElementById('q').addEventListener('input',function(){var q=this.value,rx=null,out='';
 try{rx=q?new RegExp(q):null;}catch(err){out='bad regex';}
 document.querySelectorAll('svg.flame').forEach(function(svg){var spans=[],tot=+svg.dataset.total;
  svg.querySelectorAll('g.f').forEach(function(g){var hit=!!rx&&+g.dataset.d>1&&rx.test(g.dataset.name||
   g.querySelector('text').dataset.l);g.classList.toggle('hit',hit);if(hit)spans.push([+g.dataset.x,+g.dataset.n]);});
  spans.sort(function(a,b){return a[0]-b[0];});var m=0,end=-1;
  spans.forEach(function(p){var a=Math.max(p[0],end),b=p[0]+p[1];if(b>a){m+=b-a;end=b;}});
  if(rx)out+=(out?' · ':'')+svg.id.replace('g','graph ')+': '+(100*m/tot).toFixed(1)+' %';});
 document.getElementById('matched').textContent=rx?'matched '+out:out;});
var h=/^#q=(.*)$/.exec(location.hash);if(h){var q=document.getElementById('q');q.value=decodeURIComponent(h[1]);
 q.dispatchEvent(new Event('input'));}
})();
"""
