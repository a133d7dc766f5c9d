"""The demo's ``stubborn`` tool on a FastMCP server, served by uvicorn: ``python fastmcp_target.py PORT``.

Abandon a call to ``stubborn`` and the worker spins in anyio's ``_deliver_cancellation``, as with the official SDK's
server; ``test_fastmcp.py`` checks that diagnose names this tool as the culprit. SIGALRM ends it after 180 s.
"""

from __future__ import annotations

import os
import signal
import sys

import anyio
import uvicorn
from fastmcp import Context, FastMCP  # type: ignore[import-not-found, unused-ignore]

mcp = FastMCP("stubborn-lab")


@mcp.tool  # type: ignore[untyped-decorator, unused-ignore]
async def stubborn(ctx: Context) -> str:
    """Say which worker took the call, then wait forever and swallow cancellation."""
    await ctx.report_progress(0, 1, f"pid={os.getpid()}")
    while True:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            pass


if __name__ == "__main__":
    signal.alarm(180)
    app = mcp.http_app(stateless_http=True)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
