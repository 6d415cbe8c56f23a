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


def test_tasks_routed_by_a_version_replaced_meanwhile_are_routed_again_by_the_new_one(tmp_path, monkeypatch):
    """An ingest routes a batch by the version it loaded; a lead applies one without `legal`
    before the batch is written: the batch is routed again by the new version in its write
    transaction, so no task is left in a queue nobody can claim from, nor routed by a retired
    rule. A process holding the old version decides by the new one too."""
    from router.engine import Engine
    from router.ingest import TaskInput
    from router.ingest_pipeline import BatchWriter
    from router.store import Store

    monkeypatch.setenv("LABELYARD_NOW", "2025-03-01T09:00:00Z")
    path = str(tmp_path / "v.db")
    store, _ = Store.init(path)
    old = Engine(store)
    old.apply(V1.replace("on_create:", "on_quorum:\n  - {name: check, do: {annotate: legal}}\non_create:"),
              "v1.workflow.yaml", actor="lead")
    rows = [TaskInput(1, "L1", {}, "legal", []), TaskInput(2, "Q1", {}, None, [])]
    batch = old._route_batch(old.workflow, old.workflow_id, rows, "in.jsonl")
    old.add_worker("ann", ["annotator"], [], None, actor="lead")
    old.ingest([TaskInput(1, "Q0", {}, None, [])], "earlier.jsonl")
    claim = old.claim("ann")

    other = Engine(Store.open(path))
    other.apply(V2, "v2.workflow.yaml", actor="lead")  # drops `legal`; nothing open there yet
    other.close()

    writer = BatchWriter(path, "in.jsonl")
    writer.write(batch)
    writer.close()
    l1, q1 = store.task("ext:L1"), store.task("ext:Q1")
    v2 = store.active_workflow_id()
    assert (l1["status"], l1["queue"], l1["workflow_version"]) == ("open", "q", v2)
    assert [(e["kind"], e["rule"]) for e in store.events(l1["id"])] == [("created", "rest")]
    assert (q1["status"], q1["queue"], q1["workflow_version"]) == ("open", "q", v2)

    old.submit(claim["assignment"], "ann", label="a")  # v1's on_quorum said `annotate: legal`; v2 has none
    q0 = store.task("ext:Q0")
    assert (q0["status"], q0["final_rule"]) == ("done", "default: strict majority")
    old.close()


def test_gold_questions_of_a_dropped_queue_neither_block_apply_nor_stay_stuck(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(V1, "f.workflow.yaml"))
    (tmp_path / "g.jsonl").write_text('{"id": "G1", "data": {}, "answer": "a", "queue": "legal"}\n'
                                      '{"id": "G2", "data": {"v": NaN}, "answer": "a"}\n')
    added = run.ok("gold", "add", "g.jsonl")
    assert "Traceback" not in added.stderr
    assert [r["reason"] for r in run.json("rejects", "--json")] == [
        "the number `NaN` at column 28 is not finite, which JSON cannot carry"]
    applied = run.ok("apply", write_workflow(V2, "f2.workflow.yaml"))  # no open work in `legal`: applies
    assert "1 gold question(s) wait unused in dropped queue `legal`" in applied.stderr
    (tmp_path / "g.jsonl").write_text('{"id": "G1", "data": {}, "answer": "a", "queue": "q"}\n')
    run.ok("gold", "add", "g.jsonl")
    gold = run.json("show", "G1", "--json")
    assert (gold["task"]["queue"], gold["task"]["status"]) == ("q", "open")
    assert [e["detail"].get("was_queue") for e in gold["events"] if e["kind"] == "gold_updated"] == ["legal"]


def test_a_return_decided_with_a_version_replaced_meanwhile_is_held_naming_the_dropped_queue(tmp_path, monkeypatch):
    """A process that loaded v1 decides a review after another applied v2 without `triage`: its
    `return` would offer corrections in a queue nobody can claim from; the task is held instead."""
    from test_flows_returns import RENAMED, RETURNS

    from router.engine import Engine
    from router.ingest import TaskInput
    from router.store import Store

    monkeypatch.setenv("LABELYARD_NOW", "2025-03-01T09:00:00Z")
    path = str(tmp_path / "r.db")
    store, _ = Store.init(path)
    old = Engine(store)
    old.apply(RETURNS, "t.workflow.yaml", actor="lead")
    for name, role in (("a1", "annotator"), ("a2", "annotator"), ("sen", "senior")):
        old.add_worker(name, [role], [], None, actor="lead")
    old.ingest([TaskInput(1, "T1", {}, None, [])], "in.jsonl")
    for name, label in (("a1", "bug"), ("a2", "spam")):
        old.submit(old.claim(name)["assignment"], name, label=label)
    review = old.claim("sen")

    other = Engine(Store.open(path))
    other.apply(RENAMED, "t2.workflow.yaml", actor="lead")  # nothing open in `triage`: applies
    other.close()

    decision = old.submit(review["assignment"], "sen", verdict="reject", comment="no")["decision"]
    assert (decision["action"], decision["reason"]) == (
        "hold", "return: queue `triage`, where its votes were cast, is not in version 2 of workflow `t`; "
                "a lead can `escalate` it")  # before: corrections offered in `triage`
    assert store.query("SELECT count(*) FROM assignments WHERE status = 'offered'")[0][0] == 0
    old.close()
