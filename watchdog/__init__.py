"""mcp-watchdog: runtime diagnostics and a watchdog for async Python servers, MCP servers above all.

General layout (each layer imports only from the layers above it in this list):

- ``errors``, ``config``: the error tree; YAML loading and validation (file, line, key in every error).
- ``guard``: the in-process library a server imports (limiter, cleanup timeouts, loop lag, spin sentinel,
  connection limit, drain). It stands alone: importing it pulls in no aiohttp, psutil or py-spy.
- signals: what the sidecar observes per worker (process and cgroup facts, scraped metrics, py-spy stacks,
  probe results). Signals know nothing of rules.
- rules: conditions over signal windows, ``for:`` durations, states. Rules know nothing of how actions run.
- actions: one front door, the actuator (``actions.actuator``), for every diagnose, recycle and notification,
  whoever asks (a rule, an inbound alert): budget, dry run, pause switch, state that survives a restart.
- agent: the loop that ties discovery, signals, rules and actions together (world, judge, status).
- ``cli``, the HTTP server: wiring only.
"""

from watchdog._version import __version__

__all__ = ["__version__"]
