"""``replay`` compares a timer's reprioritise (a ``priority`` event) like any other timer decision.

A rule such as ``{annotate: triage, priority: 10}`` that fires on a task already in ``triage``
sets its priority and writes a ``priority`` event with the section, the facts and the rule's key.
Replay skipped those events: a candidate giving another priority, or with the rule deleted, was
said to change nothing.

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW``.
"""

from __future__ import annotations

from lead_support import Project

HEAD = """\
workflow: bumps
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  experts: {roles: [expert]}
on_create: [{name: all, do: {annotate: triage}}]
on_quorum: [{name: any, do: accept}]
on_timer:
"""
BUMP = "  - {name: bump, when: task.stage_age > 1h, do: {annotate: triage, priority: 10}}\n"


def bumped(tmp_path) -> Project:
    """Two tasks, both reprioritised by ``bump`` at 2h."""
    p = Project(tmp_path, workflow=HEAD + BUMP)
    p.ingest([{"id": "A"}, {"id": "B"}])
    assert p.json("tick", hours=2)["actions"] == {"priority": 2}
    return p


def replay(p: Project, tmp_path, timer_rules: str) -> dict:
    (tmp_path / "cand.workflow.yaml").write_text(HEAD + timer_rules if timer_rules else HEAD.replace("on_timer:\n", ""))
    return p.json("replay", tmp_path / "cand.workflow.yaml")


def test_the_recorded_workflow_replays_its_reprioritise_unchanged(tmp_path):
    p = bumped(tmp_path)
    same = replay(p, tmp_path, BUMP)
    assert same["sections"]["on_timer"] == {"decisions": 2, "changed": 0}
    assert (same["changed"], same["unchanged"]) == (0, 4)


def test_another_priority_is_a_difference(tmp_path):
    p = bumped(tmp_path)
    other = replay(p, tmp_path, BUMP.replace("priority: 10", "priority: 20"))
    assert other["sections"]["on_timer"] == {"decisions": 2, "changed": 2}
    [group] = other["rules"]
    assert (group["rule"], group["action"], group["target"], group["task_count"]) == ("bump", "annotate", "triage", 2)
    assert group["value_changes"] == [{"change": "priority 10 → 20", "count": 2}]
    assert group["instead_of"] == [{"rule": "bump", "action": "annotate", "target": "triage", "count": 2}]
    text = p.run_ok("replay", tmp_path / "cand.workflow.yaml").stdout
    assert "on_timer: rule `bump` would have decided 2 tasks the same way (annotate triage) but with other values" \
        in text
    assert "2 × priority 10 → 20" in text


def test_a_deleted_rule_is_a_difference(tmp_path):
    p = bumped(tmp_path)
    for rules in ("", "  - {name: never, when: task.data.n == 1, do: {hold: x}}\n"):
        gone = replay(p, tmp_path, rules)
        assert gone["sections"]["on_timer"] == {"decisions": 2, "changed": 2}, rules
        [group] = gone["rules"]
        assert (group["rule"], group["task_count"]) == (None, 2)
        assert group["instead_of"] == [{"rule": "bump", "action": "annotate", "target": "triage", "count": 2}]
    assert "on_timer: no rule would have acted: 2 tasks left alone" in \
        p.run_ok("replay", tmp_path / "cand.workflow.yaml").stdout


def test_another_action_is_a_difference(tmp_path):
    p = bumped(tmp_path)
    moved = replay(p, tmp_path, BUMP.replace("{annotate: triage, priority: 10}", "{escalate: experts}"))
    [group] = moved["rules"]
    assert (group["rule"], group["action"], group["target"], group["task_count"]) == ("bump", "escalate", "experts", 2)


def test_a_reprioritise_in_an_escalated_stage_is_the_escalation_the_rule_decided(tmp_path):
    urgent = "  - {name: urgent, when: task.age > 3h, do: {escalate: experts, priority: 9}}\n"
    sla = "  - {name: sla, when: task.age > 1h, do: {escalate: experts}}\n"
    p = Project(tmp_path, workflow=HEAD + urgent + sla)
    p.ingest([{"id": "A"}])
    assert p.json("tick", hours=2)["actions"] == {"escalate": 1}
    assert p.json("tick", hours=4)["actions"] == {"priority": 1}  # already with experts: a reprioritise
    same = replay(p, tmp_path, urgent + sla)
    assert same["sections"]["on_timer"] == {"decisions": 2, "changed": 0}
    lower = replay(p, tmp_path, urgent.replace("priority: 9", "priority: 3") + sla)
    assert lower["sections"]["on_timer"] == {"decisions": 2, "changed": 1}
    assert lower["rules"][0]["value_changes"] == [{"change": "priority 9 → 3", "count": 1}]
