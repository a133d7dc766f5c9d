"""Signals: what the watchdog observes about a process from outside. Each module stands alone and knows nothing
of rules or actions.

- ``process``: identity, role (gunicorn/uvicorn master, worker, plain process) and snapshots (CPU, threads,
  RSS, fds, sockets, context switches) from psutil and /proc; synchronous and quick.
- ``cgroup``: the memory limit and usage of the process's own cgroup (v2 and v1).
- ``interpreter``: the target's Python and package versions, read from its files without touching it.
- ``stacks``: Python stacks sampled with py-spy, aggregated per thread; async, bounded, never orphaning py-spy.
- ``metrics``: a Prometheus scrape, and per-pid gauges from it.
- ``catalog``: the names rules may use, each with its unit and meaning; ``series``: bounded per-worker history.
"""
