"""Record test data from a real target: ``python -m tests.diagnose.record MODE PYTHON NAME [DUMPS]`` writes
``data/NAME.raw`` (2 s of ``py-spy record --format raw``, as diagnose takes it) and ``data/NAME.locals.jsonl``
(``py-spy dump --locals --json`` outputs, one a line, as the spin check takes them).

MODE ``demo-load`` records a worker of the demo server (``examples/demo``, 2 workers) under the overhead bench's
load (16 clients calling echo), once a window would take a ``--locals`` series (its samples alone judge it a
spin suspect: a few of anyio's own cancellations beside the server's work); PYTHON is ignored there (the demo
runs on this one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

from bench._load import run_load
from examples.demo.harness import DemoServer
from tests.diagnose.helpers import target
from tests.diagnose.recorded import DATA, evidence
from watchdog.diagnose.verdicts import state_verdict
from watchdog.signals.affinity import pin_to_target
from watchdog.signals.stacks import find_py_spy, parse_raw


def compact(dump: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the spin check reads of a dump, nothing more (the files stay small)."""
    keep = ("name", "filename", "line")
    return [
        {"os_thread_id": th.get("os_thread_id"), "thread_id": th.get("thread_id"),
         "frames": [{**{k: f.get(k) for k in keep},
                     "locals": [{"name": v.get("name"), "repr": v.get("repr")} for v in f.get("locals") or []]}
                    for f in th.get("frames") or []]}
        for th in dump
    ]  # fmt: skip


def record_raw(exe: str, pid: int, raw: Path) -> None:
    subprocess.run([exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(raw), "--rate", "100",
                    "--duration", "2", "--threads", "--idle", "--full-filenames"], check=True)  # fmt: skip


def main(mode: str, python: str, name: str, dumps: int = 30) -> None:
    if mode == "demo-load":
        anyio.run(record_demo, name, dumps)
        return
    with target(python, mode) as pid:
        record_raw(find_py_spy(), pid, DATA / f"{name}.raw")
        record_locals(pid, name, dumps)


async def record_demo(name: str, dumps: int, tries: int = 60) -> None:
    exe = find_py_spy()
    raw = DATA / f"{name}.raw"
    with DemoServer(workers=2) as demo:
        async with anyio.create_task_group() as tg:

            async def load() -> None:
                await run_load(demo.mcp_url, clients=16, seconds=900)

            tg.start_soon(load)
            await anyio.sleep(5)  # the server warms up
            pid = demo.worker_pids()[0]
            for attempt in range(1, tries + 1):
                await anyio.to_thread.run_sync(record_raw, exe, pid, raw)
                samples = parse_raw(raw.read_text(), duration_s=2.0, rate_hz=100)
                if state_verdict(evidence(samples, cpu=99.0)).kind == "spin":  # as with_locals decides
                    print(f"window {attempt} would take a series: recording its dumps")
                    await anyio.to_thread.run_sync(record_locals, pid, name, dumps)
                    break
            else:
                raw.unlink()
                raise SystemExit(f"no window of {tries} would take a series")
            tg.cancel_scope.cancel()


def record_locals(pid: int, name: str, dumps: int) -> None:
    exe = find_py_spy()
    lines = []
    for _ in range(dumps):
        # on the target's CPU, as diagnose takes them (watchdog.signals.affinity)
        proc = subprocess.Popen([exe, "dump", "--pid", str(pid), "--locals", "--json", "--full-filenames"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            pin_to_target(proc.pid, pid)
            out, _ = proc.communicate(timeout=10)
        finally:  # a py-spy that hangs is not left behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode == 0:
            lines.append(json.dumps(compact(json.loads(out))))
    (DATA / f"{name}.locals.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:]))
