"""``queue.*`` leaves gold questions out: their slots are not ``queue.active`` (timers and the
decisions of submit read the same counts), as ``status`` leaves them out.

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW`` (hours after T0).
"""

from __future__ import annotations

import json

from lead_support import Project, engine_at

HEAD = """\
workflow: goldcounts
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
quality: {gold: {rate: 1}}
on_create: [{name: start, do: {annotate: triage}}]
"""


def add_gold(p: Project, ids: tuple[str, ...] = ("G1",)) -> None:
    path = p.folder / "gold.jsonl"
    path.write_text("".join(json.dumps({"id": g, "data": {"n": 0}, "answer": "cat"}) + "\n" for g in ids))
    p.run_ok("gold", "add", path)


def facts_of(p: Project, task: str, kind: str) -> dict:
    (event,) = [e for e in p.show(task)["events"] if e["kind"] == kind]
    return event["detail"]["facts"]["queue"]


def test_a_gold_slot_is_not_queue_active_for_a_timer(tmp_path):
    rules = "on_timer:\n  - {name: crowded, when: 'task.queue == \"triage\" and queue.active > 0', do: {hold: crowded}}\n"
    p = Project(tmp_path, workflow=HEAD + rules)
    p.worker("ann", "annotator")
    add_gold(p)
    assert p.claim("ann")["external_id"] == "G1"  # a gold slot, active in triage
    p.ingest([{"id": "T1"}])
    report = p.json("tick", hours=1)
    assert (report["tasks_checked"], report["actions"]) == (1, {})
    assert p.show("T1")["task"]["status"] == "open"
    assert p.json("status")["queues"]["triage"]["active"] == 0  # what status says too


def test_a_gold_slot_is_not_queue_active_for_on_quorum(tmp_path):
    rules = ("on_quorum:\n  - {name: busy, when: queue.active > 0, do: {review: senior}}\n"
             "  - {name: quiet, do: accept}\n")
    p = Project(tmp_path, workflow=HEAD + rules)
    p.worker("ann", "annotator")
    p.worker("gil", "annotator")
    p.ingest([{"id": "T1"}])
    view = p.claim("ann")  # before any gold exists: T1
    add_gold(p)
    assert p.claim("gil")["external_id"] == "G1"
    p.submit(view["assignment"], "ann", "--label", "cat")
    t1 = p.show("T1")
    assert (t1["task"]["status"], t1["task"]["final_rule"]) == ("done", "quiet")
    assert facts_of(p, "T1", "final")["active"] == 0


def test_a_released_gold_slot_leaves_queue_active_where_it_was(tmp_path):
    # the tick keeps queue.* up to date as it releases slots: a gold slot it never counted is not taken off
    rules = ("on_timer:\n"
             "  - {name: stale, when: 'assignment.worker == \"a1\" and assignment.age > 2h and queue.active >= 0', "
             "do: release}\n"
             "  - {name: note, when: 'assignment.worker == null and task.external_id == \"T2\" and queue.active >= 0', "
             "do: {hold: noted}}\n")
    p = Project(tmp_path, workflow=HEAD + rules)
    p.worker("a1", "annotator")
    p.worker("a2", "annotator")
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    assert p.claim("a2")["external_id"] == "T1"  # before any gold exists
    add_gold(p)
    assert p.claim("a1", hours=1)["external_id"] == "G1"
    report = p.json("tick", hours=3.5)
    assert (report["released"], report["actions"]) == (1, {"hold": 1})
    assert [a["status"] for a in p.show("G1")["assignments"]] == ["released"]
    assert facts_of(p, "T2", "held")["active"] == 1  # a2's slot on T1; the gold slot never counted


def test_queue_stats_reads_indexes_and_counters_not_the_queue(tmp_path, monkeypatch):
    p = Project(tmp_path, workflow=HEAD)
    p.ingest([{"id": f"T{i}"} for i in range(40)])
    engine = engine_at(p.db, monkeypatch, 1)
    store = engine.store
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    stats = store.queue_stats("triage", 3600.0 + 1767225600)
    store.conn.set_trace_callback(None)
    assert (stats["waiting"], stats["active"], stats["oldest_age"]) == (40, 0, 3600.0)
    plans = [" ".join(str(r[-1]) for r in store.conn.execute("EXPLAIN QUERY PLAN " + s)) for s in statements]
    assert plans and not any("SCAN tasks" in plan or ("SCAN assignments" in plan and "INDEX" not in plan)
                             for plan in plans), plans
    assert not any("tasks_status_queue" in plan for plan in plans), plans  # every open task of the queue
    engine.close()
