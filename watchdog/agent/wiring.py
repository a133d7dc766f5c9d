"""Assembling the agent from configuration: rules, probes, stack sampler, diagnoser. Wiring only."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio

from watchdog.actions.actuator import Diagnoser
from watchdog.agent.events import setup_logging
from watchdog.agent.loop import Agent
from watchdog.agent.stacks import StackLooker
from watchdog.agent.world import Prober, ProbeRun
from watchdog.config import Config, Target, load_config
from watchdog.diagnose import diagnose
from watchdog.discovery import WorkerId, still_same
from watchdog.errors import ConfigError, ConfigErrors
from watchdog.probes import ProbeSpec, load_probe, run_probe
from watchdog.redact import REDACTOR
from watchdog.rules import LoadedRules, load_rules


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


def make_diagnoser(duration: float = 2.0) -> Diagnoser:
    """The ``diagnose`` action: ``watchdog diagnose`` of one worker, its report attached to the event."""

    async def diagnoser(worker: WorkerId) -> dict[str, Any]:
        if not await anyio.to_thread.run_sync(still_same, worker):
            return {"error": f"worker {worker.pid} is gone; nothing to diagnose"}
        report = await diagnose(worker.pid, duration=duration)
        (process,) = report.to_dict()["processes"][:1]
        return dict(process)

    return diagnoser


def build_agent(loaded: Loaded) -> Agent:
    cfg = loaded.cfg
    REDACTOR.add_patterns(cfg.redact.patterns)
    setup_logging(cfg.log.format, cfg.log.level)
    for w in loaded.warnings:
        logging.getLogger("watchdog.config").warning("%s", w)
    has_probes = any(loaded.probes.values())
    return Agent(
        cfg,
        loaded.rules,
        prober=make_prober(loaded.probes) if has_probes else None,
        stack_sampler=StackLooker(cfg.stacks.patterns) if cfg.stacks.enabled else None,
        diagnoser=make_diagnoser(),
    )
