"""``import watchdog.guard`` stays cheap: a fresh interpreter shows what it pulls in, and how long it takes."""

from __future__ import annotations

import json
import subprocess
import sys

from examples.demo.harness import REPO

HEAVY = ("aiohttp", "psutil", "mcp", "prometheus_client", "starlette", "uvicorn", "yaml")


def fresh(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_importing_the_guard_pulls_in_none_of_the_heavy_parts() -> None:
    code = f"""
import json, sys, time
t = time.perf_counter()
import watchdog.guard
took = time.perf_counter() - t
print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules], "ms": took * 1000}}))
"""
    result = fresh(code)
    assert result["loaded"] == []
    # py-spy is a binary; nothing of it is importable, and nothing here runs it
    warm = fresh(code.replace("import json, sys, time", "import json, sys, time, asyncio"))
    print(f"\nimport watchdog.guard: {result['ms']:.0f} ms cold, {warm['ms']:.0f} ms with asyncio already imported")


def test_prometheus_client_comes_with_the_first_guard_object() -> None:
    result = fresh(
        "import json, sys\n"
        "from watchdog.guard import Limiter\n"
        "before = 'prometheus_client' in sys.modules\n"
        "Limiter(1, name='x')\n"
        "print(json.dumps({'before': before, 'after': 'prometheus_client' in sys.modules}))\n"
    )
    assert result == {"before": False, "after": True}
