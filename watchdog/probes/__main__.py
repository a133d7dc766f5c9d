"""``python -m watchdog.probes``: print the probe definition reference (docs/probes.md) from the declarations."""

from watchdog.config import describe
from watchdog.probes import ProbeSpec

HEADER = """# Probe definition reference (`probes/*.yaml`)

Generated from the declarations in `watchdog/probes/_spec.py` by `python -m watchdog.probes > docs/probes.md`;
a test fails when this file and the code disagree. Commented examples: `probes/demo-echo.yaml` (an MCP tool
call), `probes/tools-list.yaml` (`tools/list` only), `probes/http-health.yaml` (plain HTTP).

Durations are written `250ms`, `5s`, `1m`. Any string may take a value from the environment with `${NAME}` or
`${NAME:-default}`. Errors name the file, the line and the key, as in `watchdog.yaml`.

"""

print(HEADER + describe(ProbeSpec, heading_level=2), end="")
