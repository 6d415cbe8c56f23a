"""``labelyard explain`` fixes: a timer release shows its condition and trace, and the summary
names the event that put the task where it is (a lead's action as the lead's, never a worker rule).

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW`` (hours after T0).
"""

from __future__ import annotations

import json
import sqlite3

from lead_support import LEAD, WORKFLOW, Project

HEAD = """\
workflow: fixes
labels: {type: choice, choices: [cat, dog]}
queues:
  triage:  {roles: [annotator]}
  experts: {roles: [expert]}
on_create: [{name: start, do: {annotate: triage}}]
"""


def explain(project: Project, task: str, hours: float) -> tuple[str, dict]:
    text = project.run_ok("explain", task, hours=hours).stdout
    return text, json.loads(project.run_ok("explain", task, "--json", hours=hours).stdout)


# -- 4. a timer release records and shows its condition ---------------------------------------------

def released_project(tmp_path) -> Project:
    p = Project(tmp_path)  # on_timer: `stale assignment` (assignment.age > 2h) → release
    p.worker("ann", "annotator")
    p.ingest([{"id": "T1"}])
    p.claim("ann")
    assert p.json("tick", hours=2.5)["released"] == 1
    return p


def test_a_timer_release_shows_its_condition_and_the_values_it_saw(tmp_path):
    p = released_project(tmp_path)
    text, data = explain(p, "T1", 3)
    (event,) = [e for e in data["events"] if e["kind"] == "released"]
    d = event["decision"]
    assert (d["section"], d["rule"], d["action"]) == ("on_timer", "stale assignment", "release")
    assert d["condition"] == "assignment.age > 2h"
    assert d["trace"] == ["assignment.age = 9000.0 > 2h → true"]
    assert "on_timer: rule `stale assignment` → release\n      when assignment.age > 2h\n" in text
    assert "        assignment.age = 9000.0 > 2h → true" in text
    assert "no condition" not in text.split("released by labelyard tick")[1]


def test_a_release_recorded_without_its_condition_does_not_claim_it_always_matches(tmp_path):
    p = released_project(tmp_path)
    with sqlite3.connect(p.db) as db:  # as an older labelyard recorded it
        detail = json.loads(db.execute("SELECT detail FROM events WHERE kind = 'released'").fetchone()[0])
        for key in ("condition", "trace"):
            detail.pop(key, None)
        db.execute("UPDATE events SET detail = ? WHERE kind = 'released'", (json.dumps(detail),))
    db.close()
    text, _ = explain(p, "T1", 3)
    assert "(condition not recorded: released by an older labelyard)" in text
    assert "always matches" not in text.split("released by labelyard tick")[1]


# -- 5. the summary names what put the task where it is ----------------------------------------------

def test_a_worker_rule_on_a_gold_submission_is_not_what_placed_the_gold_task(tmp_path):
    workflow = HEAD + """\
quality: {gold: {rate: 1}}
on_worker:
  - {name: gold pause, when: worker.gold_count >= 1 and worker.gold_accuracy < 0.5, do: {pause: worker}}
"""
    p = Project(tmp_path, workflow=workflow)
    (tmp_path / "gold.jsonl").write_text(json.dumps({"id": "G1", "answer": "cat"}) + "\n")
    p.run_ok("gold", "add", tmp_path / "gold.jsonl")
    p.worker("ann", "annotator")
    view = p.claim("ann", hours=1)
    assert view["external_id"] == "G1"
    p.submit(view["assignment"], "ann", "--label", "dog", hours=1.5)
    assert [w for w in p.json("workers", "list") if w["id"] == "ann"][0]["paused"]
    text, data = explain(p, "G1", 2)
    assert "on_worker" not in data["summary"]
    assert data["summary"].endswith(f", since {LEAD} added it as a gold question (2026-01-01T00:00:00+00:00)")
    assert "on_worker: rule `gold pause` → pause" in text  # still told, as an event


def test_after_a_lead_unholds_the_summary_names_the_lead(tmp_path):
    workflow = HEAD + "on_timer:\n  - {name: partner sla breach, when: task.age > 4h, do: {hold: \"partner SLA\"}}\n"
    p = Project(tmp_path, workflow=workflow)
    p.ingest([{"id": "T1"}])
    assert p.json("tick", hours=5)["actions"] == {"hold": 1}
    held, _ = explain(p, "T1", 5)
    assert held.splitlines()[0].endswith("since rule `partner sla breach` in on_timer (2026-01-01T05:00:00+00:00)")
    p.run_ok("unhold", "T1", hours=6)
    _, data = explain(p, "T1", 7)
    assert data["summary"] == (f"open: waiting in `triage` for annotate (1 more submission), "
                               f"since {LEAD} unheld it (2026-01-01T06:00:00+00:00)")


def test_a_lead_escalation_is_told_as_the_lead_s(tmp_path):
    p = Project(tmp_path, workflow=WORKFLOW)
    p.ingest([{"id": "T1"}])
    p.run_ok("escalate", "T1", "--to", "experts", hours=1)
    text, data = explain(p, "T1", 2)
    assert data["summary"] == (f"open: waiting in `experts` for escalated (1 more submission), "
                               f"since {LEAD} escalated it to `experts` (2026-01-01T01:00:00+00:00)")
    assert f"lead: escalated by {LEAD} → escalate experts" in text
    assert "no rule" not in text
