"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``) with ``watchdog probe`` as client.

``conformance client --command CMD --scenario S`` starts the scenario's server and runs ``CMD <server url>``;
the scenario's checks decide. Every client scenario the suite lists is either run here (with each protocol
setting its server speaks) or skipped for a reason written in ``SKIPPED`` (and in the README); a scenario the
suite adds later fails ``test_every_client_scenario_is_run_or_skipped_for_a_reason`` until it is placed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.probes.peers import node_env, npm_bin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# scenario -> (the probe definition, the protocol settings its server speaks)
PROBES: dict[str, tuple[str, tuple[str, ...]]] = {
    "initialize": (
        "mcp:\n  list_tools: true\n",
        ("auto", "legacy", "2025-06-18", "2025-11-25"),
    ),
    "tools_call": (
        "mcp:\n  list_tools: true\n  tool: add_numbers\n  arguments: {a: 5, b: 3}\n"
        "  match: 'The sum of 5 and 3 is 8'\n",
        ("auto", "legacy", "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"),
    ),
    "sse-retry": (  # its server answers initialize with 2025-03-26 whatever is offered
        "mcp:\n  list_tools: true\n  tool: test_reconnection\n",
        ("auto", "legacy", "2025-03-26"),
    ),
}

SKIPPED = {
    "elicitation-sep1034-client-defaults": "the probe declares no elicitation capability and answers no server "
    "requests: a liveness probe must never fill in a form on a server's behalf",
    "auth/": "OAuth (metadata discovery, client registration, token endpoints, scopes): the probe's only "
    "authentication is a static bearer token from the environment (auth.bearer_env), not an OAuth client",
}


def conformance(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [npm_bin("conformance"), *args], env=node_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def test_every_client_scenario_is_run_or_skipped_for_a_reason() -> None:
    out = conformance("list", "--client")
    assert out.returncode == 0, out.stderr
    listed = re.findall(r"^\s*-\s+(\S+)", out.stdout, flags=re.MULTILINE)
    assert "initialize" in listed, out.stdout
    unplaced = [s for s in listed if s not in PROBES and not any(s.startswith(k) for k in SKIPPED)]
    assert unplaced == [], f"client scenarios neither run nor skipped for a reason: {unplaced}"
    print(f"\n{len(listed)} client scenarios: run {sorted(PROBES)}; skipped {len(listed) - len(PROBES)}")


@pytest.mark.parametrize(("scenario", "protocol"), [(s, p) for s, (_, protocols) in PROBES.items() for p in protocols])
def test_watchdog_probe_passes_the_scenario(tmp_path: Path, scenario: str, protocol: str) -> None:
    body, _ = PROBES[scenario]
    probe = tmp_path / "probe.yaml"
    probe.write_text(f"name: conformance-{scenario}\nkind: mcp\nurl: http://127.0.0.1:9/mcp\n{body}")
    probe.write_text(probe.read_text().replace("mcp:\n", f"mcp:\n  protocol: {protocol}\n", 1))
    # the suite appends the scenario server's URL to the command (split on spaces, run by a shell)
    command = f"{sys.executable} -m watchdog probe -f {probe} --url"
    out = conformance("client", "--command", command, "--scenario", scenario, "--timeout", "60000")
    summary = "\n".join(line for line in out.stderr.splitlines() if "Passed:" in line or "OVERALL" in line)
    print(f"\nconformance {scenario} with protocol {protocol}: {summary.strip() or out.stderr[-2000:]}")
    assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-2000:]
    assert "OVERALL: PASSED" in out.stderr + out.stdout
    assert re.search(r"Passed: (\d+)/\1, 0 failed, 0 warnings", out.stderr + out.stdout), summary
