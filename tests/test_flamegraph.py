"""Flame graphs from recorded samples (pure), and the file as Chromium shows it: its frames, colours, search."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from tests.diagnose.recorded import recorded
from watchdog.flamegraph import WIDTH, Section, classify, render_html
from watchdog.signals.stacks import Frame, Stack, StackSamples, ThreadStacks

SVG = "{http://www.w3.org/2000/svg}"


def svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, re.S)]  # noqa: S314 - our own output


def frames(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if "f" in g.get("class", "").split()]


def test_frames_are_coloured_by_whose_code_they_are() -> None:
    lib = "/usr/lib/python3.11/site-packages"
    assert classify(Frame("CancelScope._deliver_cancellation", f"{lib}/anyio/_backends/_asyncio.py", 1)) == "spin"
    assert classify(Frame("EpollSelector.select", "/usr/lib/python3.11/selectors.py", 468)) == "wait"
    assert classify(Frame("BaseEventLoop._run_once", "/usr/lib/python3.11/asyncio/base_events.py", 1)) == "loop"
    assert classify(Frame("Client.send", f"{lib}/httpx/_client.py", 1)) == "library"
    assert classify(Frame("loads", "/usr/lib/python3.11/json/__init__.py", 1)) == "stdlib"
    assert classify(Frame("_run_code", "<frozen runpy>", 88)) == "stdlib"
    assert classify(Frame("swallow", "/srv/app/tools.py", 31)) == "app"


def test_a_spin_graph_shows_the_spin_frames_the_loop_and_the_application_apart() -> None:
    samples = recorded("spin-py311")
    page = render_html([Section("worker 1", samples)], title="spin")
    (svg,) = svgs(page)
    gs = frames(svg)
    root = next(g for g in gs if g.get("data-d") == "0")
    assert int(root.get("data-n", "0")) == sum(t.samples for t in samples.threads)
    assert float(root.find(f"{SVG}rect").get("width", "0")) == pytest.approx(WIDTH)  # type: ignore[union-attr]
    kinds = {c for g in gs for c in g.get("class", "").split() if c.startswith("k-")}
    assert {"k-spin", "k-loop", "k-app", "k-thread"} <= kinds
    spin = [g for g in gs if "k-spin" in g.get("class", "")]
    assert all("_deliver_cancellation" in (g.findtext(f"{SVG}title") or "") for g in spin)
    # every child lies within its parent: widths add up, depth by depth
    by_depth: dict[int, int] = {}
    for g in gs:
        by_depth[int(g.get("data-d", "0"))] = by_depth.get(int(g.get("data-d", "0")), 0) + int(g.get("data-n", "0"))
    assert all(by_depth[d + 1] <= by_depth[d] for d in by_depth if d + 1 in by_depth)


def test_hostile_frame_names_are_escaped() -> None:
    evil = Frame('<script>alert("x")</script>', "/srv/<img src=x onerror=alert(1)>.py", 1)
    samples = StackSamples(1, 1.0, 100, False, 5, 0, (ThreadStacks(7, "<b>t</b>", 5, (Stack((evil,), 5),)),))
    page = render_html([Section("<i>w</i>", samples, "<u>facts</u>")], title="<t>")
    assert "<script>alert" not in page
    assert "<img" not in page
    assert "<i>w</i>" not in page
    (svg,) = svgs(page)  # still well-formed SVG
    assert any('<script>alert("x")</script>' in (g.findtext(f"{SVG}title") or "") for g in frames(svg))


def test_a_stack_deeper_than_the_recursion_limit_renders() -> None:
    import sys

    deep = tuple(Frame(f"recurse{i}", "/srv/app.py", i) for i in range(sys.getrecursionlimit() + 200))
    samples = StackSamples(1, 1.0, 100, False, 3, 0, (ThreadStacks(1, "MainThread", 3, (Stack(deep, 3),)),))
    (svg,) = svgs(render_html([Section("deep", samples)], title="deep"))
    assert len(frames(svg)) == len(deep) + 2  # every frame, the thread and the root


def test_helper_threads_lose_their_idle_samples_and_the_main_thread_keeps_its_wait() -> None:
    from watchdog.flamegraph import shown_threads

    sel = Frame("EpollSelector.select", "/usr/lib/python3.11/selectors.py", 468)
    wait = Frame("Condition.wait", "/usr/lib/python3.11/threading.py", 331)
    work = Frame("publish", "/srv/app/metrics.py", 10)
    main = ThreadStacks(100, "MainThread", 10, (Stack((sel,), 10),))
    helper = ThreadStacks(101, "publisher", 10, (Stack((wait,), 8), Stack((work, wait), 2)))
    parked = ThreadStacks(102, "pool", 10, (Stack((wait,), 10),))
    shown, left_out, dropped = shown_threads(StackSamples(100, 1.0, 10, False, 30, 0, (main, helper, parked)))
    assert [(t.tid, t.samples) for t in shown] == [(100, 10), (101, 2)]
    assert left_out == ["pool"]
    assert dropped == 18
