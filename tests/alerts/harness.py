"""Real Alertmanager and Prometheus for the alerting tests: started on 127.0.0.1 with free ports, stopped by pid.

Configs are the shipped files under ``deploy/`` with the test's addresses, paths and short intervals put in.
A missing binary makes the test skip, naming the Debian package (``.ci/run`` installs both).
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import yaml

from examples.demo.harness import REPO, free_port

DEPLOY = REPO / "deploy"
ALERTMANAGER_YML = DEPLOY / "alertmanager" / "alertmanager.yml"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
RULES_YML = DEPLOY / "prometheus" / "mcp-watchdog.rules.yml"


def binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return found


class Server:
    """A Prometheus-family server in a subprocess, ready when ``/-/ready`` answers 200."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        workdir: Path,
        *,
        tls: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.argv = argv
        self.port = port
        self.workdir = workdir
        self.tls = tls
        self.headers = headers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers=self.headers, connector=aiohttp.TCPConnector(ssl=self.tls or True))

    def log(self) -> str:
        p = self.workdir / "server.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def _spawn(self) -> subprocess.Popen[bytes]:
        with (self.workdir / "server.log").open("ab") as log:
            return subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

    async def start(self) -> None:
        self.proc = await anyio.to_thread.run_sync(self._spawn)
        # polled: the server offers nothing to await but its readiness endpoint
        async with self._session() as http:
            with anyio.fail_after(30):
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"{self.argv[0]} exited early:\n{self.log()}")
                    try:
                        async with http.get(f"{self.url}/-/ready") as r:
                            if r.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                    await anyio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    async def get_json(self, path: str, **params: str) -> Any:
        async with self._session() as http, http.get(f"{self.url}{path}", params=params) as r:
            r.raise_for_status()
            return await r.json()

    async def metric(self, name: str) -> float:
        """The sum of every sample of ``name`` on the server's own /metrics."""
        async with self._session() as http, http.get(f"{self.url}/metrics") as r:
            text = await r.text()
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith((name + "{", name + " "))
        )


class Alertmanager(Server):
    async def alerts(self, alertname: str, *, active: bool = True) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts?filter=alertname="..."``."""
        found: list[dict[str, Any]] = await self.get_json(
            "/api/v2/alerts", filter=f'alertname="{alertname}"', active="true" if active else "false"
        )
        return found


def alertmanager_config(
    *, receiver_url: str, watchdog_url: str = "http://127.0.0.1:9", credentials_file: str = "/dev/null"
) -> dict[str, Any]:
    """``deploy/alertmanager/alertmanager.yml`` with the test's URLs, token file and short intervals."""
    cfg: dict[str, Any] = yaml.safe_load(ALERTMANAGER_YML.read_text())
    for r in cfg["receivers"]:
        for hook in r.get("webhook_configs", []):
            if r["name"] == "mcp-watchdog":
                hook["url"] = f"{watchdog_url}/v1/alertmanager"
                hook["http_config"]["authorization"]["credentials_file"] = credentials_file
            else:
                hook["url"] = receiver_url
    short = {"group_wait": "200ms", "group_interval": "1s", "repeat_interval": "1h"}
    cfg["route"].update(short)
    for sub in cfg["route"].get("routes", []):
        sub.update(short)
    cfg.setdefault("global", {})["resolve_timeout"] = "5m"
    return cfg


@asynccontextmanager
async def running_alertmanager(
    cfg: dict[str, Any],
    *,
    port: int | None = None,
    web: dict[str, Any] | None = None,
    tls: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Alertmanager]:
    """A real Alertmanager; ``web`` is its ``--web.config.file`` (TLS, basic auth), ``tls``/``headers`` how the
    test itself talks to it then."""
    exe = binary("prometheus-alertmanager", "prometheus-alertmanager")
    work = Path(tempfile.mkdtemp(prefix="alertmanager-test-"))
    (work / "alertmanager.yml").write_text(yaml.safe_dump(cfg))
    port = port or free_port()
    argv = [
        exe,
        f"--config.file={work / 'alertmanager.yml'}",
        f"--storage.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=debug",
    ]
    if web is not None:
        (work / "web.yml").write_text(yaml.safe_dump(web))
        argv.append(f"--web.config.file={work / 'web.yml'}")
    am = Alertmanager(argv, port, work, tls=tls, headers=headers)
    try:
        await am.start()
        yield am
    except BaseException:
        print(f"--- alertmanager log ---\n{am.log()[-4000:]}")
        raise
    finally:
        am.stop()
        shutil.rmtree(work, ignore_errors=True)


@asynccontextmanager
async def running_prometheus(watchdog_listen: str, alertmanager_port: int) -> AsyncIterator[Server]:
    """``deploy/prometheus/prometheus.yml`` scraping the watchdog every second, rules evaluated every second."""
    exe = binary("prometheus", "prometheus")
    work = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
    cfg: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    cfg["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    cfg["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "mcp-watchdog"]
    job["static_configs"] = [{"targets": [watchdog_listen]}]
    # the shipped rules with every `for:` cut to 0s, so that a test waits seconds, not minutes
    rules = yaml.safe_load(RULES_YML.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    (work / RULES_YML.name).write_text(yaml.safe_dump(rules))
    cfg["rule_files"] = [RULES_YML.name]
    (work / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    prom = Server(
        [
            exe,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
        port,
        work,
    )
    try:
        await prom.start()
        yield prom
    except BaseException:
        print(f"--- prometheus log ---\n{prom.log()[-4000:]}")
        raise
    finally:
        prom.stop()
        shutil.rmtree(work, ignore_errors=True)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with the openssl command line."""
    openssl = binary("openssl", "openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=watchdog-test-ca")  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        (folder / f"{name}.ext").write_text(ext + "\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=watchdog-test-{name}")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext")  # fmt: skip
    return {n: folder / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}
