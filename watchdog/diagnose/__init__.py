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

import typing as _typing

from watchdog._lazy import lazy_names as _lazy_names

if _typing.TYPE_CHECKING:
    from watchdog.diagnose.collect import DEFAULT_DURATION, DEFAULT_RATE, collect_evidence, diagnose
    from watchdog.diagnose.evidence import Poll, ProcessEvidence
    from watchdog.diagnose.findings import evaluate
    from watchdog.diagnose.render import render_text
    from watchdog.diagnose.report import SCHEMA_VERSION, DiagnoseReport, ProcessReport, schema
    from watchdog.diagnose.spin import Culprit, ScopeEvidence
    from watchdog.diagnose.verdicts import Thresholds, Verdict

# Each name is imported from its module when first used (PEP 562): the sidecar's stack looks need the engine
# (collect, verdicts, spin, report), not the terminal rendering.
_WHERE = {
    "DEFAULT_DURATION": "watchdog.diagnose.collect",
    "DEFAULT_RATE": "watchdog.diagnose.collect",
    "collect_evidence": "watchdog.diagnose.collect",
    "diagnose": "watchdog.diagnose.collect",
    "Poll": "watchdog.diagnose.evidence",
    "ProcessEvidence": "watchdog.diagnose.evidence",
    "render_text": "watchdog.diagnose.render",
    "SCHEMA_VERSION": "watchdog.diagnose.report",
    "DiagnoseReport": "watchdog.diagnose.report",
    "ProcessReport": "watchdog.diagnose.report",
    "schema": "watchdog.diagnose.report",
    "Culprit": "watchdog.diagnose.spin",
    "ScopeEvidence": "watchdog.diagnose.spin",
    "Thresholds": "watchdog.diagnose.verdicts",
    "Verdict": "watchdog.diagnose.verdicts",
    "evaluate": "watchdog.diagnose.findings",
}


__getattr__, __dir__ = _lazy_names(globals(), _WHERE)

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
