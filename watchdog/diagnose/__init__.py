"""``watchdog diagnose``: what a running Python server is doing, with the evidence, in one call.

Layout (each module imports only those above it):

- ``evidence``: ``ProcessEvidence``, the plain data a diagnosis rests on (signals over one window).
- ``knowledge``: frames that give failures away, known-bad versions, advice.
- ``spin``: a spin told from timeout churn by the cancel scope re-delivered (py-spy --locals); its culprit.
- ``verdicts``: the engine, pure functions ``evidence -> [Verdict]``; testable on recorded evidence.
- ``report``: ``DiagnoseReport`` and its JSON form, described by ``schema.json`` (package data).
- ``collect``: ``diagnose(pid, ...)``, which gathers the evidence from real processes, concurrently.
- ``render``: the terminal report.
"""

from watchdog.diagnose.collect import DEFAULT_DURATION, DEFAULT_RATE, collect_evidence, diagnose
from watchdog.diagnose.evidence import Poll, ProcessEvidence
from watchdog.diagnose.render import render_text
from watchdog.diagnose.report import SCHEMA_VERSION, DiagnoseReport, ProcessReport, schema
from watchdog.diagnose.spin import Culprit, ScopeEvidence
from watchdog.diagnose.verdicts import Thresholds, Verdict, evaluate

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_RATE",
    "SCHEMA_VERSION",
    "Culprit",
    "DiagnoseReport",
    "Poll",
    "ProcessEvidence",
    "ProcessReport",
    "ScopeEvidence",
    "Thresholds",
    "Verdict",
    "collect_evidence",
    "diagnose",
    "evaluate",
    "render_text",
    "schema",
]
