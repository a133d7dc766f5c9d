"""``watchdog run -c watchdog.yaml``: the sidecar. Watches every worker, judges the rules, acts with care."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchdog.agent.loop import Agent
    from watchdog.agent.sdnotify import Notifier

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
    import functools
    import gc

    import anyio

    from watchdog.agent import sdnotify
    from watchdog.agent.flames import FlameKeeper
    from watchdog.agent.wiring import build_agent, load_everything, make_flame_store
    from watchdog.cli import EXIT_OK, EXIT_USAGE
    from watchdog.config.model import is_loopback, token_required_message
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
        if not cfg.server.token and not is_loopback(args.listen):
            print(f"watchdog run: --listen: {token_required_message(args.listen)}", file=sys.stderr)
            return EXIT_USAGE
    loaded.cfg = cfg
    flames = make_flame_store(cfg)
    keeper = FlameKeeper(flames) if flames is not None else None
    agent = build_agent(loaded, flames=flames, keeper=keeper)
    rules = loaded.rules
    log = logging.getLogger("watchdog")
    systemd = sdnotify.from_environ()

    async def main() -> None:
        from watchdog.agent import server

        _watch_children_by_pidfd()

        runner = await server.start(agent, cfg.server.listen, flames=flames, inbox=agent.alerting.webhook_inbox)
        # What start-up built lives as long as the process (modules, config, rules): the collector need not walk
        # it again on every full collection. perf showed the collector at 8 % of a quiet watchdog's CPU.
        gc.collect()
        gc.freeze()
        log.info(
            "watchdog listening on http://%s (%d target(s), %d rule(s)%s)",
            cfg.server.listen,
            len(cfg.targets),
            len(rules.rules),
            ", DRY RUN" if cfg.dry_run else "",
        )
        try:
            async with anyio.create_task_group() as tg:
                if keeper is not None:
                    tg.start_soon(keeper.run)  # writes the flame graphs the agent's events ask for
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    if systemd is None:
                        tg.start_soon(agent.run)
                    else:
                        notifier = systemd
                        # READY once the listener is bound (above) and the first discovery round is done
                        tg.start_soon(functools.partial(agent.run, ready=lambda: notifier.ready(summary(agent))))
                        tg.start_soon(keep_systemd_fed, agent, notifier)
                    async for signum in signals:
                        log.info("received %s; shutting down", signal.Signals(signum).name)
                        if systemd is not None:
                            systemd.stopping(f"stopping on {signal.Signals(signum).name}")
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


def _watch_children_by_pidfd() -> None:
    """Wait for py-spy children on a pidfd in the event loop, as Python 3.12+ does by itself.

    Before 3.12 asyncio starts a thread for every child it waits for, and the sidecar starts py-spy many times a
    minute: a thread, its stack and a malloc arena each time. Where the kernel has ``pidfd_open`` (Linux 5.3+),
    use the watcher 3.12 chose; elsewhere keep the default. Called with the loop running.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    import asyncio

    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # an older kernel, or seccomp forbids it
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def summary(agent: Agent) -> str:
    """The one line ``systemctl status`` shows: targets, workers, recycles in the window, dry run."""
    act = agent.actuator
    workers = sum(len(ts.workers) for ts in agent.targets.values())
    recycles = sum(act.budget.used(name, act.wall()) for name in agent.targets)
    dry = "; DRY RUN" if agent.cfg.dry_run else "; PAUSED" if act.pause.paused() else ""
    return f"watching {len(agent.targets)} target(s), {workers} worker(s); {recycles} recycle(s) in window{dry}"


async def keep_systemd_fed(agent: Agent, notifier: Notifier) -> None:
    """Ping systemd's watchdog while the agent's heartbeat is fresh, and keep STATUS= current.

    This task runs on the agent's own event loop: if that loop stalls, this stalls too and the pings stop, and
    a fresh-heartbeat check catches a loop that runs while the agent's heartbeat task does not. No thread.
    """
    import anyio

    from watchdog.agent.server import STALL_AFTER

    period = min(1.0, notifier.ping_interval / 2) if notifier.ping_interval else 1.0
    while True:
        await anyio.sleep(period)
        now = agent.clock()
        if now - agent.heart.last <= STALL_AFTER:
            notifier.beat(now, summary(agent))
