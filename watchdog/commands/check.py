"""``watchdog check -c FILE``: validate a config file and the files it names, without starting anything."""

from __future__ import annotations

import argparse
import sys

NAME = "check"
HELP = "Validate a config file and the rule packs and probe files it names; exit 0 if valid, 2 if not."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="FILE", help="the watchdog.yaml to validate")


def run(args: argparse.Namespace) -> int:
    from watchdog.agent.wiring import load_everything
    from watchdog.cli import EXIT_OK, EXIT_USAGE
    from watchdog.errors import ConfigError, ConfigErrors

    try:
        loaded = load_everything(args.config)
    except ConfigErrors as errs:
        for err in errs:
            print(err, file=sys.stderr)
        print(f"{args.config}: {len(errs)} error{'s' if len(errs) != 1 else ''}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE
    for w in loaded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    cfg = loaded.cfg
    n, r = len(cfg.targets), len(loaded.rules.rules)
    p = sum(len(v) for v in loaded.probes.values())
    print(
        f"{args.config}: OK ({n} target{'s' if n != 1 else ''}, {r} rule{'s' if r != 1 else ''}, "
        f"{p} probe{'s' if p != 1 else ''}{', dry run' if cfg.dry_run else ''})"
    )
    return EXIT_OK
