"""Applying a version that drops a queue: refused while the queue holds open tasks, or the
tasks are held for a lead (``--hold-orphans``), in the same transaction as the new version."""

from __future__ import annotations

import json

V1 = """\
workflow: f
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
  legal: {roles: [annotator]}
on_create:
  - {name: legal, when: 'task.category == "legal"', do: {annotate: legal}}
  - {name: rest, do: {annotate: q}}
"""
V2 = V1.replace("  legal: {roles: [annotator]}\n", "").replace(
    "  - {name: legal, when: 'task.category == \"legal\"', do: {annotate: legal}}\n", "")


def test_dropping_a_queue_with_open_tasks_is_refused_or_holds_them(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(V1, "f.workflow.yaml"))
    run.ok("workers", "add", "ann", "--role", "annotator")
    rows = [{"id": "L1", "category": "legal", "data": {}}, {"id": "L2", "category": "legal", "data": {}},
            {"id": "Q1", "data": {}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.ok("ingest", "t.jsonl")
    claimed = run.json("claim", "--as", "ann", "--queue", "legal", "--json")
    v2 = write_workflow(V2, "f2.workflow.yaml")

    refused = run("apply", v2)
    assert refused.returncode == 1
    assert "this version drops `legal` (2 open tasks): nobody could claim those tasks again" in refused.stderr
    assert "--hold-orphans" in refused.stderr
    assert run.json("status", "--json")["workflow"]["version"] == 1  # nothing applied

    applied = run.ok("apply", v2, "--hold-orphans")
    assert "held 2 open task(s) of dropped queues" in applied.stdout
    held = run.json("show", "L1", "--json")
    assert held["task"]["status"] == "held"
    assert held["task"]["reason"] == "queue `legal` is not in version 2 of workflow `f`"
    assert [a["status"] for a in held["assignments"]] == ["released"]
    assert run.json("show", "Q1", "--json")["task"]["status"] == "open"
    late = run("submit", claimed["assignment"], "--as", "ann", "--label", "a")
    assert late.returncode == 1  # the slot was taken back: kept in the history, decides nothing

    unhold = run("unhold", "L2")
    assert unhold.returncode == 1
    assert "waits in queue `legal`, which the workflow no longer has" in unhold.stderr
    assert "route it with `labelyard escalate id:" in unhold.stderr  # never a bare id another task may have
    run.ok("escalate", "L2", "--to", "q")
    moved = run.json("show", "L2", "--json")["task"]
    assert (moved["status"], moved["queue"]) == ("open", "q")
