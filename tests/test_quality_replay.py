"""``labelyard replay`` sees every task fact a decision saw, and says what it could not replay."""

from __future__ import annotations

from lead_support import Project
from router.engine import REPLAY_FACTS
from router.replay import ROW_FACTS
from rules.context import CONTEXT_SCHEMA

TIMED = """\
workflow: tm
labels: {type: choice, choices: [a, b]}
queues:
  q1: {roles: [annotator]}
  experts: {roles: [expert], sla: 1h}
on_create:
  - do: {annotate: q1, overlap: 2}
on_quorum:
  - name: unanimous
    when: votes.unanimous
    do: accept
  - name: split
    do: {escalate: experts, reason: split}
on_review:
  - do: accept
on_timer:
  - name: old
    when: task.stage_age > 3h and task.queue == "q1"
    do: {escalate: experts, reason: "too old"}
"""


def test_every_fact_a_rule_can_read_is_recorded_or_rebuilt():
    """A fact added to the language must be kept for replay, or replay silently reads null."""
    for root, fields in CONTEXT_SCHEMA.items():
        if root in ("prediction", "queue", "now"):
            continue  # prediction: from the task row; queue: recorded whole when read; now: the event's time
        kept = set(REPLAY_FACTS[root]) | (set(ROW_FACTS) if root == "task" else set())
        assert kept == set(fields), (root, set(fields) - kept)


def test_the_active_workflow_replays_its_timer_decisions_unchanged(tmp_path):
    p = Project(tmp_path, TIMED)
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    p.run_ok("tick", hours=4)  # both have waited 4h in q1: the timer escalates them
    assert p.show("T1")["task"]["queue"] == "experts"
    (timed,) = [e for e in p.show("T1")["events"] if e["rule"] == "old"]
    assert timed["detail"]["facts"]["task"]["stage_age"] == 4 * 3600
    result = p.json("replay", tmp_path / "wf.workflow.yaml")
    assert result["sections"]["on_timer"] == {"decisions": 2, "changed": 0}
    assert (result["changed"], result["unrecorded"], result["notes"]) == (0, {"decisions": 0, "facts": []}, [])


def test_replay_says_when_the_candidate_read_queue_facts_nobody_recorded(tmp_path):
    p = Project(tmp_path, TIMED)
    for name in ("u1", "u2"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1"}])
    for name in ("u1", "u2"):
        view = p.claim(name)
        p.submit(view["assignment"], name, "--label", "a")
    candidate = tmp_path / "candidate.workflow.yaml"
    candidate.write_text(TIMED.replace("when: votes.unanimous", "when: votes.unanimous and queue.kappa == null")
                         + "quality:\n  consensus: weighted\n")
    result = p.json("replay", candidate)
    assert result["unrecorded"] == {"decisions": 1, "facts": ["queue.kappa"]}
    assert result["notes"] == ["votes.* are replayed as recorded (consensus majority, labels.iou 0.5); the "
                               "candidate's consensus weighted, labels.iou 0.5 is not applied to them"]
    text = p.run_ok("replay", candidate).stdout
    assert "note: 1 decision read queue.kappa, which the recorded decisions did not keep" in text
    assert "consensus weighted" in text
