"""The memory cgroup of a process, v1 and v2, on recorded cgroup trees and on this machine's real one."""

from __future__ import annotations

import os
from pathlib import Path

from watchdog.signals.cgroup import parse_proc_cgroup, read_cgroup_memory


def tree(tmp: Path, pid: int, proc_cgroup: str, files: dict[str, str]) -> tuple[str, str]:
    (tmp / "proc" / str(pid)).mkdir(parents=True)
    (tmp / "proc" / str(pid) / "cgroup").write_text(proc_cgroup)
    for rel, text in files.items():
        f = tmp / "cg" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return str(tmp / "proc"), str(tmp / "cg")


def test_v2_limit_and_usage(tmp_path: Path) -> None:
    files = {"kubepods/pod1/c1/memory.max": "536870912\n", "kubepods/pod1/c1/memory.current": "104857600\n"}
    proc, cg = tree(tmp_path, 7, "0::/kubepods/pod1/c1\n", files)
    m = read_cgroup_memory(7, proc_root=proc, cgroup_root=cg)
    assert m is not None
    assert (m.version, m.path, m.limit_bytes, m.usage_bytes) == ("v2", "/kubepods/pod1/c1", 536870912, 104857600)
    assert m.headroom_bytes == 536870912 - 104857600


def test_v2_max_means_no_limit_and_the_unified_mount_of_a_hybrid_machine_is_found(tmp_path: Path) -> None:
    proc, cg = tree(tmp_path, 7, "1:name=systemd:/\n0::/svc\n",
                    {"unified/svc/memory.max": "max\n", "unified/svc/memory.current": "4096\n"})  # fmt: skip
    m = read_cgroup_memory(7, proc_root=proc, cgroup_root=cg)
    assert m is not None
    assert (m.version, m.limit_bytes, m.usage_bytes) == ("v2", None, 4096)


def test_v1_memory_controller_wins_on_a_hybrid_machine_and_its_huge_limit_means_none(tmp_path: Path) -> None:
    proc, cg = tree(tmp_path, 7, "4:memory:/docker/abc\n0::/\n",
                    {"memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
                     "memory/docker/abc/memory.usage_in_bytes": "8192\n"})  # fmt: skip
    m = read_cgroup_memory(7, proc_root=proc, cgroup_root=cg)
    assert m is not None
    assert (m.version, m.path, m.limit_bytes, m.usage_bytes) == ("v1", "/docker/abc", None, 8192)


def test_no_readable_controller_is_none(tmp_path: Path) -> None:
    proc, cg = tree(tmp_path, 7, "0::/nothing\n", {})
    assert read_cgroup_memory(7, proc_root=proc, cgroup_root=cg) is None
    assert read_cgroup_memory(8, proc_root=proc, cgroup_root=cg) is None  # no such process


def test_parse_proc_cgroup() -> None:
    assert parse_proc_cgroup("5:cpu,memory:/a\n0::/b\n") == ("/a", "/b")
    assert parse_proc_cgroup("garbage\n") == (None, None)


def test_this_process_on_this_machine() -> None:
    with open(f"/proc/{os.getpid()}/cgroup") as f:
        v1, v2 = parse_proc_cgroup(f.read())
    m = read_cgroup_memory(os.getpid())
    if v1 is None and v2 is None:
        assert m is None
        return
    assert m is not None
    print(f"\nthis process: cgroup {m.version} {m.path} limit {m.limit_bytes} usage {m.usage_bytes}")
    assert m.usage_bytes is None or m.usage_bytes > 0
