"""``labelyard tick`` fixes: task-independent rules reach open tasks, gold slots are released,
``queue.*`` follows the tick's own moves, and a same-queue action with a new priority reprioritises.

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW`` (hours after T0).
"""

from __future__ import annotations

import json

import pytest

from lead_support import Project, engine_at

HEAD = """\
workflow: fixes
labels: {type: choice, choices: [cat, dog]}
queues:
  triage:   {roles: [annotator]}
  overflow: {roles: [annotator]}
  experts:  {roles: [expert]}
on_create: [{name: start, do: {annotate: triage}}]
"""
DEADLINE = 1767657600  # 2026-01-06T00:00:00Z, 120 hours after T0


def timer(rules: str, extra: str = "") -> str:
    return HEAD + extra + "on_timer:\n" + rules


def routed(project: Project, task: str, kinds: tuple[str, ...] = ("routed",)) -> list[dict]:
    return [e for e in project.show(task)["events"] if e["kind"] in kinds]


# -- 1. rules that read only `now` and `assignment.*` decide for open tasks too --------------------

@pytest.mark.parametrize("when", [
    f"assignment.worker == null and now >= {DEADLINE}",
    f"now >= {DEADLINE}",
    "true",
], ids=["null-worker-and-deadline", "deadline", "always"])
def test_a_rule_without_task_facts_acts_on_open_tasks(tmp_path, when):
    rules = f"  - {{name: campaign over, when: '{when}', do: {{hold: \"campaign ended\"}}}}\n"
    p = Project(tmp_path, workflow=timer(rules))
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    report = p.json("tick", hours=144)  # 2026-01-07
    assert (report["tasks_checked"], report["actions"]) == (2, {"hold": 2})
    task = p.show("T1")["task"]
    assert (task["status"], task["reason"]) == ("held", "campaign ended")
    (held,) = routed(p, "T1", ("held",))
    assert held["rule"] == "campaign over" and held["detail"]["section"] == "on_timer"


def test_before_the_deadline_the_task_pass_is_skipped_and_holds_nothing(tmp_path):
    rules = (f"  - {{name: campaign over, when: 'assignment.worker == null and now >= {DEADLINE}', "
             "do: {hold: \"campaign ended\"}}\n")
    p = Project(tmp_path, workflow=timer(rules))
    p.ingest([{"id": "T1"}])
    early = p.json("tick", hours=100)
    assert (early["tasks_checked"], early["actions"]) == (0, {})  # decided once for every task: not due
    assert p.show("T1")["task"]["status"] == "open"
    assert p.json("tick", hours=121)["actions"] == {"hold": 1}


def test_a_null_worker_rule_decides_in_the_task_pass(tmp_path):
    rules = ("  - {name: stale, when: assignment.age > 2h, do: release}\n"
             "  - {name: task level, when: assignment.worker == null, do: {escalate: experts}}\n")
    p = Project(tmp_path, workflow=timer(rules))
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    report = p.json("tick", hours=1)
    assert (report["tasks_checked"], report["actions"]) == (2, {"escalate": 2})
    assert p.show("T2")["task"]["queue"] == "experts"


def test_assignment_only_rules_still_skip_the_task_pass(tmp_path):
    rules = "  - {name: stale, when: assignment.age > 2h, do: release}\n"
    p = Project(tmp_path, workflow=timer(rules))
    p.ingest([{"id": "T1"}])
    assert p.json("tick", hours=500)["tasks_checked"] == 0


# -- 2. a gold slot is released even when a task rule matches the gold task -------------------------

GOLD_RULES = """\
  - {name: unread for days, when: 'task.stage == "annotate" and task.stage_age > 3d', do: {escalate: experts}}
  - {name: stale, when: assignment.age > 2h, do: release}
"""


def test_a_stale_gold_slot_is_released_though_an_earlier_task_rule_matches_it(tmp_path):
    p = Project(tmp_path, workflow=timer(GOLD_RULES, extra="quality: {gold: {rate: 1}}\n"))
    (tmp_path / "gold.jsonl").write_text(json.dumps({"id": "G1", "data": {"n": 1}, "answer": "cat"}) + "\n")
    p.run_ok("gold", "add", tmp_path / "gold.jsonl")
    p.run_ok("workers", "add", "ann", "--role", "annotator", "--capacity", "1")
    (tmp_path / "later.jsonl").write_text(json.dumps({"id": "T1"}) + "\n")
    p.run_ok("ingest", tmp_path / "later.jsonl", hours=96)
    gold = p.claim("ann", hours=96)
    assert gold["external_id"] == "G1"
    assert p.run("claim", "--as", "ann", "--json", hours=97).returncode == 3  # at capacity

    report = p.json("tick", hours=101)
    assert report["released"] == 1 and report["actions"] == {}
    g1 = p.show("G1")
    assert [a["status"] for a in g1["assignments"]] == ["released"]
    assert (g1["task"]["stage"], g1["task"]["queue"], g1["task"]["status"]) == ("annotate", "triage", "open")
    (event,) = [e for e in g1["events"] if e["kind"] == "released"]
    assert event["rule"] == "stale"
    assert p.claim("ann", hours=101.5)["external_id"] == "T1"  # room again


# -- 3. queue.* facts follow the tick's own moves --------------------------------------------------

OVERFLOW = "  - {name: overflow, when: 'task.queue == \"triage\" and queue.waiting > 3', do: {annotate: overflow}}\n"


def decision_of(project: Project, task: str) -> dict:
    proc = project.run_ok("explain", task, "--json")
    (event,) = [e for e in json.loads(proc.stdout)["events"] if e.get("decision", {}).get("section") == "on_timer"]
    return event["decision"]


def test_queue_waiting_goes_down_as_the_tick_moves_tasks(tmp_path):
    p = Project(tmp_path, workflow=timer(OVERFLOW))
    p.ingest([{"id": f"O{i}"} for i in range(1, 7)])
    report = p.json("tick", hours=1)
    assert report["actions"] == {"annotate": 3}
    assert [p.show(f"O{i}")["task"]["queue"] for i in range(1, 7)] == ["overflow"] * 3 + ["triage"] * 3
    first = decision_of(p, "O1")["trace"]
    assert first == ['task.queue = "triage" == "triage" → true', "queue.waiting = 6 > 3 → true"]
    assert decision_of(p, "O3")["trace"][-1] == "queue.waiting = 4 > 3 → true"
    (event,) = routed(p, "O3")
    assert event["detail"]["facts"]["queue"]["waiting"] == 4
    assert p.json("tick", hours=2)["actions"] == {}


def test_queue_facts_are_kept_up_to_date_across_pages(tmp_path, monkeypatch):
    from router.timers import tick

    p = Project(tmp_path, workflow=timer(OVERFLOW))
    p.ingest([{"id": f"O{i}"} for i in range(1, 8)])
    engine = engine_at(p.db, monkeypatch, 1)
    assert tick(engine, page=2).actions == {"annotate": 4}
    engine.close()
    assert [p.show(f"O{i}")["task"]["queue"] for i in range(1, 8)] == ["overflow"] * 4 + ["triage"] * 3


def test_queue_oldest_age_follows_the_oldest_waiting_task(tmp_path):
    rules = ("  - {name: old queue, when: 'task.queue == \"triage\" and queue.oldest_age > 1h', "
             "do: {annotate: overflow}}\n")
    p = Project(tmp_path, workflow=timer(rules))
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    (tmp_path / "later.jsonl").write_text(json.dumps({"id": "T3"}) + "\n")
    p.run_ok("ingest", tmp_path / "later.jsonl", hours=3)
    report = p.json("tick", hours=3.5)
    assert report["actions"] == {"annotate": 2}
    assert [p.show(t)["task"]["queue"] for t in ("T1", "T2", "T3")] == ["overflow", "overflow", "triage"]
    assert decision_of(p, "T2")["trace"][-1] == "queue.oldest_age = 12600.0 > 1h → true"


def test_queue_active_goes_down_as_the_tick_releases_slots(tmp_path):
    rules = "  - {name: thin out, when: assignment.age > 1h and queue.active > 1, do: release}\n"
    p = Project(tmp_path, workflow=timer(rules))
    for name in ("a1", "a2", "a3"):
        p.worker(name, "annotator")
    p.ingest([{"id": f"T{i}"} for i in range(1, 4)])
    for name in ("a1", "a2", "a3"):
        p.claim(name)
    report = p.json("tick", hours=2)
    assert report["released"] == 2
    statuses = [p.show(f"T{i}")["assignments"][0]["status"] for i in range(1, 4)]
    assert statuses == ["released", "released", "active"]
    (event,) = routed(p, "T2", ("released",))
    assert event["detail"]["facts"]["queue"]["active"] == 2


# -- 6. an action into the task's own stage and queue with a new priority reprioritises --------------

def test_a_same_queue_annotate_with_a_new_priority_sets_the_priority(tmp_path):
    rules = ("  - {name: bump, when: 'task.queue == \"triage\" and task.age > 1d', "
             "do: {annotate: triage, priority: 10}}\n")
    p = Project(tmp_path, workflow=timer(rules))
    p.worker("ann", "annotator")
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    view = p.claim("ann", hours=23)
    before = p.show(view["external_id"])["task"]
    report = p.json("tick", hours=25)
    assert report["actions"] == {"priority": 2} and report["unchanged"] == 0
    after = p.show(view["external_id"])
    t = after["task"]
    assert (t["priority"], t["queue"], t["stage"], t["round"]) == (10.0, "triage", "annotate", before["round"])
    assert after["assignments"][-1]["status"] == "active"  # the worker keeps the slot
    (event,) = [e for e in after["events"] if e["kind"] == "priority"]
    assert (event["rule"], event["actor"], event["detail"]["from"], event["detail"]["to"]) == (
        "bump", "labelyard tick", 0.0, 10.0)
    again = p.json("tick", hours=26)
    assert again["actions"] == {} and again["already_fired"] == 3  # T1 twice: its slot, and the task
    text = p.run_ok("explain", "T2").stdout
    assert "on_timer: rule `bump` → priority 0 → 10 (stays in triage)" in text
    p.submit(view["assignment"], "ann", "--label", "cat", hours=26.5)  # the slot still counts
    assert p.show(view["external_id"])["task"]["status"] == "done"


def test_the_same_priority_again_is_unchanged(tmp_path):
    rules = "  - {name: keep, when: 'task.queue == \"triage\"', do: {annotate: triage, priority: 0}}\n"
    p = Project(tmp_path, workflow=timer(rules))
    p.ingest([{"id": "T1"}])
    report = p.json("tick", hours=1)
    assert (report["actions"], report["unchanged"]) == ({}, 1)


def test_a_rule_that_opened_the_stage_does_not_reprioritise_it_later(tmp_path):
    rules = "  - {name: late, when: task.age > 1h, do: {escalate: experts, priority: task.age / 3600}}\n"
    p = Project(tmp_path, workflow=timer(rules))
    p.ingest([{"id": "T1"}])
    assert p.json("tick", hours=2)["actions"] == {"escalate": 1}
    report = p.json("tick", hours=3)
    assert (report["actions"], report["unchanged"]) == ({}, 1)
    assert p.show("T1")["task"]["priority"] == 2.0


def test_another_rule_may_reprioritise_a_task_a_rule_moved(tmp_path):
    rules = ("  - {name: late, when: 'task.queue == \"triage\" and task.age > 1h', do: {escalate: experts}}\n"
             "  - {name: urgent, when: 'task.queue == \"experts\" and task.stage_age > 1h', "
             "do: {escalate: experts, priority: 5}}\n")
    p = Project(tmp_path, workflow=timer(rules))
    p.ingest([{"id": "T1"}])
    assert p.json("tick", hours=2)["actions"] == {"escalate": 1}
    assert p.json("tick", hours=2.5)["actions"] == {}
    assert p.json("tick", hours=3.5)["actions"] == {"priority": 1}
    t = p.show("T1")["task"]
    assert (t["queue"], t["stage"], t["priority"]) == ("experts", "escalated", 5.0)
