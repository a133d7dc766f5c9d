from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_docs_signals_md_is_generated_from_the_catalogue() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "watchdog.signals"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert (REPO / "docs" / "signals.md").read_text() == out, "run: python -m watchdog.signals > docs/signals.md"
