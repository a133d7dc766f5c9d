"""The memory limit a process lives under: its own cgroup, read from ``/proc/PID/cgroup``, v2 and v1.

A container's OOM kill comes from its cgroup's limit, not from the machine's RAM, so "RSS grows 18 MiB/s" only
means something next to "and the limit is 512 MiB, of which 430 are used". The two hierarchies:

- **v2** (unified): ``/proc/PID/cgroup`` has a line ``0::/path``; the files are ``memory.max`` (``max`` when
  unlimited) and ``memory.current`` under the unified mount (``/sys/fs/cgroup`` or ``/sys/fs/cgroup/unified``
  on hybrid machines, where v2 often carries no memory controller at all).
- **v1**: a line ``N:memory:/path``; the files are ``memory.limit_in_bytes`` (a huge number near 2**63 when
  unlimited) and ``memory.usage_in_bytes`` under ``/sys/fs/cgroup/memory``.

v1 is tried first when the process has a v1 memory line, since on a hybrid machine that is the controller that
enforces. ``read_cgroup_memory`` takes its roots as parameters so that tests can point it at a recorded tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

# v1 reports "no limit" as the largest page-aligned signed 64-bit value; anything this big is no limit.
_V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class CgroupMemory:
    """The memory controller a process is charged to: which ``version``, its ``path`` inside the hierarchy,
    the ``limit_bytes`` (None when unlimited) and the current ``usage_bytes`` (None when unreadable)."""

    version: Literal["v1", "v2"]
    path: str
    limit_bytes: int | None
    usage_bytes: int | None

    @property
    def headroom_bytes(self) -> int | None:
        """How much more the cgroup may use before the OOM killer acts, when both figures are known."""
        if self.limit_bytes is None or self.usage_bytes is None:
            return None
        return max(0, self.limit_bytes - self.usage_bytes)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _int_or_none(text: str | None) -> int | None:
    if text is None or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """From the text of ``/proc/PID/cgroup``: (the v1 memory path, the v2 path), each None when absent."""
    v1 = v2 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v1, v2


def read_cgroup_memory(
    pid: int, *, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup"
) -> CgroupMemory | None:
    """The memory cgroup of ``pid`` with its limit and usage, or None when no memory controller can be read.

    Inside a container whose cgroup namespace hides the path, ``/proc/PID/cgroup`` says ``/``; the files at the
    mount's root are then the container's own, which is what we want.
    """
    text = _read(os.path.join(proc_root, str(pid), "cgroup"))
    if text is None:
        return None
    v1, v2 = parse_proc_cgroup(text)
    if v1 is not None:
        base = os.path.join(cgroup_root, "memory", v1.lstrip("/"))
        limit_text = _read(os.path.join(base, "memory.limit_in_bytes"))
        if limit_text is not None:
            limit = _int_or_none(limit_text)
            if limit is not None and limit >= _V1_UNLIMITED:
                limit = None
            usage = _int_or_none(_read(os.path.join(base, "memory.usage_in_bytes")))
            return CgroupMemory("v1", v1, limit, usage)
    if v2 is not None:
        for mount in (cgroup_root, os.path.join(cgroup_root, "unified")):
            base = os.path.join(mount, v2.lstrip("/"))
            current = _read(os.path.join(base, "memory.current"))
            if current is None:
                continue
            return CgroupMemory("v2", v2, _int_or_none(_read(os.path.join(base, "memory.max"))), _int_or_none(current))
    return None
