"""Assembling the agent from configuration: rules, probes, stack sampler, diagnoser. Wiring only."""

from __future__ import annotations

import os

from watchdog.agent.events import setup_logging
from watchdog.agent.loop import Agent
from watchdog.config import Config, load_config
from watchdog.errors import ConfigError, ConfigErrors
from watchdog.rules import LoadedRules, load_rules


def load_everything(path: str | os.PathLike[str]) -> tuple[Config, LoadedRules]:
    """The config and every file it names, validated together: all errors of all files at once."""
    cfg = load_config(path)
    errors: list[ConfigError] = []
    try:
        rules = load_rules(cfg.rules, stack_patterns=cfg.stacks.patterns)
    except ConfigErrors as errs:
        errors.extend(errs)
        rules = LoadedRules()
    if errors:
        raise ConfigErrors(errors)
    return cfg, rules


def build_agent(cfg: Config, rules: LoadedRules) -> Agent:
    setup_logging(cfg.log.format, cfg.log.level)
    return Agent(cfg, rules)
