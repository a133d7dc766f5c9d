"""``python -m watchdog.signals``: print the signal reference (docs/signals.md) from the catalogue."""

from watchdog.signals.catalog import describe_signals

HEADER = """# Signals

Generated from `watchdog/signals/catalog.py` by `python -m watchdog.signals > docs/signals.md`; a test keeps it
current. Rules name these in conditions (`cpu_percent > 80`). A signal with no current value (the source is down,
py-spy lacks permission, the probe has not run) is *missing*: a condition over it is neither true nor false, so
no rule fires without evidence, and `/v1/status` lists what is missing.

Two open-ended families:

- `metric:NAME` or `metric:NAME{label="value"}`: a sample scraped from the target's `metrics_url`, per worker by
  its `pid` label (a sample without one counts for every worker); several matching samples combine by maximum.
- `stack_share:PATTERN`: the share of stack samples matching a pattern declared under `stacks.patterns`
  (`deliver_cancellation` is built in).

Signals whose source is `target` describe the target as a whole; a rule that reads only those is judged once per
target, and cannot recycle.

"""

print(HEADER + describe_signals(), end="")
