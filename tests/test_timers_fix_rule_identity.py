"""An unnamed ``on_timer`` rule is known by what it says, not by its position, when the tick asks
whether it already acted on a task in its round: a rule inserted before it in a new version is a new
rule, and it stays the rule it was. Events of an older Labelyard (the position alone) are read with
the version that wrote them.

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW`` (hours after T0).
"""

from __future__ import annotations

import sqlite3

import pytest

from lead_support import Project

HEAD = """\
workflow: identity
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
on_create: [{name: start, do: {annotate: triage}}]
on_timer:
"""
BUMP = "  - {when: task.age > 1h, do: {annotate: triage, priority: 5}}\n"
TOO_OLD = "  - {when: task.age > 2h, do: {hold: \"too old\"}}\n"
NEVER = "  - {when: task.data.n == 99, do: {hold: \"never\"}}\n"


def as_older_labelyard_wrote_them(p: Project) -> None:
    """Drop the rule keys from the timer events, as a Labelyard before them wrote those events."""
    with sqlite3.connect(p.db) as db:
        db.execute("UPDATE events SET detail = json_remove(detail, '$.rule_key') "
                   "WHERE json_extract(detail, '$.section') = 'on_timer'")
    db.close()


def bumped_then(tmp_path, second: str, legacy: bool) -> Project:
    """v1 reprioritises T-1 and T-2 at 1.5h; then v2, with ``second`` inserted first, is applied."""
    p = Project(tmp_path, workflow=HEAD + BUMP)
    p.ingest([{"id": "T-1", "data": {"n": 1}}, {"id": "T-2", "data": {"n": 2}}])
    assert p.json("tick", hours=1.5)["actions"] == {"priority": 2}
    if legacy:
        as_older_labelyard_wrote_them(p)
    (tmp_path / "v2.workflow.yaml").write_text(HEAD + second + BUMP)
    p.run_ok("apply", tmp_path / "v2.workflow.yaml", hours=2)
    return p


@pytest.mark.parametrize("legacy", [False, True], ids=["keyed", "older-events"])
def test_an_unnamed_rule_inserted_first_is_a_new_rule(tmp_path, legacy):
    p = bumped_then(tmp_path, TOO_OLD, legacy)
    report = p.json("tick", hours=3)
    assert (report["actions"], report["already_fired"]) == ({"hold": 2}, 0)
    for task in ("T-1", "T-2"):
        t = p.show(task)["task"]
        assert (t["status"], t["reason"]) == ("held", "too old")
    text = p.run_ok("explain", "T-1").stdout  # still shown by position: readable
    assert "on_timer: rule `on_timer[1]` → hold" in text
    assert "on_timer: rule `on_timer[1]` → priority 0 → 5 (stays in triage)" in text


@pytest.mark.parametrize("legacy", [False, True], ids=["keyed", "older-events"])
def test_an_unnamed_rule_moved_down_does_not_act_again_in_the_round(tmp_path, legacy):
    p = bumped_then(tmp_path, NEVER, legacy)
    p.run_ok("priority", "T-1", "0", hours=2.5)  # a lead puts it back
    report = p.json("tick", hours=3)
    assert (report["actions"], report["already_fired"]) == ({}, 2)
    assert p.show("T-1")["task"]["priority"] == 0.0  # the lead's word stands
    p.run_ok("apply", tmp_path / "wf.workflow.yaml", hours=3.5)  # v1 again: the same rule, first again
    assert p.json("tick", hours=4)["already_fired"] == 2


@pytest.mark.parametrize("name, acts", [("", True), ("name: bump, ", False)], ids=["unnamed", "named"])
def test_an_edited_rule_is_another_rule_unless_it_is_named(tmp_path, name, acts):
    rule = "  - {" + name + "when: task.age > 1h, do: {annotate: triage, priority: 5}}\n"
    p = Project(tmp_path, workflow=HEAD + rule)
    p.ingest([{"id": "T-1"}])
    assert p.json("tick", hours=1.5)["actions"] == {"priority": 1}
    p.run_ok("priority", "T-1", "0", hours=1.6)
    (tmp_path / "v2.workflow.yaml").write_text(HEAD + rule.replace("priority: 5", "priority: 7"))
    p.run_ok("apply", tmp_path / "v2.workflow.yaml", hours=2)
    report = p.json("tick", hours=2.5)
    assert (report["actions"], report["already_fired"]) == (({"priority": 1}, 0) if acts else ({}, 1))
    assert p.show("T-1")["task"]["priority"] == (7.0 if acts else 0.0)


def test_validate_warns_that_an_unnamed_timer_rule_is_known_by_its_content(tmp_path):
    p = Project(tmp_path, workflow=HEAD + BUMP)
    (tmp_path / "named.workflow.yaml").write_text(HEAD + "  - {name: bump, when: task.age > 1h, do: {hold: x}}\n")
    named = p.run_ok("validate", tmp_path / "named.workflow.yaml")
    assert "warning" not in named.stderr
    proc = p.run_ok("validate", tmp_path / "wf.workflow.yaml")
    assert "wf.workflow.yaml:7:5: warning: this on_timer rule has no `name`: it is known by its `when` and `do`" \
        in proc.stderr
    assert "give it a `name:`" in proc.stderr
    assert p.run("validate", "--strict", tmp_path / "wf.workflow.yaml").returncode == 1
