"""Discovery on real processes the test starts: by pid, pidfile and command line; workers as self or children."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from watchdog.config import Match, Target
from watchdog.discovery import Discovery, WorkerId, still_same


@pytest.fixture
def family() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A parent with two children, all sharing a unique marker in their command line."""
    marker = f"wd-test-{uuid.uuid4().hex[:8]}"
    code = textwrap.dedent(f"""
        import subprocess, sys, time
        kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"]) for _ in range(2)]
        print(" ".join(str(k.pid) for k in kids), flush=True)
        time.sleep(300)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        parent.stdout.readline()
        yield parent, marker
    finally:
        for p in [*psutil.Process(parent.pid).children(), psutil.Process(parent.pid)]:
            p.kill()
        parent.wait(10)
        if parent.stdout:
            parent.stdout.close()


def target(match: Match, workers: str = "auto") -> Target:
    return Target(name="t", match=match, workers=workers)  # type: ignore[arg-type]


def test_cmdline_match_finds_the_root_and_its_children(family: tuple[subprocess.Popen[str], str]) -> None:
    parent, marker = family
    (view,) = Discovery([target(Match(cmdline=marker))]).scan()  # type: ignore[arg-type]
    kids = sorted(c.pid for c in psutil.Process(parent.pid).children())
    assert view.problem is None
    assert [w.pid for w in view.roots] == [parent.pid]
    assert [w.pid for w in view.workers] == kids


def test_workers_self_watches_the_matched_process(family: tuple[subprocess.Popen[str], str]) -> None:
    parent, _ = family
    (view,) = Discovery([target(Match(pid=parent.pid), workers="self")]).scan()
    assert [w.pid for w in view.workers] == [parent.pid]


def test_pidfile(tmp_path: Path, family: tuple[subprocess.Popen[str], str]) -> None:
    parent, _ = family
    pidfile = tmp_path / "app.pid"
    t = target(Match(pidfile=str(pidfile)))  # type: ignore[arg-type]
    assert Discovery([t]).scan()[0].problem == f"pidfile {pidfile} does not exist"
    pidfile.write_text("garbage\n")
    assert Discovery([t]).scan()[0].problem == f"pidfile {pidfile} does not hold a pid (it holds 'garbage')"
    pidfile.write_text(f"{parent.pid}\n")
    assert len(Discovery([t]).scan()[0].workers) == 2


def test_nothing_matches_is_a_visible_problem_not_a_crash() -> None:
    (view,) = Discovery([target(Match(cmdline="no-such-process-" + uuid.uuid4().hex))]).scan()  # type: ignore[arg-type]
    assert view.workers == []
    assert view.problem is not None
    assert view.problem.startswith("no process command line matches")
    (gone,) = Discovery([target(Match(pid=2**22 + 7))]).scan()
    assert gone.problem == f"no process with pid {2**22 + 7}"


def test_identity_is_pid_and_create_time(family: tuple[subprocess.Popen[str], str]) -> None:
    parent, _ = family
    real = WorkerId.of(psutil.Process(parent.pid))
    assert still_same(real)
    assert not still_same(WorkerId(real.pid, real.create_time + 5))


def test_cmdline_match_explains_itself_and_never_adopts_a_pager(tmp_path: Path) -> None:
    marker = f"wd-test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / f"{marker}.log"
    log.write_text("")
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker])
    pager = subprocess.Popen(["tail", "-f", str(log)])  # shows the marker in its arguments: not the server
    try:
        (view,) = Discovery([target(Match(cmdline=marker))]).scan()  # type: ignore[arg-type]
        assert [w.pid for w in view.workers] == [server.pid]
        assert view.matched == [f"pid {server.pid} ({Path(sys.executable).name}): {sys.executable} -c "
                                f"import time; time.sleep(300) {marker}"]  # fmt: skip
        pager_only = Discovery([target(Match(cmdline=f"{marker}.log"))]).scan()[0]  # type: ignore[arg-type]
        assert pager_only.workers == []
        assert pager_only.problem == (
            f"no process command line matches '{marker}.log' (not adopted: pid {pager.pid} (tail))"
        )
    finally:
        for p in (server, pager):
            p.kill()
            p.wait(10)
