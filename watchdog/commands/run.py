"""``watchdog run -c watchdog.yaml``: the sidecar. Watches every worker, judges the rules, acts with care."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

NAME = "run"
HELP = "Run the watchdog sidecar: watch the configured targets, evaluate rules, act, serve /metrics and /v1/status."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="FILE", help="the watchdog.yaml to run")
    parser.add_argument(
        "--dry-run", action="store_true", help="shadow mode: record actions as 'would have', act on none"
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import anyio

    from watchdog.agent.wiring import build_agent, load_everything, make_flame_store
    from watchdog.cli import EXIT_OK, EXIT_USAGE
    from watchdog.errors import ConfigError, ConfigErrors

    try:
        loaded = load_everything(args.config)
    except (ConfigErrors, ConfigError) as errs:
        for err in errs if isinstance(errs, ConfigErrors) else [errs]:
            print(err, file=sys.stderr)
        return EXIT_USAGE
    cfg = loaded.cfg
    if args.dry_run:
        cfg = dataclasses.replace(cfg, dry_run=True)
    if args.listen:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, listen=args.listen))
    loaded.cfg = cfg
    agent = build_agent(loaded, flames=(flames := make_flame_store(cfg)))
    rules = loaded.rules
    log = logging.getLogger("watchdog")

    async def main() -> None:
        from watchdog.agent import server

        runner = await server.start(agent, cfg.server.listen, flames=flames)
        log.info(
            "watchdog listening on http://%s (%d target(s), %d rule(s)%s)",
            cfg.server.listen,
            len(cfg.targets),
            len(rules.rules),
            ", DRY RUN" if cfg.dry_run else "",
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(agent.run)
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("received %s; shutting down", signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
                        break
        finally:
            with anyio.move_on_after(5, shield=True):
                await runner.cleanup()
        log.info("watchdog stopped")

    try:
        anyio.run(main)
    except OSError as exc:
        print(f"watchdog run: cannot listen on {cfg.server.listen}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
