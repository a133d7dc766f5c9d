"""Assembling the agent from configuration: rules, probes, stack sampler, diagnoser. Wiring only."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from watchdog.actions.actuator import Diagnoser
from watchdog.agent.events import setup_logging
from watchdog.agent.flames import FlameKeeper, FlameStore, KeepingSampler, default_directory
from watchdog.agent.loop import Agent
from watchdog.agent.stacks import StackLooker
from watchdog.agent.world import Prober, ProbeRun
from watchdog.config import Config, Target, load_config
from watchdog.diagnose import DiagnoseReport, diagnose
from watchdog.discovery import WorkerId, still_same
from watchdog.errors import ConfigError, ConfigErrors
from watchdog.probes import ProbeSpec, load_probe, run_probe
from watchdog.redact import REDACTOR
from watchdog.rules import LoadedRules, load_rules

log = logging.getLogger("watchdog.agent")


@dataclass
class Loaded:
    """A config and everything it names, validated."""

    cfg: Config
    rules: LoadedRules
    probes: dict[str, list[ProbeSpec]] = field(default_factory=dict)
    warnings: list[ConfigError] = field(default_factory=list)
    """What works but should not be so (a secret written inline): printed by ``check``, logged by ``run``."""


def load_everything(path: str | os.PathLike[str]) -> Loaded:
    """The config and every file it names, validated together: all errors of all files at once."""
    warnings: list[ConfigError] = []
    cfg = load_config(path, warnings=warnings)
    errors: list[ConfigError] = []
    try:
        rules = load_rules(cfg.rules, stack_patterns=cfg.stacks.patterns)
    except ConfigErrors as errs:
        errors.extend(errs)
        rules = LoadedRules()
    probes: dict[str, list[ProbeSpec]] = {}
    specs: dict[str, ProbeSpec] = {}
    for i, t in enumerate(cfg.targets):
        probes[t.name] = []
        for p in t.probes:
            if p not in specs:
                if not os.path.isfile(p):
                    errors.append(
                        ConfigError(f"no such probe file {p!r}", file=os.fspath(path), key=f"targets[{i}].probes")
                    )
                    continue
                try:
                    specs[p] = load_probe(p)
                except ConfigErrors as errs:
                    errors.extend(errs)
                    continue
                except ConfigError as err:
                    errors.append(err)
                    continue
            probes[t.name].append(specs[p])
    if errors:
        raise ConfigErrors(errors)
    return Loaded(cfg, rules, probes, warnings)


def make_prober(probes: dict[str, list[ProbeSpec]]) -> Prober:
    """Runs a target's probes in turn on the agent's shared HTTP session; one combined verdict per round."""

    async def prober(target: Target, http: aiohttp.ClientSession | None) -> ProbeRun:
        results = [await run_probe(spec, url=target.probe_url, session=http) for spec in probes[target.name]]
        failed = [r for r in results if not r.ok]
        pid = next((r.worker_pid for r in results if r.worker_pid is not None), None)
        reason = "; ".join(f"{r.probe}: {r.reason}" for r in failed) if failed else "passed"
        return ProbeRun(
            ok=not failed,
            worker_pid=pid,
            reason=reason,
            latency=max((r.latency_s for r in results), default=None),
            detail={"probes": [r.to_json() for r in results]},
        )

    return prober


def make_diagnoser(duration: float = 2.0, flames: FlameStore | None = None) -> Diagnoser:
    """The ``diagnose`` action: ``watchdog diagnose`` of one worker, its report attached to the event, and its
    flame graph kept in ``flames`` (the report's ``flamegraph`` is then its URL on the watchdog's server)."""

    async def diagnoser(worker: WorkerId) -> dict[str, Any]:
        if not await anyio.to_thread.run_sync(still_same, worker):
            return {"error": f"worker {worker.pid} is gone; nothing to diagnose"}
        report = await diagnose(worker.pid, duration=duration)
        (process,) = report.to_dict()["processes"][:1]
        out = dict(process)
        if flames is not None:
            out.update(await keep_flamegraph(flames, report, worker))
        return out

    return diagnoser


async def keep_flamegraph(flames: FlameStore, report: DiagnoseReport, worker: WorkerId) -> dict[str, Any]:
    """Keep the flame graph of a diagnose action; ``{"flamegraph": url}``, or the reason it could not be kept."""
    from watchdog.flamegraph import report_sections  # here: loaded once a diagnosis is kept

    state = report.processes[0].state if report.processes else None
    meta = {"worker": worker.pid, "create_time": worker.create_time, "why": "diagnose action"}
    if state is not None:
        meta["verdict"] = f"{state.kind}: {state.summary}"
    try:
        rec = await flames.asave(
            f"diagnose-{worker.pid}", report_sections(report), title=f"worker {worker.pid}: diagnose", meta=meta
        )
    except Exception as exc:  # a full disk (or a bug here) must not cost the action its report
        log.warning(
            "cannot keep the flame graph of worker %d: %s", worker.pid, exc, exc_info=not isinstance(exc, OSError)
        )
        return {"flamegraph_error": str(exc) or type(exc).__name__}
    return {"flamegraph": rec.url} if rec is not None else {}


def make_flame_store(cfg: Config) -> FlameStore | None:
    """The flame graph store the config asks for, or None (logged) when its directory cannot be used."""
    fg = cfg.flamegraphs
    try:
        if fg.dir:
            return FlameStore(fg.dir, keep=fg.keep, max_bytes=fg.max_bytes)
        if cfg.state_dir:
            return FlameStore(Path(cfg.state_dir) / "flamegraphs", keep=fg.keep, max_bytes=fg.max_bytes)
        return FlameStore(default_directory(), keep=fg.keep, max_bytes=fg.max_bytes, private=True)
    except OSError as exc:
        log.warning("flame graphs will not be kept: %s", exc)
        return None


def build_agent(loaded: Loaded, *, flames: FlameStore | None = None, keeper: FlameKeeper | None = None) -> Agent:
    """The agent; with ``keeper``, every stack look and event is shown to it (flame graphs as evidence; the caller
    runs ``keeper.run`` beside the agent)."""
    cfg = loaded.cfg
    REDACTOR.add_patterns(cfg.redact.patterns)
    setup_logging(cfg.log.format, cfg.log.level)
    for w in loaded.warnings:
        logging.getLogger("watchdog.config").warning("%s", w)
    has_probes = any(loaded.probes.values())
    sampler: StackLooker | KeepingSampler | None = StackLooker(cfg.stacks.patterns) if cfg.stacks.enabled else None
    if sampler is not None and keeper is not None:
        sampler = KeepingSampler(sampler, keeper)
    agent = Agent(
        cfg,
        loaded.rules,
        prober=make_prober(loaded.probes) if has_probes else None,
        stack_sampler=sampler,
        diagnoser=make_diagnoser(flames=flames),
    )
    if keeper is not None:
        agent.events.listeners.append(keeper.on_event)
    return agent
