"""``python -m watchdog.config``: print the configuration reference (docs/config.md) from the declarations."""

from watchdog.config import Config, describe

HEADER = """# `watchdog.yaml` reference

Generated from the declarations in `watchdog/config/model.py` by `python -m watchdog.config > docs/config.md`;
a test fails when this file and the code disagree.

Durations are written `250ms`, `30s`, `5m`, `1h30m`; sizes `512Mi`, `2Gi` (binary) or `100M`, `2G` (decimal) or
bytes. Any string may take a value from the environment with `${NAME}` or `${NAME:-default}` (`$$` is a literal
`$`); nothing else in the file is interpreted. Relative paths resolve against the folder of the file that names
them.

"""

print(HEADER + describe(Config, heading_level=2), end="")
