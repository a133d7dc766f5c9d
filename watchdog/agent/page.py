"""The status page at ``/``: what the watchdog sees, for a person, from the same document as ``/v1/status``.

Server-rendered HTML with inline CSS and one small inline script (reload every few seconds, pausable): nothing is
fetched from anywhere else, so it works on an air-gapped host and over an SSH tunnel, and reads on a phone.
Every value that comes from outside (command lines, signal names, probe errors, event messages) is escaped:
a hostile process name must not become markup.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from watchdog.agent.history import Points
from watchdog.signals.catalog import format_value

MAIN_SIGNALS = ("cpu_percent", "rss_bytes", "open_fds", "sockets", "stack_spin_confidence", "probe_ok")
_SPARK_W, _SPARK_H = 120, 26


def e(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(name: str, value: object) -> str:
    """A signal value as an operator reads it (``412 MiB``, ``97 %``); strings (``inf``) pass through."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return format_value(name, float(value))


def when(ts: object) -> str:
    if not isinstance(ts, (int, float)):
        return ""
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%H:%M:%S")


def sparkline(name: str, points: Points) -> str:
    """A tiny inline SVG line of ``points`` (seconds ago, value), with its range in the tooltip."""
    if len(points) < 2:
        return ""
    ts = [-p[0] for p in points]
    vs = [p[1] for p in points]
    t0, t1 = min(ts), max(ts)
    lo, hi = min(vs), max(vs)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    xy = " ".join(
        f"{(t - t0) / span_t * (_SPARK_W - 2) + 1:.1f},{_SPARK_H - 2 - (v - lo) / span_v * (_SPARK_H - 4):.1f}"
        for t, v in zip(ts, vs, strict=True)
    )
    tip = f"{name} over the last {t1 - t0:.0f} s: {fmt(name, lo)} to {fmt(name, hi)}, now {fmt(name, vs[-1])}"
    return (
        f'<svg class="spark" data-signal="{e(name)}" viewBox="0 0 {_SPARK_W} {_SPARK_H}" width="{_SPARK_W}" '
        f'height="{_SPARK_H}"><title>{e(tip)}</title><polyline points="{xy}"/></svg>'
    )


def _rules(states: Iterable[Mapping[str, Any]]) -> str:
    out = []
    for s in states:
        values = ", ".join(f"{k} {fmt(k, v)}" for k, v in (s.get("values") or {}).items())
        state = str(s.get("state", ""))
        out.append(
            f'<span class="rule st-{e(state)}" data-rule="{e(s.get("rule"))}" title="{e(values)}">'
            f"{e(s.get('rule'))}: {e(state)}</span>"
        )
    return " ".join(out) or '<span class="muted">none</span>'


def _flame_links(urls: Sequence[str]) -> str:
    # relative links: the page also works behind a proxy that serves the watchdog under a path prefix
    return " ".join(f'<a class="flame" href="{e(u.lstrip("/"))}">flame graph</a>' for u in urls)


def _worker_row(w: Mapping[str, Any], hist: Mapping[str, Points], flames: Sequence[str]) -> str:
    sig = w.get("signals") or {}
    cells = "".join(f'<td class="num">{e(fmt(n, sig[n])) if n in sig else "—"}</td>' for n in MAIN_SIGNALS[:4])
    verdict = w.get("stack_verdict") or {}
    kind, summary = str(verdict.get("kind", "")), str(verdict.get("summary", ""))
    look = summary if summary.lower().startswith(kind.lower()) else f"{kind}: {summary}"
    errors = " ".join(str(x) for x in (w.get("process_error"), w.get("stack_error")) if x)
    charts = "".join(
        f'<div class="chart"><span>{label}</span>{sparkline(n, hist[n])}</div>'
        for n, label in (("cpu_percent", "CPU"), ("rss_bytes", "RSS"), ("open_fds", "fds"))
        if len(hist.get(n, ())) >= 2
    )
    others = ", ".join(f"{k} {fmt(k, v)}" for k, v in sorted(sig.items()) if k not in MAIN_SIGNALS[:4])
    firing = any(s.get("state") == "firing" for s in w.get("rules") or [])
    return (
        f'<tr class="worker{" firing" if firing else ""}" data-pid="{e(w.get("pid"))}">'
        f'<td class="pid">{e(w.get("pid"))}</td>{cells}<td>{_rules(w.get("rules") or [])}</td>'
        f'<td class="look">{e(look)}{(" " + _flame_links(flames)) if flames else ""}'
        f"{f'<div class=err>{e(errors)}</div>' if errors else ''}</td>"
        f'<td class="charts">{charts}</td></tr>'
        f'<tr class="more"><td></td><td colspan="7"><details><summary>all signals</summary>{e(others)}'
        f"</details></td></tr>"
    )


def _probe(last: Mapping[str, Any] | None) -> str:
    if not last:
        return '<p class="muted">no probe configured or none run yet</p>'
    ok = bool(last.get("ok"))
    latency = last.get("latency")
    took = f" in {latency * 1000:.0f} ms" if isinstance(latency, (int, float)) else ""
    on = f" on worker {e(last['worker'])}" if last.get("worker") else ""
    verdict = "passed" if ok else "FAILED"
    head = f'<p class="probe {"ok" if ok else "bad"}">last probe {verdict}{took}{on}: {e(last.get("reason"))}</p>'
    rows = []
    for p in last.get("probes") or []:
        for ph in p.get("phases") or []:
            lat = ph.get("latency_s")
            rows.append(
                f'<tr class="{"ok" if ph.get("ok") else "bad"}"><td>{e(p.get("probe"))}</td><td>{e(ph.get("name"))}'
                f"</td><td>{'ok' if ph.get('ok') else 'failed'}</td>"
                f'<td class="num">{f"{lat * 1000:.0f} ms" if isinstance(lat, (int, float)) else ""}</td>'
                f"<td>{e(ph.get('error') or ph.get('detail') or '')}</td></tr>"
            )
    table = (
        '<table class="phases"><tr><th>probe</th><th>phase</th><th></th><th>took</th><th>detail</th></tr>'
        + "".join(rows)
        + "</table>"
        if rows
        else ""
    )
    return head + table


def _target(t: Mapping[str, Any], hist: Mapping[int, Mapping[str, Points]], flames: Mapping[int, list[str]]) -> str:
    budget = t.get("budget") or {}
    problems = " ".join(
        f'<p class="bad">{e(x)}</p>'
        for x in (t.get("problem"), t.get("metrics_error") and f"metrics: {t.get('metrics_error')}")
        if x
    )
    tsig = ", ".join(f"{k} {fmt(k, v)}" for k, v in sorted((t.get("signals") or {}).items()))
    head = "".join(
        f"<th>{e(h)}</th>"
        for h in ("worker", "CPU", "RSS", "fds", "sockets", "rules", "last stack look", "last minutes: CPU, RSS, fds")
    )
    rows = "".join(
        _worker_row(w, hist.get(int(w.get("pid") or 0), {}), flames.get(int(w.get("pid") or 0), [])[:1])
        for w in t.get("workers") or []
    )
    return (
        f'<section class="target" data-target="{e(t.get("name"))}"><h2>target {e(t.get("name"))}</h2>{problems}'
        f"<p>budget: <b>{e(budget.get('recycles_in_window'))}</b> of {e(budget.get('max_recycles'))} recycles used "
        f"in the window · {e(tsig)}</p><p>target rules: {_rules(t.get('rules') or [])}</p>"
        f'<div class="scroll"><table class="workers"><tr>{head}</tr>{rows or "<tr><td colspan=8>no workers</td></tr>"}'
        f"</table></div><h3>probe</h3>{_probe(t.get('last_probe'))}</section>"
    )


def _evidence(ev: Mapping[str, Any], message: str) -> str:
    parts = []
    signals = ev.get("signals")
    if isinstance(signals, Mapping):
        text = ", ".join(f"{k} {fmt(k, v)}" for k, v in signals.items())
        if text not in message:  # a rule's event names its values already
            parts.append(text)
    verdict = ev.get("stack_verdict")
    if isinstance(verdict, Mapping):
        parts.append(f"stacks: {verdict.get('summary', '')}")
    rec = ev.get("recycle")
    if isinstance(rec, Mapping):
        steps = ", ".join(
            f"{s.get('step')} at {s.get('at', 0):.1f} s" for s in rec.get("steps") or [] if isinstance(s, Mapping)
        )
        parts.append(f"recycle: {rec.get('outcome', '')}" + (f" [{steps}]" if steps else ""))
    if ev.get("reason"):
        parts.append(str(ev.get("reason")))
    return e(" · ".join(p for p in parts if p))


def _event_flames(ev: Mapping[str, Any], flames: Mapping[int, list[str]]) -> list[str]:
    evidence = ev.get("evidence") or {}
    urls = [
        u
        for u in (evidence.get("flamegraph"), (evidence.get("diagnosis") or {}).get("flamegraph"))
        if isinstance(u, str)
    ]
    if (
        not urls
        and ev.get("worker") is not None
        and ev.get("kind") in ("rule_firing", "recycle_started", "recycle", "budget_denied")
    ):
        urls = flames.get(int(ev["worker"]), [])[:1]
    return urls


def render_page(
    status: Mapping[str, Any],
    *,
    history: Mapping[str, Mapping[int, Mapping[str, Points]]] | None = None,
    flames: Sequence[Mapping[str, Any]] = (),
    refresh: float = 5.0,
) -> str:
    """The whole page. ``history`` is ``watchdog.agent.history.worker_history``'s, ``flames`` the stored flame
    graphs (``FlameRecord.to_json``, newest first), ``refresh`` seconds between reloads."""
    history = history or {}
    by_worker: dict[int, list[str]] = {}
    for f in flames:
        if isinstance(f.get("worker"), int):
            by_worker.setdefault(f["worker"], []).append(str(f.get("url")))
    targets = "".join(_target(t, history.get(str(t.get("name")), {}), by_worker) for t in status.get("targets") or [])
    events = []
    for ev in reversed(list(status.get("events") or [])):
        sev = str(ev.get("severity", "info"))
        links = _flame_links(_event_flames(ev, by_worker))
        evidence = _evidence(ev.get("evidence") or {}, str(ev.get("message")))
        events.append(
            f'<tr class="event sev-{e(sev)}" data-kind="{e(ev.get("kind"))}" data-worker="{e(ev.get("worker"))}">'
            f"<td>{e(when(ev.get('time')))}</td><td>{e(ev.get('kind'))}</td><td>{e(ev.get('message'))}"
            f'<div class="evidence">{evidence} {links}</div></td></tr>'
        )
    flame_rows = "".join(
        f'<li><a class="flame" href="{e(str(f.get("url")).lstrip("/"))}">{e(f.get("name"))}</a> '
        f"{e(f.get('why') or '')}</li>"
        for f in flames[:20]
    )
    mode = " · <b class=bad>DRY RUN</b> (actions recorded as would-have)" if status.get("dry_run") else ""
    return _PAGE.format(
        version=e(status.get("version")),
        uptime=e(f"{float(status.get('uptime_seconds') or 0):.0f}"),
        mode=mode,
        rules=e(", ".join(str(r) for r in status.get("rules") or [])),
        targets=targets,
        events="".join(events) or '<tr><td colspan="3">no events yet</td></tr>',
        flames=flame_rows or '<li class="muted">none yet</li>',
        refresh=int(refresh * 1000),
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcp-watchdog</title>
<style>
body{{font:14px system-ui,sans-serif;margin:10px;color:#1d1d1d;background:#fafafa}}
h1{{font-size:18px;margin:0}}
h2{{font-size:16px;margin:16px 0 4px}}
h3{{font-size:14px;margin:10px 0 2px}}
table{{border-collapse:collapse;background:#fff;font-size:13px}}
td,th{{border-bottom:1px solid #e4e4e4;padding:3px 6px;
text-align:left;vertical-align:top}}
th{{background:#f0f0f0;font-weight:600}}
.num{{text-align:right;white-space:nowrap}}
.scroll{{overflow-x:auto}}
.muted{{color:#888}}
.bad{{color:#b00020}}
.ok{{color:#137333}}
.err{{color:#b00020;font-size:12px}}
tr.firing td.pid{{border-left:4px solid #d93025;font-weight:700}}
tr.more td{{border-bottom:1px solid #ccc;font-size:12px}}
.rule{{display:inline-block;border-radius:3px;padding:0 4px;margin:1px;font-size:12px;background:#eee}}
.st-firing{{background:#d93025;color:#fff}}
.st-pending{{background:#f9ab00}}
.st-resolved{{background:#cde8d4}}
.chart{{display:flex;align-items:center;gap:4px;font-size:11px;color:#666}}
.chart span{{width:2.2em}} .spark{{display:block;margin:1px 0}}
.spark polyline{{fill:none;stroke:#1a73e8;stroke-width:1.5}}
.sev-critical td:first-child{{border-left:4px solid #d93025}}
.sev-warning td:first-child{{border-left:4px solid #f9ab00}}
.evidence{{color:#555;font-size:12px}}
a.flame{{font-weight:600;color:#a0009a}}
.bar{{display:flex;gap:12px;
flex-wrap:wrap;align-items:baseline}}
#pause{{font-size:12px}}
td.look{{max-width:28em}}
@media (max-width:700px){{body{{margin:4px}}
td,th{{padding:2px 3px}}
.charts{{display:none}}}}
</style></head><body>
<div class="bar"><h1>mcp-watchdog</h1><span>version {version} · up {uptime} s{mode}</span>
<label id="pause"><input type="checkbox" id="paused"> pause refresh</label></div>
<p class="muted">rules: {rules} · JSON at <a href="v1/status">/v1/status</a> · <a href="metrics">/metrics</a></p>
{targets}
<h2>recent events</h2><div class="scroll"><table class="events"><tr><th>time (UTC)</th><th>kind</th><th>what</th></tr>
{events}</table></div>
<h2>flame graphs kept</h2><ul class="flames">{flames}</ul>
<script>
(function(){{var box=document.getElementById('paused');box.checked=localStorage.getItem('wd-paused')==='1';
box.onchange=function(){{localStorage.setItem('wd-paused',box.checked?'1':'0');}};
setInterval(function(){{if(!box.checked)location.reload();}},{refresh});}})();
</script>
</body></html>
"""
