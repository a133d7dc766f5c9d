from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_docs_config_md_is_generated_from_the_declarations() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "watchdog.config"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert (REPO / "docs" / "config.md").read_text() == out, "run: python -m watchdog.config > docs/config.md"
