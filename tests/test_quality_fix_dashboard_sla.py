"""The dashboard's SLA breaches: ``sla: 0s`` is an SLA (every task that has waited at all is past it).

The project is made by real ``labelyard`` subprocesses on a real SQLite file;
the dashboard reads it through :class:`router.queries.Queries` a minute later
(``LABELYARD_NOW``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.queries import Queries

WORKFLOW = """\
workflow: slas
labels: {type: choice, choices: [a, b]}
queues:
  instant: {roles: [annotator], sla: 0s}
  hourly:  {roles: [annotator], sla: 1h}
  relaxed: {roles: [annotator]}
on_create:
  - {name: now, when: task.category == "now", do: {annotate: instant}}
  - {name: soon, when: task.category == "soon", do: {annotate: hourly}}
  - {name: whenever, do: {annotate: relaxed}}
"""
LATER = "2025-03-01T09:01:00Z"  # a minute after the conftest's NOW, when the tasks arrived


@pytest.fixture
def dashboard(run, write_workflow, tmp_path, monkeypatch) -> dict[str, Any]:
    """The dashboard a minute after two tasks entered each queue."""
    run.ok("init")
    run.ok("apply", write_workflow(WORKFLOW, name="slas.workflow.yaml"))
    rows = [{"id": f"{c}-{i}", "category": c, "data": {}} for c in ("now", "soon", "later") for i in range(2)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.ok("ingest", "t.jsonl")
    monkeypatch.setenv("LABELYARD_NOW", LATER)
    q = Queries.open(str(run.db))
    try:
        return q.dashboard()
    finally:
        q.close()


def test_a_zero_sla_counts_every_waiting_task_as_a_breach(dashboard):
    queues = {q["name"]: q for q in dashboard["queues"]}
    assert (queues["instant"]["sla"], queues["instant"]["breaches"]) == (0, 2)
    assert (queues["hourly"]["sla"], queues["hourly"]["breaches"]) == (3600, 0)
    assert (queues["relaxed"]["sla"], queues["relaxed"]["breaches"]) == (None, 0)


def test_a_zero_sla_breach_is_an_alert(dashboard):
    errors = [a["text"] for a in dashboard["alerts"] if a["level"] == "error"]
    assert errors == ["instant: 2 task(s) past the 0s SLA"]
