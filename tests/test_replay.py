"""``labelyard replay FILE``: a candidate workflow over the recorded history, nothing changed.

The history is built through the engine on a real SQLite file (``LABELYARD_NOW``
fixed); ``labelyard replay`` runs as a real subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from router.engine import Engine
from router.ingest import read_file
from router.store import Store

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "workflows" / "ticket-triage.workflow.yaml"
NOW = "2025-01-06T09:00:00Z"

TICKETS = [
    {"id": "T-1", "data": {"subject": "Refund please", "customer": "c-1"}, "prediction": {"label": "bug", "confidence": 0.62}},
    {"id": "T-2", "data": {"subject": "Crash on login", "customer": "c-2"}, "prediction": {"label": "bug", "confidence": 0.97}},
    {"id": "T-3", "data": {"subject": "Dark mode", "customer": "c-3"}, "prediction": {"label": "feature", "confidence": 0.99}},
    {"id": "T-4", "data": {"subject": "Invoice VAT", "customer": "c-4"}, "prediction": {"label": "billing", "confidence": 0.8}},
    {"id": "T-5", "data": {"subject": "", "customer": "c-5"}, "prediction": {"label": "spam", "confidence": 0.5}},
    {"id": "T-6", "data": {"subject": "Bulk tags", "customer": "c-6"}, "prediction": {"label": "feature", "confidence": 0.96}},
]
DECISIONS = 6 + 3  # six created events; T-1: two of three, approved; T-4: unanimous


def build_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    db = tmp_path / "history.db"
    store, _ = Store.init(str(db))
    engine = Engine(store)
    engine.apply(WORKFLOW.read_text(encoding="utf-8"), str(WORKFLOW), actor="lucy")
    for name, roles in (("ann1", ["annotator"]), ("ann2", ["annotator"]), ("ann3", ["annotator"]), ("sen", ["senior"])):
        engine.add_worker(name, roles, [], actor="lucy")
    inbox = tmp_path / "tickets.jsonl"
    inbox.write_text("".join(json.dumps(t) + "\n" for t in TICKETS), encoding="utf-8")
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    for worker, label in (("ann1", "bug"), ("ann2", "bug"), ("ann3", "feature")):
        view = engine.claim(worker)
        assert view["external_id"] == "T-1"
        engine.submit(view["assignment"], worker, label=label)
    review = engine.claim("sen")
    engine.submit(review["assignment"], "sen", verdict="approve")
    view = engine.claim("ann1")
    assert view["external_id"] == "T-4"
    engine.submit(view["assignment"], "ann1", label="billing")
    engine.close()
    return db


@pytest.fixture()
def history(tmp_path, monkeypatch) -> Path:
    return build_history(tmp_path, monkeypatch)


def labelyard(*args: str, db: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABELYARD_DB": str(db), "LABELYARD_NOW": NOW}
    return subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def candidate(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = WORKFLOW.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "candidate.workflow.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def replay_json(path: Path, db: Path) -> dict:
    proc = labelyard("replay", str(path), "--json", db=db, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_recorded_workflow_replays_to_no_difference(history, tmp_path):
    result = replay_json(candidate(tmp_path), history)
    assert result["decisions"] == DECISIONS
    assert result["sections"] == {"on_create": {"decisions": 6, "changed": 0},
                                  "on_quorum": {"decisions": 2, "changed": 0},
                                  "on_review": {"decisions": 1, "changed": 0}}
    assert (result["unchanged"], result["changed"], result["skipped"]) == (DECISIONS, 0, {})
    assert result["rules"] == []
    assert result["recorded"] == {"name": "ticket-triage", "version": 1}


def test_a_stricter_threshold_would_send_more_tasks_to_triage(history, tmp_path):
    path = candidate(tmp_path, ("prediction.confidence >= 0.95", "prediction.confidence >= 0.98"))
    before = digest(history)
    result = replay_json(path, history)
    assert result["changed"] == 2  # T-2 (0.97) and T-6 (0.96); T-3 (0.99) stays accepted
    (group,) = result["rules"]
    assert (group["section"], group["rule"], group["action"], group["target"]) == ("on_create", "default", "annotate", "triage")
    assert group["sentence"] == "rule `default` would have sent 2 more tasks to triage"
    assert group["instead_of"] == [{"rule": "confident model", "action": "accept", "target": None, "count": 2}]
    assert group["tasks"] == ["T-2", "T-6"]
    assert result["fewer"] == [{"section": "on_create", "rule": "confident model", "count": 2}]
    assert digest(history) == before

    text = labelyard("replay", str(path), db=history, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "on_create: rule `default` would have sent 2 more tasks to triage" in text.stdout
    assert "instead of: 2 by `confident model` → accept" in text.stdout
    assert "e.g. T-2, T-6" in text.stdout
    assert f"{DECISIONS - 2} unchanged, 0 same outcome by another rule, 2 would differ" in text.stdout


def test_quorum_decisions_replay_on_the_votes_they_saw(history, tmp_path):
    # without the 2-of-3 rule, T-1's three votes (agreement 2/3) fall through to the experts
    path = candidate(tmp_path, ("votes.count == 3 and votes.top_count == 2", "votes.count == 3 and votes.top_count == 3"))
    result = replay_json(path, history)
    assert result["sections"]["on_quorum"] == {"decisions": 2, "changed": 1}
    (group,) = result["rules"]
    assert group["sentence"] == "rule `no majority` would have escalated 1 more task to experts"
    assert group["instead_of"] == [{"rule": "two of three", "action": "review", "target": "senior", "count": 1}]
    assert group["tasks"] == ["T-1"]


def test_changed_values_and_renamed_rules_are_told_apart(history, tmp_path):
    path = candidate(tmp_path, ("overlap: 3, priority: 1 - prediction.confidence", "overlap: 5, priority: 1 - prediction.confidence"),
                     ("name: confident model", "name: sure model"))
    result = replay_json(path, history)
    assert result["same_outcome_other_rule"] == 3  # T-2, T-3 and T-6, accepted by the renamed rule
    (group,) = result["rules"]
    assert group["sentence"] == "rule `uncertain` would have decided 1 task the same way (annotate triage) but with other values"
    assert group["value_changes"] == [{"change": "overlap 3 → 5", "count": 1}]


def test_decisions_recorded_without_facts_are_skipped_and_counted(history, tmp_path):
    with sqlite3.connect(history) as conn:  # as an older Labelyard wrote them
        conn.execute("UPDATE events SET detail = json_remove(detail, '$.facts') WHERE kind IN ('routed', 'final')")
    result = replay_json(candidate(tmp_path), history)
    assert result["skipped"] == {"on_quorum: no facts recorded": 2, "on_review: no facts recorded": 1}
    assert result["decisions"] == 6


def test_replay_opens_the_database_read_only(history):
    store = Store.open(str(history))
    store.read_only()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.add_event("probe", 0.0)
    store.close()


def test_replay_of_an_invalid_candidate_reports_file_line_col(history, tmp_path):
    path = candidate(tmp_path, ("when: prediction.confidence < 0.7", "when: prediction.confidense < 0.7"))
    proc = labelyard("replay", str(path), db=history, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "confidense" in text)
    assert f"{path}:{line}:" in proc.stderr
    assert "did you mean `prediction.confidence`?" in proc.stderr


def test_replay_needs_an_initialised_database(tmp_path):
    proc = labelyard("replay", str(candidate(tmp_path)), db=tmp_path / "none.db", cwd=tmp_path)
    assert proc.returncode == 1
    assert "run `labelyard init` first" in proc.stderr
    assert not (tmp_path / "none.db").exists()


def test_a_group_of_moved_tasks_and_changed_values_says_both(history, tmp_path):
    path = candidate(tmp_path, ("prediction.confidence >= 0.95", "prediction.confidence >= 0.98"),
                     ("do: {annotate: triage, overlap: 1}", "do: {annotate: triage, overlap: 2}"))
    (group,) = replay_json(path, history)["rules"]
    assert group["changed"] == 3  # T-2 and T-6 no longer accepted; T-4 still in triage, with overlap 2
    assert group["sentence"] == ("rule `default` would have sent 2 more tasks to triage, and decided 1 task "
                                 "the same way (annotate triage) but with other values")


REVIEW_FIRST = """\
workflow: review-first
labels: {type: choice, choices: [a, b]}
queues:
  rev: {roles: [senior]}
on_create: [{name: straight to review, do: {review: rev}}]
on_review:
  - {name: rejected, when: 'review.verdict == "reject"', do: {return: annotators}}
  - {name: approved, do: accept}
"""


def test_a_return_the_engine_held_replays_as_the_return_the_rule_decided(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    db, wf = tmp_path / "rf.db", tmp_path / "review-first.workflow.yaml"
    wf.write_text(REVIEW_FIRST, encoding="utf-8")
    store, _ = Store.init(str(db))
    engine = Engine(store)
    engine.apply(REVIEW_FIRST, str(wf), actor="lucy")
    engine.add_worker("sen", ["senior"], [], actor="lucy")
    inbox = tmp_path / "in.jsonl"
    inbox.write_text(json.dumps({"id": "R-1", "data": {}, "prediction": {"label": "a", "confidence": 0.5}}) + "\n",
                     encoding="utf-8")
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    review = engine.claim("sen")
    engine.submit(review["assignment"], "sen", verdict="reject", comment="wrong")
    task = engine.store.task(review["task"])
    assert (task["status"], task["reason"]) == ("held", "return: no annotators to return the task to")
    engine.close()

    result = replay_json(wf, db)
    assert (result["decisions"], result["unchanged"], result["changed"]) == (2, 2, 0)
    changed = replay_json(candidate_text(tmp_path, REVIEW_FIRST.replace("{return: annotators}", "{hold: rejected}")), db)
    assert changed["changed"] == 1 and changed["rules"][0]["action"] == "hold"


def candidate_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "other.workflow.yaml"
    path.write_text(text, encoding="utf-8")
    return path
