"""``watchdog status`` from the command line, against a small HTTP server that answers like the watchdog does
(the real watchdog is exercised in tests/sidecar/test_status_page.py): exit codes, token, colour on a terminal."""

from __future__ import annotations

import http.server
import json
import os
import pty
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.agent.test_page import EVIL, status
from tests.conftest import REPO


def watchdog_status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "watchdog", "status", *args]
    full = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_TOKEN", "WATCHDOG_URL")}
    full.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO, env=full)


@contextmanager
def fake_watchdog(
    doc: dict[str, Any], token: str | None = None, body: bytes | None = None, flames: list[Any] | None = None
) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering /v1/status with ``doc`` (401 without the bearer ``token``), and
    /v1/flamegraphs with ``flames`` when given (else 404, as an older watchdog would)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if token and self.headers.get("Authorization") != f"Bearer {token}":
                self.send_response(401)
                self.end_headers()
                return
            if self.path == "/v1/flamegraphs" and flames is not None:
                data = json.dumps({"flamegraphs": flames}).encode()
            elif self.path != "/v1/status":
                self.send_response(404)
                self.end_headers()
                return
            else:
                data = body if body is not None else json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_firing_rule_exits_1_and_the_text_shows_workers_rules_probe_and_events() -> None:
    kept = [{"name": "b.html", "url": "/v1/flamegraphs/b.html", "worker": 11}]
    with fake_watchdog(status(), flames=kept) as url:
        out = watchdog_status("--url", url)
    assert out.returncode == 1, out.stderr
    assert f"recycled  flame graph: {url}/v1/flamegraphs/b.html" in out.stdout  # the worker's, from the store
    text = out.stdout
    assert "target demo" in text
    assert "cancel-delivery-spin: firing" in text
    assert "99 %" in text
    assert "tools/call" in text
    assert f"flame graph: {url}/v1/flamegraphs/a.html" in text
    assert "\033[" not in text  # not a terminal: no colour
    assert EVIL in text  # a terminal shows markup as the text it is


def test_quiet_watchdog_exits_0_and_json_passes_the_document_through() -> None:
    doc = status(events=[])
    doc["targets"][0]["problem"] = None
    doc["targets"][0]["workers"][0]["rules"] = []
    with fake_watchdog(doc) as url:
        text = watchdog_status("--url", url + "/")
        js = watchdog_status("--url", url + "/v1/status", "--json")
    assert text.returncode == 0, text.stderr
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout) == doc


def test_token_refused_unreachable_and_not_a_watchdog_exit_3_with_the_reason() -> None:
    with fake_watchdog(status(), token="s3cret") as url:
        refused = watchdog_status("--url", url)
        accepted = watchdog_status("--url", url, "--token", "s3cret")
        from_env = watchdog_status("--url", url, env={"WATCHDOG_TOKEN": "s3cret"})
    assert refused.returncode == 3
    assert "HTTP 401: give --token or set WATCHDOG_TOKEN" in refused.stderr
    assert accepted.returncode == 1
    assert from_env.returncode == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        down = watchdog_status("--url", f"http://127.0.0.1:{port}")
    assert down.returncode == 3
    assert f"cannot reach the watchdog at http://127.0.0.1:{port}/v1/status: Connection refused" in down.stderr
    with fake_watchdog({}, body=b"<html>hello</html>") as url:
        other = watchdog_status("--url", url)
    assert other.returncode == 3
    assert "did not answer with JSON" in other.stderr


def test_usage_errors_exit_2() -> None:
    assert watchdog_status("--url", "ftp://x").returncode == 2
    bad = watchdog_status("--interval", "0")
    assert bad.returncode == 2
    assert "--interval must be between" in bad.stderr


def test_colour_on_a_terminal_and_control_characters_are_neutralised() -> None:
    doc = status()
    doc["events"][0]["message"] = "evil \033]0;pwned\007 title"
    with fake_watchdog(doc) as url:
        leader, follower = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("NO_COLOR", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "status", "--url", url], stdout=follower, stderr=subprocess.PIPE,
            cwd=REPO, env=env,
        )  # fmt: skip
        os.close(follower)
        chunks = []
        try:
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            proc.wait(30)
            os.close(leader)
    screen = b"".join(chunks).decode()
    assert proc.returncode == 1
    assert "\033[1;31mfiring\033[0m" in screen
    assert "\033]0;pwned" not in screen
    assert "evil ?]0;pwned? title" in screen


def test_watch_redraws_until_interrupted_and_keeps_trying_when_the_watchdog_goes_away() -> None:
    import signal
    import time

    with fake_watchdog(status()) as url:
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_TOKEN", "WATCHDOG_URL")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "status", "--url", url, "--watch", "--interval", "0.2", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
            # Ctrl-C as a terminal delivers it: a run started in the background by a script (`make test &`)
            # inherits SIGINT ignored, and Python then keeps it ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())
            second = json.loads(proc.stdout.readline())
        except BaseException:
            proc.kill()
            proc.wait(10)
            raise
    try:
        # the server is gone: --watch says so and goes on trying instead of exiting
        deadline = time.monotonic() + 20
        line = ""
        while "cannot reach the watchdog" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert first == second == status()
    assert "cannot reach the watchdog" in line
    assert proc.returncode == 130
