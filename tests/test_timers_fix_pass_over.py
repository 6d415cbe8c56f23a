"""A timer rule that already acted on a task in its round, or whose action would change nothing, is
passed over: the next matching rule decides. Before, the first matching rule settled the task, so a
rule that had held it (a lead then unheld it), reprioritised it, or re-escalated it into the queue it
was in kept every later rule, the stale-slot ``release`` among them, from ever acting: the worker
kept the slot for good.

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW`` (hours after T0).
"""

from __future__ import annotations

import pytest

from lead_support import Project

HEAD = """\
workflow: s2
labels: {type: choice, choices: [a, b]}
queues:
  triage:  {roles: [annotator]}
  experts: {roles: [expert]}
on_create: [{name: default, do: {annotate: triage}}]
on_timer:
"""
SLA_HOLD = '  - {name: sla missed, when: task.stage_age > 1d, do: {hold: "SLA missed; a lead steps in"}}\n'
BUMP = "  - {name: waiting a day, when: task.stage_age > 1d, do: {annotate: triage, priority: 10}}\n"
ESCALATE = "  - {name: sla breach, when: task.age > 2d, do: {escalate: experts}}\n"
STALE = "  - {name: stale assignment, when: assignment.age > 2h, do: release}\n"


def slot_status(p: Project, task: str) -> str:
    return p.show(task)["assignments"][-1]["status"]


@pytest.mark.parametrize("when", ["task.stage_age > 1d", "queue.name == \"triage\" and task.stage_age > 1d"],
                         ids=["task-facts", "queue-facts"])
def test_a_rule_that_held_the_task_does_not_keep_its_stale_slot_from_being_released(tmp_path, when):
    p = Project(tmp_path, workflow=HEAD + SLA_HOLD.replace("task.stage_age > 1d", when) + STALE)
    p.worker("alice", "annotator")
    p.ingest([{"id": "S1"}])
    assert p.json("tick", hours=24.01)["actions"] == {"hold": 1}
    p.run_ok("unhold", "S1", hours=25)
    p.claim("alice", hours=25)
    report = p.json("tick", hours=24 * 8)
    assert (report["released"], report["actions"], report["already_fired"]) == (1, {}, 1)  # the task, not its slot
    assert slot_status(p, "S1") == "released"
    assert p.show("S1")["task"]["status"] == "open"  # the lead's unhold stands
    (event,) = [e for e in p.show("S1")["events"] if e["kind"] == "released"]
    assert (event["rule"], event["detail"]["section"]) == ("stale assignment", "on_timer")


def test_the_reprioritise_rule_before_a_release_lets_the_release_act(tmp_path):
    p = Project(tmp_path, workflow=HEAD + BUMP + STALE)
    p.worker("alice", "annotator")
    p.ingest([{"id": "S1"}])
    p.claim("alice", hours=23)
    assert p.json("tick", hours=24.5)["actions"] == {"priority": 1}  # the slot's turn: the rule reprioritises
    assert slot_status(p, "S1") == "active"
    report = p.json("tick", hours=26)
    assert (report["released"], report["actions"], report["already_fired"]) == (1, {}, 1)
    assert slot_status(p, "S1") == "released"
    assert p.show("S1")["task"]["priority"] == 10.0


def test_a_re_escalation_into_the_queue_the_task_is_in_lets_the_release_act(tmp_path):
    p = Project(tmp_path, workflow=HEAD + ESCALATE + STALE)
    p.worker("erin", "expert")
    p.ingest([{"id": "S1"}])
    assert p.json("tick", hours=49)["actions"] == {"escalate": 1}
    p.claim("erin", hours=49)
    report = p.json("tick", hours=52)
    assert (report["released"], report["actions"], report["unchanged"]) == (1, {}, 1)
    assert slot_status(p, "S1") == "released"
    assert p.show("S1")["task"]["queue"] == "experts"


def test_with_no_later_rule_matching_nothing_acts_and_the_count_says_why(tmp_path):
    p = Project(tmp_path, workflow=HEAD + SLA_HOLD + STALE)
    p.worker("alice", "annotator")
    p.ingest([{"id": "S1"}])
    p.json("tick", hours=24.01)
    p.run_ok("unhold", "S1", hours=25)
    p.claim("alice", hours=25)
    report = p.json("tick", hours=26)  # the slot is an hour old: not stale yet
    assert (report["released"], report["actions"], report["already_fired"]) == (0, {}, 2)  # the slot and the task
    assert slot_status(p, "S1") == "active"


def test_a_later_task_action_decides_when_the_first_already_acted(tmp_path):
    p = Project(tmp_path, workflow=HEAD + BUMP + ESCALATE)
    p.ingest([{"id": "S1"}])
    assert p.json("tick", hours=25)["actions"] == {"priority": 1}
    assert p.json("tick", hours=49)["actions"] == {"escalate": 1}
    assert p.show("S1")["task"]["queue"] == "experts"


def test_a_release_that_matches_every_task_does_not_settle_the_task_pass(tmp_path):
    rules = "  - {name: end of shift, when: now > 0, do: release}\n" + SLA_HOLD
    p = Project(tmp_path, workflow=HEAD + rules)
    p.worker("alice", "annotator")
    p.ingest([{"id": "S1"}, {"id": "S2"}])
    p.claim("alice", hours=1)
    report = p.json("tick", hours=25)
    assert (report["released"], report["actions"]) == (1, {"hold": 2})
    p.run_ok("unhold", "S1", hours=25.5)
    again = p.json("tick", hours=26)  # the release has no slot: not what is counted, the hold already acted
    assert (again["released"], again["actions"], again["already_fired"], again["unchanged"]) == (0, {}, 1, 0)


def test_replay_of_the_recorded_workflow_takes_the_same_decisions(tmp_path):
    p = Project(tmp_path, workflow=HEAD + SLA_HOLD + STALE)
    p.worker("alice", "annotator")
    p.ingest([{"id": "S1"}])
    p.json("tick", hours=24.01)
    p.run_ok("unhold", "S1", hours=25)
    p.claim("alice", hours=25)
    assert p.json("tick", hours=24 * 8)["released"] == 1
    same = p.json("replay", tmp_path / "wf.workflow.yaml")
    assert same["sections"]["on_timer"] == {"decisions": 2, "changed": 0}, same
    (tmp_path / "no-hold.workflow.yaml").write_text(HEAD + STALE)
    other = p.json("replay", tmp_path / "no-hold.workflow.yaml")
    assert other["sections"]["on_timer"] == {"decisions": 2, "changed": 1}, other
