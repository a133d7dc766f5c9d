"""Record test data from a real target: ``python -m tests.diagnose.record MODE PYTHON NAME [DUMPS]`` writes
``data/NAME.raw`` (2 s of ``py-spy record --format raw``, as diagnose takes it) and ``data/NAME.locals.jsonl``
(``py-spy dump --locals --json`` outputs, one a line, as the spin check takes them)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.diagnose.helpers import target
from tests.diagnose.recorded import DATA
from watchdog.signals.affinity import pin_to_target
from watchdog.signals.stacks import find_py_spy


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


def main(mode: str, python: str, name: str, dumps: int = 30) -> None:
    exe = find_py_spy()
    with target(python, mode) as pid:
        raw = DATA / f"{name}.raw"
        subprocess.run([exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(raw), "--rate", "100",
                        "--duration", "2", "--threads", "--idle", "--full-filenames"], check=True)  # fmt: skip
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
