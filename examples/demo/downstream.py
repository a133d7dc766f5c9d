"""The slow downstream of seed 000: an HTTP service whose latency can be changed while it runs.

GET  /work              waits the current latency, then answers {"latency_s": ..., "served": n}
GET  /ping              answers at once
GET  /latency           the current latency
PUT  /latency?seconds=S sets it (0 to 600)
"""

from __future__ import annotations

import asyncio

from aiohttp import web

LATENCY = web.AppKey("latency", list[float])
SERVED = web.AppKey("served", list[int])


async def _work(request: web.Request) -> web.Response:
    latency = request.app[LATENCY][0]
    await asyncio.sleep(latency)
    request.app[SERVED][0] += 1
    return web.json_response({"latency_s": latency, "served": request.app[SERVED][0]})


async def _ping(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _get_latency(request: web.Request) -> web.Response:
    return web.json_response({"seconds": request.app[LATENCY][0]})


async def _set_latency(request: web.Request) -> web.Response:
    try:
        seconds = float(request.query["seconds"])
    except (KeyError, ValueError):
        return web.json_response({"error": "give ?seconds=S, a number"}, status=400)
    if not 0 <= seconds <= 600:
        return web.json_response({"error": "seconds must be within 0..600"}, status=422)
    request.app[LATENCY][0] = seconds
    return web.json_response({"seconds": seconds})


def make_app(latency: float = 0.05) -> web.Application:
    app = web.Application()
    app[LATENCY] = [latency]
    app[SERVED] = [0]
    app.router.add_get("/work", _work)
    app.router.add_get("/ping", _ping)
    app.router.add_get("/latency", _get_latency)
    app.router.add_put("/latency", _set_latency)
    return app


async def start(host: str, port: int, latency: float = 0.05) -> web.AppRunner:
    """Start the downstream on ``host:port`` inside the running loop; ``await runner.cleanup()`` stops it."""
    runner = web.AppRunner(make_app(latency), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
