"""``watchdog check -c FILE``: validate a config file and the files it names, without starting anything."""

from __future__ import annotations

import argparse
import os
import sys

NAME = "check"
HELP = "Validate a config file (and the rule packs and probe files it names); exit 0 if valid, 2 if not."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="FILE", help="the watchdog.yaml to validate")


def run(args: argparse.Namespace) -> int:
    from watchdog.agent.wiring import load_everything
    from watchdog.cli import EXIT_OK, EXIT_USAGE
    from watchdog.errors import ConfigError, ConfigErrors

    try:
        cfg, rules = load_everything(args.config)
    except ConfigErrors as errs:
        for err in errs:
            print(err, file=sys.stderr)
        print(f"{args.config}: {len(errs)} error{'s' if len(errs) != 1 else ''}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE

    # Files the config names must at least exist; their own validation joins here as their issues land.
    missing = [
        f"{args.config}: {key}: no such file {path!r}"
        for key, paths in [
            ("rules", cfg.rules),
            *((f"targets[{i}].probes", t.probes) for i, t in enumerate(cfg.targets)),
        ]
        for path in paths
        if not os.path.isfile(path)
    ]
    for line in missing:
        print(line, file=sys.stderr)
    probe_errors = _check_probes([p for t in cfg.targets for p in t.probes if os.path.isfile(p)])
    for line in probe_errors:
        print(line, file=sys.stderr)
    if missing or probe_errors:
        return EXIT_USAGE
    n = len(cfg.targets)
    r = len(rules.rules)
    print(
        f"{args.config}: OK ({n} target{'s' if n != 1 else ''}, {r} rule{'s' if r != 1 else ''}"
        f"{', dry run' if cfg.dry_run else ''})"
    )
    return EXIT_OK


def _check_probes(paths: list[str]) -> list[str]:
    """Every error in the probe files, each naming its file, line and key (each file checked once)."""
    from watchdog.errors import ConfigError, ConfigErrors
    from watchdog.probes import load_probe

    errors: list[str] = []
    for path in dict.fromkeys(paths):
        try:
            load_probe(path)
        except ConfigErrors as errs:
            errors.extend(str(e) for e in errs)
        except ConfigError as err:
            errors.append(str(err))
    return errors
