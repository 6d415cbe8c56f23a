"""``labelyard replay`` replays timer releases and ``on_worker`` decisions, and a rule that failed.

Histories are made by real ``labelyard`` subprocesses on a real SQLite file
(:class:`lead_support.Project`, ``LABELYARD_NOW`` hours after its ``T0``);
``labelyard replay`` runs as a subprocess too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from lead_support import Project
from router.replay import sentence

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = (ROOT / "workflows" / "contract-escalation.workflow.yaml").read_text(encoding="utf-8")
MONDAY_9 = 4 * 24 + 9  # 2026-01-05T09:00:00Z, in hours after T0
SECOND = 1 / 3600

CREW = """\
workflow: crew
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator], skills: []}
on_create: [{name: one, do: {annotate: q}}]
on_quorum: [{name: take, do: accept}]
on_worker:
  - {name: busy, when: worker.submitted == 2, do: {flag: true, reason: busy}}
"""

FAILING = """\
workflow: fails
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create: [{name: one, do: {annotate: q}}]
on_quorum:
  - {name: broken, when: task.data.n + 1 > 2, do: accept}
  - {name: fallback, do: {hold: no rule}}
on_worker:
  - {name: broken worker rule, when: task.data.n + 1 > 2, do: {flag: true}}
"""


def candidate(p: Project, text: str, *changes: tuple[str, str]) -> Path:
    """``text`` with each ``(old, new)`` replaced once, written as the candidate workflow."""
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = p.folder / "candidate.workflow.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def replay(p: Project, path: Path) -> dict[str, Any]:
    return p.json("replay", path)


def work(p: Project, worker: str, label: str = "a", hours: float = 0) -> str:
    """``worker`` claims their next task and labels it; the task's external id."""
    view = p.claim(worker, hours=hours)
    p.submit(view["assignment"], worker, "--label", label, hours=hours)
    return view["external_id"]


# -- timers ----------------------------------------------------------------------------------------

def released_urgent_task(tmp_path: Path) -> Project:
    """contract-escalation; eve claims the urgent U1 at 09:00; a tick at 11:00:01 releases her slot."""
    p = Project(tmp_path, CONTRACTS)
    p.worker("eve", "expert")
    p.run_ok("ingest", _write(p, '{"id": "U1", "data": {"doc_type": "contract"}, "tags": ["urgent"]}'),
             hours=MONDAY_9)
    p.claim("eve", hours=MONDAY_9)
    assert p.json("tick", hours=MONDAY_9 + 2 + SECOND)["released"] == 1
    return p


def _write(p: Project, *lines: str) -> Path:
    path = p.folder / "tasks.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_a_timer_release_is_replayed_and_a_later_threshold_differs(tmp_path):
    p = released_urgent_task(tmp_path)
    later = candidate(p, CONTRACTS, ("assignment.age > 2h", "assignment.age > 3h"))
    result = replay(p, later)
    assert result["sections"]["on_timer"] == {"decisions": 1, "changed": 1}
    (group,) = result["rules"]
    assert (group["section"], group["rule"], group["action"], group["tasks"]) == ("on_timer", None, "none", ["U1"])
    assert group["instead_of"] == [{"rule": "stale assignment", "action": "release", "target": None, "count": 1}]
    text = p.run_ok("replay", later).stdout
    assert "no decision would differ" not in text
    assert "    instead of: 1 by `stale assignment` → release\n" in text

    same = replay(p, candidate(p, CONTRACTS))
    assert (same["sections"]["on_timer"], same["changed"]) == ({"decisions": 1, "changed": 0}, 0)


def test_each_released_assignment_is_one_decision(tmp_path):
    p = Project(tmp_path)  # lead_support's qa: triage wants two votes; `stale assignment` releases after 2h
    for name in ("u1", "u2"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    for name in ("u1", "u2"):
        p.claim(name)
    p.claim("u1")  # u1 and u2 hold T1, u1 holds T2
    assert p.json("tick", hours=2 + SECOND)["released"] == 3
    wf = (p.folder / "wf.workflow.yaml").read_text(encoding="utf-8")
    escalating = candidate(p, wf, ("do: release", "do: {escalate: experts}"))
    result = replay(p, escalating)
    assert result["sections"]["on_timer"] == {"decisions": 3, "changed": 3}
    (group,) = result["rules"]
    assert group["sentence"] == "rule `stale assignment` would have escalated 2 more tasks to experts (3 decisions)"
    assert (group["task_count"], group["after_change"]) == (2, 1)


def test_a_timer_release_recorded_without_facts_is_skipped_and_counted(tmp_path):
    p = released_urgent_task(tmp_path)
    with sqlite3.connect(p.db) as conn:  # as an older Labelyard wrote it
        conn.execute("UPDATE events SET detail = json_remove(detail, '$.facts') WHERE kind = 'released'")
    result = replay(p, candidate(p, CONTRACTS))
    assert result["skipped"] == {"on_timer: no facts recorded": 1}
    assert "on_timer" not in result["sections"]


# -- on_worker ------------------------------------------------------------------------------------

def flagged_on_second_submission(tmp_path: Path) -> Project:
    """crew: ann labels T1, T2, T3; `busy` flags her at her second submission (one worker_flagged event)."""
    p = Project(tmp_path, CREW)
    p.worker("ann", "annotator")
    p.ingest([{"id": f"T{i}"} for i in (1, 2, 3)])
    assert [work(p, "ann") for _ in range(3)] == ["T1", "T2", "T3"]
    assert [e["kind"] for e in p.show("T2")["events"] if e["kind"].startswith("worker_")] == ["worker_flagged"]
    return p


def test_worker_decisions_are_replayed_and_counted_per_worker(tmp_path):
    p = flagged_on_second_submission(tmp_path)
    same = replay(p, candidate(p, CREW))
    assert (same["sections"]["on_worker"], same["changed"], same["notes"]) == (
        {"decisions": 1, "changed": 0}, 0, [])
    assert {"section": "on_worker", "rule": "busy", "decisions": 1} in same["candidate_rules"]

    later = replay(p, candidate(p, CREW, ("worker.submitted == 2", "worker.submitted == 3")))
    (group,) = later["rules"]
    assert group["sentence"] == "no rule would have acted: 1 worker left alone"
    assert (group["worker_count"], group["tasks"]) == (1, ["ann"])
    assert group["instead_of"] == [{"rule": "busy", "action": "flag", "target": True, "count": 1}]


def test_a_worker_rule_that_would_pause_instead_of_flag(tmp_path):
    p = flagged_on_second_submission(tmp_path)
    path = candidate(p, CREW, ("do: {flag: true, reason: busy}", "do: {pause: worker, reason: busy}"))
    (group,) = replay(p, path)["rules"]
    assert group["sentence"] == "rule `busy` would have paused 1 more worker"
    text = p.run_ok("replay", path).stdout
    assert "on_worker: rule `busy` would have paused 1 more worker\n    instead of: 1 by `busy` → flag\n" in text


def test_worker_facts_the_event_does_not_keep_are_counted_as_unrecorded(tmp_path):
    p = flagged_on_second_submission(tmp_path)
    # gold_count: never read by the recorded rule; votes.*: an on_worker event keeps none
    path = candidate(p, CREW, ("worker.submitted == 2", "worker.submitted == 2 and (worker.gold_count == 0 "
                                                        "or votes.count == 1)"))
    result = replay(p, path)
    assert result["unrecorded"] == {"decisions": 1, "facts": ["votes.count", "worker.gold_count"]}
    text = p.run_ok("replay", path).stdout
    assert ("note: 1 decision read votes.count, worker.gold_count, which the recorded decisions did not keep "
            "(their rules never read them; on_worker decisions keep no votes.*") in text


def test_the_flag_a_worker_had_is_known_from_the_event(tmp_path):
    p = flagged_on_second_submission(tmp_path)
    path = candidate(p, CREW, ("worker.submitted == 2", "worker.submitted == 2 and worker.flagged == false"))
    result = replay(p, path)
    assert result["sections"]["on_worker"] == {"decisions": 1, "changed": 0}  # flagged is false, not null
    assert result["unrecorded"]["decisions"] == 0


def test_worker_decisions_recorded_without_facts_are_skipped_and_counted(tmp_path):
    p = flagged_on_second_submission(tmp_path)
    with sqlite3.connect(p.db) as conn:
        conn.execute("UPDATE events SET detail = json_remove(detail, '$.facts') WHERE kind = 'worker_flagged'")
    result = replay(p, candidate(p, CREW))
    assert result["skipped"] == {"on_worker: no facts recorded": 1}


def test_worker_rules_with_no_recorded_decision_say_so(tmp_path):
    p = Project(tmp_path, CREW.replace("worker.submitted == 2", "worker.submitted == 99"))
    p.worker("ann", "annotator")
    p.ingest([{"id": "T1"}])
    work(p, "ann")
    result = replay(p, candidate(p, CREW))
    assert "on_worker" not in result["sections"]
    assert result["notes"] == [
        "on_worker: no recorded decision to replay; on_worker decisions are recorded only when they act "
        "(a pause, a flag, a skill, when it changes the worker), so the candidate's on_worker rules were not tried"]
    assert "note: on_worker: no recorded decision to replay" in p.run_ok("replay", candidate(p, CREW)).stdout


# -- rules that failed ------------------------------------------------------------------------------

def test_a_rule_that_failed_replays_as_the_hold_it_decided(tmp_path):
    p = Project(tmp_path, FAILING)
    p.worker("ann", "annotator")
    p.ingest([{"id": "T1", "data": {"n": "text"}}])
    work(p, "ann")
    kinds = [(e["kind"], e["rule"]) for e in p.show("T1")["events"]]
    assert ("held", "broken") in kinds and ("worker_rule_failed", "broken worker rule") in kinds
    result = replay(p, candidate(p, FAILING))
    assert result["sections"]["on_quorum"] == {"decisions": 1, "changed": 0}
    assert result["sections"]["on_worker"] == {"decisions": 1, "changed": 0}
    assert result["rules"] == []


def test_worker_sentences_count_workers():
    assert sentence("r", "add_skill", "vet", 2, noun="worker") == "rule `r` would have given vet to 2 more workers"
    assert sentence("r", "remove_skill", "vet", 1, noun="worker") == "rule `r` would have taken vet from 1 more worker"
    assert sentence("r", "unflag", None, 1, decisions=3, noun="worker") == (
        "rule `r` would have unflagged 1 more worker (3 decisions)")
