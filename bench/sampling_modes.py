"""Blocking or nonblocking py-spy sampling: which sees a real anyio spin better, on which Python?

    .venv/bin/python -m bench.sampling_modes [--repeats 3] [--duration 2.5]

For each Python found (3.11 here, 3.12 and 3.13 from ``.venv-py3.X``) and each mode, samples a real spinning
``tests/diagnose/target.py spin`` with the library's own sampler and prints: samples taken, py-spy errors,
the share of samples inside ``_deliver_cancellation`` (the hit rate), the share whose innermost frame is the
selector, and what the verdict engine concluded. The cost to the target of each mode is measured by
``bench.diagnose_speed`` (echo latency with and without a diagnose running).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import anyio

from tests.diagnose.helpers import target
from watchdog.diagnose import diagnose
from watchdog.diagnose.knowledge import is_waiting

REPO = Path(__file__).resolve().parents[1]


def pythons() -> list[tuple[str, str]]:
    found = [(f"{sys.version_info[0]}.{sys.version_info[1]}", sys.executable)]
    for v in ("3.12", "3.13"):
        exe = REPO / f".venv-py{v}" / "bin" / "python"
        if exe.exists():
            found.append((v, str(exe)))
        else:
            print(f"(Python {v}: .venv-py{v} not found, skipped; `make other-pythons` makes it)")
    return found


async def main(repeats: int, duration: float) -> None:
    print(f"\n{'python':<7} {'mode':<12} {'samples':>8} {'errors':>7} {'hit rate':>16} {'in selector':>12}  verdicts")
    for version, exe in pythons():
        for nonblocking in (False, True):
            hits, sel, samples, errors, kinds = [], [], [], [], []
            for _ in range(repeats):
                with target(exe, "spin") as pid:
                    await anyio.sleep(0.3)
                    report = await diagnose(pid, duration=duration, nonblocking=nonblocking)
                p = report.processes[0]
                assert p.evidence is not None
                st = p.evidence.stacks
                main = st.threads[0]
                n = max(1, main.samples)
                hits.append(main.count_frame("_deliver_cancellation") / n)
                sel.append(main.count(lambda s: bool(s.frames) and is_waiting(s.frames[0])) / n)
                samples.append(st.samples)
                errors.append(st.errors)
                kinds.append(f"{p.verdicts[0].kind}/{p.verdicts[0].confidence}")
            rate = f"{statistics.mean(hits):5.1%} ({min(hits):.0%}-{max(hits):.0%})"
            print(f"{version:<7} {'nonblocking' if nonblocking else 'blocking':<12} "
                  f"{statistics.mean(samples):8.0f} {statistics.mean(errors):7.0f} {rate:>16} "
                  f"{statistics.mean(sel):12.1%}  {', '.join(kinds)}")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.5)
    a = ap.parse_args()
    anyio.run(main, a.repeats, a.duration)
