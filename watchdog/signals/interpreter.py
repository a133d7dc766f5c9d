"""Which Python and which packages a process runs, read from its files without touching the process.

Nothing is imported into the target and no interpreter is started: we read ``*.dist-info/METADATA`` files in the
target's site-packages directories. Those directories are found from evidence the process leaves:

- the source files of its sampled stack frames (``.../site-packages/anyio/_backends/_asyncio.py``);
- the shared libraries it maps (``/proc/PID/maps``: extension modules under site-packages, ``libpython3.X``);
- a virtualenv next to ``argv[0]`` (``pyvenv.cfg``) and ``VIRTUAL_ENV`` in its environment;
- the interpreter's own prefix (``/usr/lib/python3.X/site-packages`` and ``dist-packages``).

Every path is read through ``/proc/PID/root``, so a sidecar in another mount namespace (a Kubernetes pod with
``shareProcessNamespace``) sees the target's files, not its own. The Python version's major.minor comes from
the interpreter's name or its ``lib/python3.X`` directory; the patch level from the ``PY_VERSION`` in the
installed ``patchlevel.h`` when there is one (else the version stays ``3.X``, which is what support depends on).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_SITE = re.compile(r"^(.*?/(?:site|dist)-packages)/")
_LIB_PY = re.compile(r"/lib/python(\d+\.\d+)/")
_EXE_VERSION = re.compile(r"python(\d+\.\d+)")
_MAPS_LIB = re.compile(r"\s(/\S*libpython(\d+\.\d+)\S*\.so\S*)$")
_PACKAGES = ("anyio", "mcp", "uvicorn", "gunicorn", "starlette", "uvicorn-worker", "trio", "uvloop", "httpx")


@dataclass(frozen=True)
class Interpreter:
    """The target's ``python_version`` (``3.11.7``, or ``3.11`` when the patch level is unreadable), its
    executable, the site-packages directories found (paths as the target sees them) and ``packages``, the
    versions of the packages that matter here (distribution name, normalised, to version)."""

    python_version: str
    executable: str
    site_packages: tuple[str, ...] = ()
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def major_minor(self) -> tuple[int, int] | None:
        m = re.match(r"(\d+)\.(\d+)", self.python_version)
        return (int(m.group(1)), int(m.group(2))) if m else None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _in_root(pid: int, path: str) -> str:
    return f"/proc/{pid}/root{path}" if os.path.isabs(path) else path


def _maps(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def site_packages_candidates(pid: int, *, exe: str, argv0: str, files: Iterable[str] = ()) -> list[str]:
    """Site-packages directories of the target, most specific first (frames, maps, venv, then the prefix)."""
    found: list[str] = []

    def add(d: str) -> None:
        if d not in found and os.path.isdir(_in_root(pid, d)):
            found.append(d)

    for path in files:
        m = _SITE.match(path)
        if m:
            add(m.group(1))
    lines = _maps(pid)
    for line in lines:
        m = _SITE.search(line.split(" ")[-1] + "/") if "-packages/" in line else None
        if m:
            add(m.group(1))
    minors = {m.group(1) for p in (exe, argv0, *files) if (m := _LIB_PY.search(p) or _EXE_VERSION.search(p))}
    venvs = []
    if argv0 and os.path.isabs(argv0):
        venvs.append(os.path.dirname(os.path.dirname(argv0)))
    venv_env = _environ(pid).get("VIRTUAL_ENV")
    if venv_env:
        venvs.append(venv_env)
    prefix = os.path.dirname(os.path.dirname(exe)) if exe else ""
    for base in [*venvs, prefix]:
        if not base:
            continue
        for minor in sorted(minors):
            add(f"{base}/lib/python{minor}/site-packages")
            add(f"{base}/local/lib/python{minor}/dist-packages")
            add(f"{base}/lib/python{minor}/dist-packages")
        add(f"{base}/lib/python3/dist-packages")
    return found


def package_versions(pid: int, site_packages: Iterable[str], names: Iterable[str] = _PACKAGES) -> dict[str, str]:
    """Versions of ``names`` from ``*.dist-info/METADATA`` in the given directories (first directory wins)."""
    wanted = {_normalise(n) for n in names}
    out: dict[str, str] = {}
    for d in site_packages:
        try:
            entries = os.listdir(_in_root(pid, d))
        except OSError:
            continue
        for entry in entries:
            if not entry.endswith(".dist-info"):
                continue
            name, _, version = entry[: -len(".dist-info")].rpartition("-")
            key = _normalise(name)
            if key in wanted and key not in out:
                out[key] = _metadata_version(os.path.join(_in_root(pid, d), entry)) or version
    return out


def _metadata_version(dist_info: str) -> str | None:
    try:
        with open(os.path.join(dist_info, "METADATA"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    except OSError:
        return None
    return None


def _patch_level(pid: int, prefix: str, minor: str) -> str | None:
    """``PY_VERSION`` from the interpreter's installed ``patchlevel.h`` (pyenv and -dev installs have it)."""
    try:
        with open(_in_root(pid, f"{prefix}/include/python{minor}/patchlevel.h")) as f:
            m = re.search(r'#define\s+PY_VERSION\s+"([^"]+)"', f.read())
    except OSError:
        return None
    return m.group(1) if m and m.group(1).startswith(minor) else None


def read_interpreter(pid: int, *, exe: str, argv0: str, files: Iterable[str] = ()) -> Interpreter:
    """The target's Python version and package versions. ``files`` are frame file paths from sampled stacks."""
    files = list(files)
    lines = _maps(pid)
    lib = next((m for line in lines if (m := _MAPS_LIB.search(line))), None)
    minor = None
    for text in (os.path.basename(exe), argv0, *files):
        m = _EXE_VERSION.search(text) or _LIB_PY.search(text)
        if m:
            minor = m.group(1)
            break
    if minor is None and lib is not None:
        minor = lib.group(2)
    version = minor or "unknown"
    if minor is not None:
        prefixes = [os.path.dirname(os.path.dirname(exe))]
        if lib is not None:
            prefixes.append(os.path.dirname(os.path.dirname(lib.group(1))))
        version = next((v for p in prefixes if (v := _patch_level(pid, p, minor))), minor)
    dirs = site_packages_candidates(pid, exe=exe, argv0=argv0, files=files)
    return Interpreter(version, exe, tuple(dirs), package_versions(pid, dirs))
