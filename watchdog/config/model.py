"""The shape of ``watchdog.yaml``: each section a frozen dataclass, each key declared once with its docs.

``docs/config.md`` is generated from these declarations (``python -m watchdog.config``) and a test keeps it
current.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog.config._schema import (
    Duration,
    FilePath,
    HeaderValue,
    Regex,
    Secret,
    Size,
    at_least,
    http_url,
    positive,
    positive_because,
    setting,
)

Report = Callable[[str | None, str], None]


def bundled(folder: str, name: str) -> Path:
    """A file the product ships in its top-level ``rules/`` or ``probes/`` folder.

    An installed wheel carries those folders as ``watchdog/_bundled/`` (pyproject.toml maps them); a source
    checkout or an editable install reads the top-level folder itself.
    """
    package = Path(__file__).resolve().parents[1]
    installed = package / "_bundled" / folder / name
    return installed if installed.exists() else package.parent / folder / name


BUNDLED_RULES = bundled("rules", "default.yaml")
"""The default rule pack, used when a config names none."""


def _signal_name(value: str) -> str | None:
    import signal

    if not value.startswith("SIG") or not hasattr(signal, value) or value in ("SIGKILL", "SIGSTOP"):
        return f"expected a signal name such as 'SIGUSR1' or 'SIGHUP', got {value!r}"
    return None


def _host_port(value: str) -> str | None:
    m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})", value)
    if m is None or not 0 < int(m.group(2)) < 65536:
        return f"expected HOST:PORT such as '127.0.0.1:9464', got {value!r}"
    return None


@dataclass(frozen=True)
class Match:
    """How to find a target's process. Give exactly one of ``pid``, ``pidfile`` or ``cmdline``."""

    pid: int | None = setting(None, doc="A fixed process id.", check=at_least(1))
    pidfile: FilePath | None = setting(None, doc="A file holding the process id, re-read every tick.")
    cmdline: Regex | None = setting(
        None,
        doc="A regular expression searched in the process's command line (arguments joined by spaces). Anchor "
        "it to the executable or the script, as in `^\\S*/gunicorn .*app:app` or `^\\S*python\\S* \\S*server\\.py`: "
        "an unanchored word also matches a `tail -f` of its log. The watchdog itself, its py-spy runs, and "
        "pagers, editors and search tools (less, vim, grep...), are never adopted; what matched is logged.",
    )

    def __config_check__(self, report: Report) -> None:
        given = [k for k in ("pid", "pidfile", "cmdline") if getattr(self, k) is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(repr(g) for g in given)
            report(None, f"give exactly one of 'pid', 'pidfile' or 'cmdline' (got {what})")


@dataclass(frozen=True)
class Recycle:
    """How a worker is recycled: an optional drain first, then SIGTERM, then SIGKILL after `grace`."""

    drain_signal: str | None = setting(
        None,
        doc="Signal that starts the worker's drain (the guard library's drain listens for one), "
        "sent before SIGTERM. Under gunicorn, SIGTERM to a uvicorn worker already drains.",
        check=_signal_name,
    )
    drain_url: str | None = setting(
        None, doc="URL to POST to start a drain; `{pid}` is replaced by the worker's pid.", check=http_url
    )
    drain_token: Secret | None = setting(None, doc="Bearer token for `drain_url`; write it as `${NAME}`.")
    drain_wait: Duration = setting(Duration(10.0), doc="How long a drain may take before SIGTERM is sent.")
    grace: Duration = setting(Duration(10.0), doc="How long after SIGTERM before SIGKILL.")
    replacement_timeout: Duration = setting(
        Duration(30.0),
        doc="How long to wait for a replacement worker to appear and pass the probe.",
        check=positive_because("no replacement could ever be seen"),
    )


@dataclass(frozen=True)
class Target:
    """A server to watch: how to find it, where its metrics are, which probes exercise it."""

    name: str = setting(doc="A short name used in logs, metrics labels and alerts.")
    match: Match = setting(doc="How to find the process.")
    workers: Literal["auto", "self", "children"] = setting(
        "auto",
        doc="Which processes are the workers: `children` of the matched process (a gunicorn master or "
        "`uvicorn --workers` supervisor), the process `self`, or `auto` (children when it has any).",
    )
    metrics_url: str | None = setting(None, doc="The server's Prometheus endpoint.", check=http_url)
    probes: list[FilePath] = setting(doc="Probe definition files (see `probes/`).", factory=list)
    probe_url: str | None = setting(
        None,
        doc="Overrides the `url` of every probe of this target (the same probe file, another port).",
        check=http_url,
    )
    metrics_max_body: Size = setting(
        Size(4 * 2**20),
        doc="The largest `/metrics` body read; a longer one is cut off while streaming (never held in memory) "
        "and shown as the target's metrics error.",
        check=positive_because("no body could be read"),
    )
    memory_limit: Size | None = setting(
        None, doc="Memory limit per worker for projections; the cgroup limit is used when unset."
    )
    min_healthy_workers: int = setting(1, doc="Never recycle below this many healthy workers.", check=at_least(0))
    recycle: Recycle = setting(doc="How to recycle one of its workers.", factory=Recycle)

    def __config_check__(self, report: Report) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            report("name", f"use letters, digits, '_', '.' or '-' only (got {self.name!r})")


@dataclass(frozen=True)
class Server:
    """The watchdog's own HTTP server: `/metrics`, `/healthz`, `/v1/status`."""

    listen: str = setting("127.0.0.1:9464", doc="Address to bind, HOST:PORT.", check=_host_port)
    token: Secret | None = setting(
        None,
        doc="Bearer token that every endpoint but `/healthz` and `/metrics` requires when set; required itself "
        "when `listen` is not a loopback address. Write it as `${WATCHDOG_TOKEN}`.",
    )
    max_connections: int = setting(
        256,
        doc="Connections served at once. At the cap, the oldest connection still waiting for its request is "
        "closed to admit the new one, so slow clients cannot starve `/healthz` (the process needs this many "
        "file descriptors on top of its own: see `LimitNOFILE` in the unit).",
        check=at_least(1),
    )
    request_timeout: Duration = setting(
        Duration(5.0),
        doc="Time a client has to send a request's headers (and to stay idle between requests), and a "
        "handler has to read the body and answer; then the connection is closed (waiting connections are checked "
        "every fifth of it, at most every second).",
        check=positive_because("no request could ever arrive"),
    )
    max_body: Size = setting(Size(2**20), doc="The largest request body accepted.", check=positive)
    alertmanager_webhook: bool = setting(
        False,
        doc="Serve `POST /v1/alertmanager`, an Alertmanager webhook receiver that can diagnose or recycle "
        "(needs `token`; Alertmanager sends it as a bearer token, or as the basic-auth password).",
    )

    def __config_check__(self, report: Report) -> None:
        if not self.token and not is_loopback(self.listen):
            report("token", token_required_message(self.listen))


def is_loopback(listen: str) -> bool:
    """Whether HOST:PORT binds only the loopback interface (127.0.0.0/8, ::1 or 'localhost')."""
    import ipaddress

    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as reachable from outside


def token_required_message(listen: str) -> str:
    return (
        f"listen {listen!r} is not a loopback address, so /v1/status (stacks, command lines, evidence) would be "
        "open to the network: set server.token (e.g. '${WATCHDOG_TOKEN}') or listen on 127.0.0.1"
    )


@dataclass(frozen=True)
class Budget:
    """The blast-radius budget every recycle passes through."""

    max_recycles: int = setting(3, doc="Recycles allowed per target within `window`.", check=at_least(0))
    window: Duration = setting(
        Duration(900.0),
        doc="The sliding window `max_recycles` counts over.",
        check=positive_because("a zero window counts nothing, so recycles would be unlimited"),
    )
    cooldown: Duration = setting(Duration(300.0), doc="Minimum time between two recycles of one worker.")


@dataclass(frozen=True)
class Webhook:
    """A JSON webhook that receives every notification."""

    url: str = setting(doc="Where to POST.", check=http_url)
    headers: dict[str, HeaderValue] = setting(doc="Extra headers; use `${VAR}` for secrets.", factory=dict)
    timeout: Duration = setting(
        Duration(5.0), doc="Per-attempt timeout.", check=positive_because("aiohttp reads a zero timeout as none")
    )
    retries: int = setting(3, doc="Attempts after the first, with exponential backoff and jitter.", check=at_least(0))


@dataclass(frozen=True)
class Alertmanager:
    """An Alertmanager that receives every alert through its API v2 (`POST /api/v2/alerts`)."""

    url: str = setting(doc="Base URL, such as `http://alertmanager:9093` (never a load balancer: name each one).",
                       check=http_url)  # fmt: skip
    bearer_token: str | None = setting(None, doc="Bearer token; write it as `${NAME}`.")
    bearer_token_file: FilePath | None = setting(None, doc="A file holding the bearer token, re-read on each send.")
    username: str | None = setting(None, doc="Basic-auth user name.")
    password: str | None = setting(None, doc="Basic-auth password; write it as `${NAME}`.")
    ca_file: FilePath | None = setting(None, doc="CA bundle that signs the Alertmanager's certificate.")
    cert_file: FilePath | None = setting(None, doc="Client certificate (PEM) for mutual TLS.")
    key_file: FilePath | None = setting(None, doc="Key of `cert_file`.")
    timeout: Duration = setting(Duration(5.0), doc="Per-request timeout.")

    def __config_check__(self, report: Report) -> None:
        if self.bearer_token is not None and self.bearer_token_file is not None:
            report("bearer_token_file", "give 'bearer_token' or 'bearer_token_file', not both")
        if (self.username is None) != (self.password is None):
            report("password" if self.password is None else "username", "basic auth needs 'username' and 'password'")
        if (self.username is not None) and (self.bearer_token or self.bearer_token_file):
            report("username", "give basic auth or a bearer token, not both")
        if (self.cert_file is None) != (self.key_file is None):
            report("key_file" if self.key_file is None else "cert_file", "mutual TLS needs 'cert_file' and 'key_file'")


@dataclass(frozen=True)
class Notify:
    """Where alerts go."""

    webhooks: list[Webhook] = setting(doc="JSON webhooks.", factory=list)
    alertmanagers: list[Alertmanager] = setting(
        doc="Alertmanagers; each alert goes to every one of them, as Prometheus does.", factory=list
    )
    resend_interval: Duration = setting(
        Duration(60.0),
        doc="How often every active alert is re-sent to each Alertmanager. An alert carries "
        "`endsAt = now + 4 x resend_interval`, so it expires by itself if the watchdog stops sending.",
    )
    external_labels: dict[str, str] = setting(
        doc="Labels added to every alert, such as `pod: ${POD_NAME}` and `namespace: ${POD_NAMESPACE}` from the "
        "downward API. `instance` here replaces the host name.",
        factory=dict,
    )
    generator_url: str | None = setting(
        None,
        doc="The link each alert carries back to the watchdog; `http://<server.listen>/v1/status` when unset.",
        check=http_url,
    )
    pull_interval: Duration | None = setting(
        None,
        doc="Poll every Alertmanager this often for active, unsilenced alerts labelled `watchdog_action` and "
        "`pod` = `external_labels.pod` (required) and act on them as `POST /v1/alertmanager` would. "
        "The answer to a Kubernetes Service that would deliver a webhook to one random pod.",
    )


_BUSY = positive_because("a zero interval runs the round back to back and burns a CPU")


@dataclass(frozen=True)
class Intervals:
    """How often each signal is sampled."""

    process: Duration = setting(
        Duration(1.0), doc="psutil and /proc facts (cheap: a few ms for several workers).", check=_BUSY
    )
    metrics: Duration = setting(Duration(5.0), doc="Scrapes of each target's `metrics_url`.", check=_BUSY)
    stacks: Duration = setting(Duration(5.0), doc="py-spy stack sampling of each worker.", check=_BUSY)
    probes: Duration = setting(Duration(10.0), doc="Deep probes.", check=_BUSY)


@dataclass(frozen=True)
class Stacks:
    """py-spy stack sampling: cheap signals run all the time, stacks are taken when a worker looks hot."""

    enabled: bool = setting(True, doc="Sample stacks at all (needs ptrace permission on the workers).")
    duration: Duration = setting(
        Duration(1.0), doc="Length of one sampling window.", check=positive_because("a zero window samples nothing")
    )
    rate: int = setting(50, doc="Samples per second within a window.", check=at_least(1))
    hot_cpu_percent: float = setting(
        50.0,
        doc="Sample a worker (at most every `intervals.stacks`) while its CPU is above this.",
        check=at_least(0),
    )
    baseline: Duration = setting(
        Duration(120.0),
        doc="Sample every worker at least this often, hot or not (the backstop behind the cheap signals that "
        "bring a look forward: a CPU jump, clients leaving, a stall sign, a failing probe, the guard's sentinel).",
        check=_BUSY,
    )
    patterns: dict[str, Regex] = setting(
        doc="Named frame patterns; rules read `stack_share:NAME`, the share of samples matching.", factory=dict
    )


_SLOPE = positive_because("a slope needs a window with two readings in it")


@dataclass(frozen=True)
class Windows:
    """How much history the slope signals look at."""

    memory: Duration = setting(Duration(60.0), doc="Window of `rss_growth_bytes_per_second`.", check=_SLOPE)
    fds: Duration = setting(Duration(60.0), doc="Window of `fd_growth_per_second`.", check=_SLOPE)


@dataclass(frozen=True)
class Logging:
    """The watchdog's own log."""

    format: Literal["json", "text"] = setting("json", doc="JSON lines (for collectors) or text (for people).")
    level: Literal["debug", "info", "warning", "error"] = setting("info", doc="Least severity logged.")


@dataclass(frozen=True)
class Redaction:
    """What is hidden (`***`) in everything that leaves the watchdog: webhooks, `/v1/status`, logs, diagnose.

    Always hidden: values of arguments and `KEY=value` pairs whose names look secret (key, token, secret,
    password, auth, credential...), URL user-info and query values, and every value taken from `${NAME}`."""

    patterns: list[Regex] = setting(doc="Extra regular expressions; every match is replaced by `***`.", factory=list)


@dataclass(frozen=True)
class Flamegraphs:
    """Flame graphs kept as evidence of the actions taken (served at `/v1/flamegraphs/NAME`, linked from the
    status page at `/`): the oldest are removed past `keep` files or `max_bytes`."""

    dir: str | None = setting(
        None,
        doc="Directory to keep them in; unset: `flamegraphs/` in `state_dir`, else `$STATE_DIRECTORY/flamegraphs` "
        "under systemd, else `mcp-watchdog-UID/flamegraphs` in the system temp directory.",
    )
    keep: int = setting(50, doc="How many to keep; 0 keeps none.", check=at_least(0))
    max_bytes: Size = setting(Size(20 << 20), doc="Most disk space they may take together.")


@dataclass(frozen=True)
class Config:
    """The whole `watchdog.yaml`."""

    targets: list[Target] = setting(doc="The servers to watch.")
    rules: list[FilePath] = setting(doc="Rule pack files; the bundled `rules/default.yaml` when empty.", factory=list)
    dry_run: bool = setting(False, doc="Shadow mode: evaluate and record every action as 'would have', act on none.")
    state_dir: str | None = setting(
        None,
        doc="Directory for `state.json`: the budget's ledger, recent events and a recycle in progress, so a "
        "restarted watchdog keeps its budget and finishes a recycle it began (systemd `StateDirectory`, a "
        "Kubernetes `emptyDir`). Unset: nothing survives a restart.",
    )
    pause_file: str | None = setting(
        None,
        doc="A file that, while it says `true` (or `paused`, `1`, `yes`, `on`), makes every action a dry run; "
        "read at each decision. In Kubernetes, a downward-API projection of a pod annotation.",
    )
    server: Server = setting(doc="The watchdog's own HTTP server.", factory=Server)
    budget: Budget = setting(doc="Limits on recycling.", factory=Budget)
    notify: Notify = setting(doc="Alert destinations.", factory=Notify)
    intervals: Intervals = setting(doc="Sampling intervals.", factory=Intervals)
    stacks: Stacks = setting(doc="Stack sampling.", factory=Stacks)
    windows: Windows = setting(doc="Slope windows.", factory=Windows)
    log: Logging = setting(doc="Logging.", factory=Logging)
    redact: Redaction = setting(doc="Extra secrets to hide.", factory=Redaction)
    flamegraphs: Flamegraphs = setting(doc="Flame graphs kept as evidence.", factory=Flamegraphs)

    def __config_check__(self, report: Report) -> None:
        if not self.targets:
            report("targets", "name at least one target")
        names = [t.name for t in self.targets]
        for name in sorted({n for n in names if names.count(n) > 1}):
            report("targets", f"target name {name!r} is used more than once")
        if self.notify.pull_interval is not None and not self.notify.alertmanagers:
            report("notify.pull_interval", "pulling alerts needs at least one entry in notify.alertmanagers")
        if self.notify.pull_interval is not None and not self.notify.external_labels.get("pod"):
            report(
                "notify.pull_interval",
                "pulling alerts needs notify.external_labels.pod (this pod's name, e.g. '${POD_NAME}'): "
                "without it every sidecar would act on every alert",
            )
        if self.server.alertmanager_webhook and not self.server.token:
            report("server.token", "server.alertmanager_webhook can act on workers, so it needs a token")
