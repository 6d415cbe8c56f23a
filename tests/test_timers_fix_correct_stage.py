"""The docs' reprioritise rule (``{annotate: triage, priority: 10}`` on tasks waiting in triage) keeps a
correction round: a task returned to its annotators (stage ``correct``, in its annotate queue) gets
the priority, its corrections stay offered, and the annotators can still finish it.

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW`` (hours after T0).
"""

from __future__ import annotations

from lead_support import Project

WORKFLOW = """\
workflow: corrections
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create: [{name: start, do: {annotate: triage}}]
on_quorum: [{name: check, do: {review: senior}}]
on_review:
  - {name: approved, when: review.verdict == "approve", do: accept}
  - {name: rejected, do: {return: annotators}}
on_timer:
  - name: waiting a day
    when: task.queue == "triage" and task.stage_age > 1d
    do: {annotate: triage, priority: 10}      # first in line; the task stays in triage
"""


def returned(p: Project) -> dict:
    """T1 annotated by ann, rejected by sam: back with ann for a correction."""
    p.worker("ann", "annotator")
    p.worker("sam", "senior")
    p.ingest([{"id": "T1"}])
    view = p.claim("ann")
    p.submit(view["assignment"], "ann", "--label", "cat")
    review = p.claim("sam")
    p.submit(review["assignment"], "sam", "--reject", "--comment", "it is a dog")
    task = p.show("T1")["task"]
    assert (task["stage"], task["queue"]) == ("correct", "triage")
    return task


def test_a_correction_round_is_reprioritised_not_thrown_away(tmp_path):
    p = Project(tmp_path, workflow=WORKFLOW)
    before = returned(p)
    report = p.json("tick", hours=25)
    assert (report["actions"], report["unchanged"]) == ({"priority": 1}, 0)
    shown = p.show("T1")
    t = shown["task"]
    assert (t["stage"], t["queue"], t["round"], t["priority"]) == ("correct", "triage", before["round"], 10.0)
    assert [(a["worker"], a["status"]) for a in shown["assignments"] if a["stage"] == "correct"] == [("ann", "offered")]
    fix = p.claim("ann", hours=25.5)
    assert fix["kind"] == "correct" and fix["external_id"] == "T1"
    p.submit(fix["assignment"], "ann", "--label", "dog", hours=26)
    assert p.show("T1")["task"]["stage"] == "review"  # on to the reviewer again, not stuck
    assert p.json("tick", hours=27)["actions"] == {}


def test_a_correction_round_without_a_new_priority_is_left_alone(tmp_path):
    p = Project(tmp_path, workflow=WORKFLOW.replace("priority: 10", "priority: 0"))
    before = returned(p)
    report = p.json("tick", hours=25)
    assert (report["actions"], report["unchanged"]) == ({}, 1)
    t = p.show("T1")["task"]
    assert (t["stage"], t["round"]) == ("correct", before["round"])
