"""Webhooks against a real local HTTP receiver: retries with backoff, give-up, no retry on 4xx, a bounded queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from watchdog.actions.notify import Notifier
from watchdog.config import Duration, HeaderValue, Webhook

pytestmark = pytest.mark.anyio


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers with the statuses it is given, in order, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.got = anyio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        self.got.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver(list(getattr(request, "param", [])))
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield rec, f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


def hook(url: str, retries: int = 3) -> Webhook:
    return Webhook(
        url=url, headers={"Authorization": HeaderValue("Bearer t0ken")}, timeout=Duration(2.0), retries=retries
    )


def notifier(hooks: list[Webhook], **kw: Any) -> tuple[Notifier, anyio.Event]:
    """A Notifier whose every delivery outcome sets the returned event (tests await it; they never poll)."""
    done = anyio.Event()
    return Notifier(hooks, on_result=lambda url, outcome: done.set(), **kw), done


async def deliver(n: Notifier, done: anyio.Event) -> None:
    async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        tg.start_soon(n.run, http)
        with anyio.fail_after(10):
            await done.wait()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("receiver", [[500, 503]], indirect=True)
async def test_retries_until_accepted(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    n, done = notifier([hook(url)], backoff=0.01)
    n.submit({"rule": "spin"})
    await deliver(n, done)
    assert n.stats.sent == 1
    assert [b["rule"] for b in rec.bodies] == ["spin"] * 3
    assert rec.headers[0]["Authorization"] == "Bearer t0ken"
    assert (n.stats.retried, n.stats.failed) == (2, 0)


@pytest.mark.parametrize("receiver", [[500, 500, 500]], indirect=True)
async def test_gives_up_after_its_retries(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    n, done = notifier([hook(url, retries=2)], backoff=0.01)
    n.submit({"rule": "spin"})
    await deliver(n, done)
    assert n.stats.failed == 1
    assert len(rec.bodies) == 3
    assert n.stats.sent == 0


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
async def test_a_client_error_is_not_retried(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    n, done = notifier([hook(url)], backoff=0.01)
    n.submit({"rule": "spin"})
    await deliver(n, done)
    assert n.stats.failed == 1
    assert len(rec.bodies) == 1


async def test_an_unreachable_webhook_fails_cleanly() -> None:
    n, done = notifier([hook("http://127.0.0.1:9/hook", retries=1)], backoff=0.01)
    n.submit({"rule": "spin"})
    await deliver(n, done)
    assert n.stats.failed == 1
    assert n.stats.sent == 0


def test_the_queue_is_bounded_and_drops_the_oldest() -> None:
    n = Notifier([hook("http://127.0.0.1:9/hook")], maxsize=3)
    for i in range(5):
        n.submit({"i": i})
    assert n.queued == 3
    assert n.stats.dropped == 2
