"""py-spy sampling: parsing its raw output, mapping its errors, and never leaving a py-spy behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import psutil
import pytest

from tests.conftest import py_spy_path, python_with_anyio
from tests.diagnose.helpers import target
from tests.diagnose.recorded import recorded, recorded_locals
from watchdog.errors import NotPython, ProcessGone, PtraceDenied, SamplerFailed, UnsupportedPython
from watchdog.signals.stacks import (
    Keep,
    check_supported,
    classify_failure,
    dump_locals,
    parse_dump,
    parse_raw,
    sample_stacks,
)


def test_parse_raw_keeps_threads_frames_innermost_first_and_counts() -> None:
    text = (
        "thread (11): MainThread;<module> (/app/x.py:1);f (/usr/lib/python3.11/asyncio/events.py:80) 7\n"
        "thread (11): MainThread;<module> (/app/x.py:1) 3\n"
        "thread (0x7F00AB): worker;run (/app/site-packages/lib/w.py:9) 2\n"
    )
    st = parse_raw(text)
    assert st.samples == 12
    main = st.thread(11)
    assert main is not None
    assert (main.name, main.samples) == ("MainThread", 10)
    assert main.stacks[0].count == 7
    assert str(main.stacks[0].frames[0]) == "f (asyncio/events.py:80)"
    assert main.stacks[0].frames[-1].name == "<module>"
    assert st.thread(0x7F00AB) is not None
    assert "/app/x.py" in st.files()


def test_a_recorded_spin_has_deliver_cancellation_frames() -> None:
    st = recorded("spin-py311")
    assert st.threads[0].count_frame("_deliver_cancellation") > 0


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ("Permission Denied: Try running again with elevated permissions by going 'sudo env \"PATH=$PATH\" !!'",
         PtraceDenied),
        ("Error: Failed to get process executable name. Check that the process is running.\n"
         "Caused by: No such file or directory (os error 2)", ProcessGone),
        ("Error: Failed to find python version from target process", NotPython),
        ("Error: Unsupported version of Python: 3.14.0", UnsupportedPython),
        ("Error: something new", SamplerFailed),
    ],
)  # fmt: skip
def test_py_spy_complaints_map_to_errors_that_say_what_to_do(stderr: str, error: type[Exception]) -> None:
    # the texts are py-spy 0.4.3's own, seen on this machine (the 3.14 one from its source: no 3.14 here)
    exc = classify_failure(42, 1, stderr)
    assert isinstance(exc, error)
    if isinstance(exc, UnsupportedPython):
        assert exc.version == "3.14.0"


def test_supported_versions() -> None:
    check_supported(1, "3.13.0")
    check_supported(1, "3.8")
    for bad in ("2.7.18", "3.7.16", "3.14.0"):
        with pytest.raises(UnsupportedPython):
            check_supported(1, bad)


def py_spies_of(parent: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(parent).children(recursive=True) if "py-spy" in c.name()]


@pytest.mark.anyio
async def test_a_cancelled_sampler_kills_and_reaps_its_py_spy() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "idle") as pid:
        with anyio.move_on_after(1.0) as scope:
            await sample_stacks(pid, duration=30.0)
        assert scope.cancelled_caught
        assert py_spies_of(os.getpid()) == []


@pytest.mark.anyio
async def test_samples_per_thread_match_the_rate() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "idle") as pid:
        st = await sample_stacks(pid, duration=1.0, rate=50)
    assert st.rate_hz == 50
    assert 25 <= st.samples <= 75, st.samples
    assert st.threads[0].tid == pid


def test_py_spy_output_is_read_up_to_a_bound_at_a_whole_line(tmp_path: Path) -> None:
    from watchdog.signals.stacks import _read_bounded

    out = tmp_path / "stacks.raw"
    out.write_bytes(b"a;b;c 1\n" * 1000)
    text = _read_bounded(str(out), 100)
    assert text == "a;b;c 1\n" * 12  # 96 bytes: the 13th line would cross the bound
    assert _read_bounded(str(out), 10**6) == "a;b;c 1\n" * 1000


def test_parse_dump_keeps_frames_innermost_first_with_their_locals() -> None:
    d = recorded_locals("spin-py311").dumps
    tid = recorded("spin-py311").threads[0].tid
    frames = d[0].thread(tid)
    assert frames is not None
    assert frames[-1].frame.name == "<module>"
    delivering = [f for x in d for f in x.thread(tid) or () if f.frame.name.endswith("_deliver_cancellation")]
    assert delivering
    assert (delivering[0].local("origin") or "").startswith("<CancelScope at 0x")
    assert delivering[0].local("no such local") is None


def test_parsed_frames_share_their_strings_and_objects_across_looks() -> None:
    path = "/srv/app/" + "tools.py"  # built at run time, as text read from py-spy is
    raw = f"thread (11): MainThread;f ({path}:3);g ({path}:4) 2\n"
    first = parse_raw(raw).threads[0].stacks[0].frames
    again = parse_raw(raw.encode().decode()).threads[0].stacks[0].frames  # fresh strings, equal text
    assert [f.name for f in first] == ["g", "f"]
    assert first[0] is again[0]  # one object per frame, however many looks hold it
    assert first[0].path is first[1].path  # the lines of one file share its path


def test_parse_dump_keeps_only_the_thread_and_the_locals_asked_for_and_shares_bare_frames() -> None:
    def thread(tid: int, secret: str) -> dict[str, object]:
        frames = [
            {"name": "_deliver_cancellation", "filename": "/x/anyio/_asyncio.py", "line": 7,
             "locals": [{"name": "origin", "repr": "<CancelScope at 0xabc>"}, {"name": "token", "repr": secret}]},
            {"name": "run", "filename": "/x/app.py", "line": 3, "locals": [{"name": "token", "repr": secret}]},
        ]  # fmt: skip
        return {"os_thread_id": tid, "frames": frames}

    text = json.dumps([thread(11, '"s3cret-a"'), thread(22, '"s3cret-b"')])
    whole = parse_dump(text)
    assert [tid for tid, _ in whole.threads] == [11, 22]
    assert (whole.thread(22) or ())[0].local("token") == '"s3cret-b"'
    kept = parse_dump(text, 0.5, Keep(11, frozenset({"origin"})))
    assert [tid for tid, _ in kept.threads] == [11]
    (delivering, bare) = kept.thread(11) or ()
    assert delivering.locals == (("origin", "<CancelScope at 0xabc>"),)
    assert bare.locals == ()  # nothing of the secret is kept
    assert "s3cret" not in repr(kept)
    again = parse_dump(text, 0.6, Keep(11, frozenset({"origin"})))
    assert (again.thread(11) or ())[1] is bare  # a frame without locals is one shared object across dumps
    assert (again.thread(11) or ())[0].frame is delivering.frame


@pytest.mark.anyio
async def test_a_locals_series_takes_its_dumps_and_says_what_they_cost() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "idle") as pid:
        series = await dump_locals(pid, count=3, interval=0.01)
        stopped = await dump_locals(pid, count=10, enough=lambda dumps: len(dumps) >= 2)
    assert (len(series.dumps), series.asked, series.failed) == (3, 3, 0)
    assert series.cpu_s > 0
    assert series.dumps[0].thread(pid) is not None
    assert len(stopped.dumps) == 2  # the stop condition ends the series early
    assert py_spies_of(os.getpid()) == []


@pytest.mark.anyio
async def test_a_locals_series_of_a_gone_process_says_so() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "idle") as pid:
        pass
    with pytest.raises(ProcessGone):
        await dump_locals(pid, count=2)
