"""``labelyard tick``: on_timer rules over active assignments and open tasks, idempotent."""

from __future__ import annotations

import json

import pytest

from lead_support import WORKFLOW, Project, engine_at


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    for name in ("ann1", "ann2"):
        p.worker(name, "annotator")
    p.worker("eve", "expert")
    p.ingest([{"id": f"T{i}", "data": {"n": i}} for i in range(1, 4)])
    return p


def test_a_stale_assignment_is_released_for_someone_else(project):
    a = project.claim("ann1")
    assert a["external_id"] == "T1"
    quiet = project.json("tick", hours=1.5)
    assert quiet["released"] == 0 and quiet["assignments_checked"] == 1
    assert project.show("T1")["task"]["free_slots"] == 1

    report = project.json("tick", hours=2.5)
    assert report["released"] == 1
    t = project.show("T1")
    assert t["task"]["free_slots"] == 2
    assert [x["status"] for x in t["assignments"]] == ["released"]
    (event,) = [e for e in t["events"] if e["kind"] == "released"]
    assert event["rule"] == "stale assignment" and event["actor"] == "labelyard tick"
    assert event["detail"]["facts"]["assignment"]["age"] == pytest.approx(2.5 * 3600)

    again = project.json("tick", hours=2.5)
    assert again["released"] == 0 and again["assignments_checked"] == 0
    # the slot went back to the queue: ann2 gets T1, and ann1 cannot submit the old one
    assert project.claim("ann2", hours=2.6)["external_id"] == "T1"
    proc = project.run("submit", a["assignment"], "--as", "ann1", "--label", "cat", hours=2.7)
    assert proc.returncode == 1


def test_sla_breach_escalates_once(project):
    assert project.json("tick", hours=47)["actions"] == {}
    report = project.json("tick", hours=49)
    assert report["actions"] == {"escalate": 3}
    t = project.show("T2")["task"]
    assert (t["stage"], t["queue"], t["reason"]) == ("escalated", "experts", "SLA breach")
    routed = [e for e in project.show("T2")["events"] if e["kind"] == "routed"]
    assert routed[-1]["detail"]["round"] == 0 and routed[-1]["detail"]["facts"]["task"]["age"] == 49 * 3600
    view = project.claim("eve", hours=49)
    before = len(project.show(view["external_id"])["events"])

    again = project.json("tick", hours=50)
    assert again["actions"] == {} and again["unchanged"] == 4  # 3 tasks, and the expert's slot of one
    shown = project.show(view["external_id"])
    assert len(shown["events"]) == before
    assert shown["assignments"][-1]["status"] == "active"  # the expert keeps the slot
    project.submit(view["assignment"], "eve", "--label", "dog", hours=50.5)
    assert project.show(view["external_id"])["task"]["final_by"] == "expert"


def test_a_rule_acts_once_per_round(tmp_path):
    workflow = WORKFLOW.replace(
        "on_timer:\n",
        "on_timer:\n  - name: park\n    when: task.age > 1h and task.data.n == 1\n    do: {hold: \"parked\"}\n",
    )
    p = Project(tmp_path, workflow=workflow)
    p.ingest([{"id": "T1", "data": {"n": 1}}, {"id": "T2", "data": {"n": 2}}])
    assert p.json("tick", hours=2)["actions"] == {"hold": 1}
    t = p.show("T1")
    assert (t["task"]["status"], t["task"]["reason"]) == ("held", "parked")
    held = [e for e in t["events"] if e["kind"] == "held"]
    assert held[0]["rule"] == "park" and held[0]["detail"]["round"] == t["task"]["round"]
    p.run_ok("unhold", "T1", hours=3)
    report = p.json("tick", hours=4)
    assert report["actions"] == {} and report["already_fired"] == 1
    assert p.show("T1")["task"]["status"] == "open"


def test_tick_pages_through_every_open_task(project, monkeypatch):
    from router.timers import tick

    project.ingest([{"id": f"U{i}", "data": {}} for i in range(7)], name="more.jsonl")
    engine = engine_at(project.db, monkeypatch, 60)
    report = tick(engine, page=2)
    assert report.tasks == 10 and report.actions["escalate"] == 10
    assert tick(engine, page=2).actions == {}
    engine.close()


def test_without_timer_rules_tick_does_nothing(tmp_path):
    workflow = WORKFLOW.split("on_timer:")[0]
    p = Project(tmp_path, workflow=workflow)
    p.ingest([{"id": "T1"}])
    report = p.json("tick", hours=500)
    assert report == {"assignments_checked": 0, "tasks_checked": 0, "released": 0, "actions": {},
                      "already_fired": 0, "unchanged": 0}
    assert p.show("T1")["task"]["queue"] == "triage"


def test_a_stale_correct_slot_goes_back_to_its_annotator(project):
    a, b = project.claim("ann1"), project.claim("ann2")
    project.submit(a["assignment"], "ann1", "--label", "cat")
    project.submit(b["assignment"], "ann2", "--label", "dog")
    project.worker("sam", "senior")
    review = project.claim("sam")
    project.submit(review["assignment"], "sam", "--reject", "--comment", "again")
    fix = project.claim("ann1", hours=1)
    assert fix["kind"] == "correct"
    project.json("tick", hours=3.5)
    slots = [s for s in project.show("T1")["assignments"] if s["stage"] == "correct"]
    assert {(s["worker"], s["status"]) for s in slots} == {("ann1", "offered"), ("ann2", "offered")}
    again = project.claim("ann1", hours=4)
    assert again["kind"] == "correct" and again["task"] == fix["task"]


def test_text_output_summarises(project):
    out = project.run_ok("tick", hours=49).stdout
    assert "3 escalate" in out and "released 0" in out
    assert json.loads(project.run_ok("tick", "--json", hours=49).stdout)["unchanged"] == 3


CHAIN = """\
workflow: chain
labels: {{type: choice, choices: [a, b]}}
queues:
  {first}: {{roles: [annotator]}}
  {second}: {{roles: [annotator]}}
  {third}: {{roles: [annotator]}}
on_create: [{{name: start, do: {{annotate: {first}}}}}]
on_timer:
  - {{name: late 1, when: 'task.queue == "{first}" and task.age > 1h', do: {{escalate: {second}}}}}
  - {{name: late 2, when: 'task.queue == "{second}" and task.age > 1h', do: {{escalate: {third}}}}}
  - {{name: late 3, when: 'task.queue == "{third}" and task.age > 1h', do: {{hold: "too late"}}}}
"""


@pytest.mark.parametrize("names", [("a1", "b2", "c3"), ("z1", "y2", "x3")], ids=["sorting-later", "sorting-earlier"])
def test_a_task_moves_at_most_once_per_tick_whatever_its_queues_are_called(tmp_path, names):
    first, second, third = names
    p = Project(tmp_path, workflow=CHAIN.format(first=first, second=second, third=third))
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    report = p.json("tick", hours=2)
    assert (report["tasks_checked"], report["actions"]) == (2, {"escalate": 2})
    assert p.show("T1")["task"]["queue"] == second
    assert p.json("tick", hours=2.1)["actions"] == {"escalate": 2}
    assert p.json("tick", hours=2.2)["actions"] == {"hold": 2}
    assert p.show("T2")["task"]["status"] == "held"


def test_stage_age_restarts_when_a_task_changes_queue(tmp_path):
    workflow = CHAIN.format(first="a1", second="b2", third="c3").replace("task.age", "task.stage_age")
    p = Project(tmp_path, workflow=workflow)
    p.ingest([{"id": "T1"}])
    assert p.json("tick", hours=2)["actions"] == {"escalate": 1}
    assert p.json("tick", hours=2.5)["actions"] == {}  # half an hour in b2
    assert p.json("tick", hours=3.1)["actions"] == {"escalate": 1}
    assert p.show("T1")["task"]["queue"] == "c3"


LOW_PRIORITY = WORKFLOW.replace("""  - name: sla breach
    when: task.age > 48h""", """  - name: sla breach
    when: task.queue == "triage" and task.priority < 1""")


def test_a_task_changed_between_the_pages_read_and_its_transaction_is_decided_again(tmp_path, monkeypatch):
    """A lead raises T1's priority after tick read the page (priority 0: the rule matched) and
    before its transaction: the rule no longer holds, so nothing acts. Before, T1 was escalated
    at priority 5 with the event recording priority 0."""
    from router import timers

    p = Project(tmp_path, LOW_PRIORITY)
    p.worker("eve", "expert")
    p.ingest([{"id": "T1", "data": {}}, {"id": "T2", "data": {}}])
    engine = engine_at(p.db, monkeypatch, 1)
    act = timers._Tick._act

    def lead_acts_first(self, todo):
        other = engine_at(p.db, monkeypatch, 1)
        from router.lead import Lead
        Lead(other, "lena").run("priority", ["T1"], value=5)
        other.close()
        act(self, todo)

    monkeypatch.setattr(timers._Tick, "_act", lead_acts_first)
    report = timers.tick(engine)
    engine.close()
    assert report.actions.get("escalate") == 1  # T2 only
    t1, t2 = p.show("T1")["task"], p.show("T2")["task"]
    assert (t1["queue"], t1["priority"]) == ("triage", 5.0)
    assert t2["queue"] == "experts"


def test_timer_decisions_of_a_run_are_the_runs(project):
    project.claim("ann1")
    project.run_ok("run", hours=2.5)
    (event,) = [e for e in project.show("T1")["events"] if e["kind"] == "released"]
    assert event["actor"] == "labelyard run"  # before: "labelyard tick", though only `run` ran
