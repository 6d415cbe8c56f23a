"""Fixes of the fourteenth session's lead findings: `--where` judges a value as a rule's `when`
does, a task already where an action would put it is skipped, `show` writes priorities whole and
says what each lead action did, the "needs the lead role" hint keeps the worker's roles,
`reassign --where --from W` walks W's slots, `status` points a held correction round nobody can
take back to `escalate`, and reasons print on one line.

Every test runs the real ``labelyard`` command in a subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3

from lead_support import Project
from test_flows_claims import claim
from test_flows_returns import reject, voted


def kinds(p: Project, ref: str) -> list[str]:
    return [e["kind"] for e in p.show(ref)["events"]]


def history(p: Project, ref: str) -> list[str]:
    text = p.run_ok("show", ref).stdout.splitlines()
    return [line.strip() for line in text[text.index("history:") + 1:]]


# -- F1: `--where` judges `{}` false, as a rule's `when` does -------------------------------------


def test_where_treats_an_empty_object_as_false_as_a_rule_condition_does(tmp_path):
    workflow = """\
workflow: w
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  meta:   {roles: [annotator]}
on_create:
  - {name: with meta, when: task.data.meta, do: {annotate: meta}}
  - {name: default, do: {annotate: triage}}
"""
    p = Project(tmp_path, workflow=workflow)
    p.ingest([{"id": "A1", "data": {"meta": {}}}, {"id": "A2", "data": {"meta": {"x": 1}}},
              {"id": "A3", "data": {"meta": []}}, {"id": "A4", "data": {}}])
    routed = {ref: p.show(ref)["task"]["queue"] for ref in ("A1", "A2", "A3", "A4")}
    assert routed == {"A1": "triage", "A2": "meta", "A3": "triage", "A4": "triage"}
    out = p.json("priority", "--where", "task.data.meta", "--dry-run", "3")
    assert [d["external_id"] for d in out["done"]] == ["A2"]  # A1's `{}` matched too
    assert out["matched"] == 1
