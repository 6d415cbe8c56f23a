"""``labelyard replay``: sentences count tasks (and say decisions), samples list distinct tasks.

The history is built through the engine on a real SQLite file; ``labelyard
replay`` runs as a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from router.engine import Engine
from router.ingest import read_file
from router.replay import sentence
from router.store import Store

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "workflows" / "ticket-triage.workflow.yaml"
NOW = "2025-01-06T09:00:00Z"
TWO_OF_THREE = "votes.count == 3 and votes.top_count == 2"


def ticket(tid: str, confidence: float, **data: object) -> dict:
    return {"id": tid, "data": {"subject": "s", "customer": "c", **data},
            "prediction": {"label": "bug", "confidence": confidence}}


def build(tmp_path: Path, tickets: list[dict], rounds: int = 0) -> Path:
    """Apply ticket-triage, ingest ``tickets``; the first goes ``rounds`` times through two of three votes
    and a senior's review (rejected, so it comes back, then approved)."""
    db = tmp_path / "history.db"
    store, _ = Store.init(str(db))
    engine = Engine(store)
    engine.apply(WORKFLOW.read_text(encoding="utf-8"), str(WORKFLOW), actor="lucy")
    for name, roles in (("a1", ["annotator"]), ("a2", ["annotator"]), ("a3", ["annotator"]), ("sen", ["senior"])):
        engine.add_worker(name, roles, [], actor="lucy")
    inbox = tmp_path / "tickets.jsonl"
    inbox.write_text("".join(json.dumps(t) + "\n" for t in tickets), encoding="utf-8")
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    for n in range(rounds):
        for worker, label in (("a1", "bug"), ("a2", "bug"), ("a3", "feature")):
            view = engine.claim(worker)
            assert view["external_id"] == tickets[0]["id"]
            engine.submit(view["assignment"], worker, label=label)
        review = engine.claim("sen")
        engine.submit(review["assignment"], "sen", verdict="approve" if n == rounds - 1 else "reject", comment="no")
    engine.close()
    return db


def labelyard(*args: str, db: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABELYARD_DB": str(db), "LABELYARD_NOW": NOW}
    proc = subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def candidate(tmp_path: Path, old: str, new: str) -> Path:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "candidate.workflow.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.fixture()
def returned_twice(tmp_path, monkeypatch) -> Path:
    """T-1 reaches on_quorum twice (two of three both times); T-2 once is not needed."""
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    return build(tmp_path, [ticket("T-1", 0.6)], rounds=2)


def test_a_task_decided_twice_counts_once_and_is_sampled_once(returned_twice, tmp_path):
    path = candidate(tmp_path, TWO_OF_THREE, "votes.count == 99")
    proc = labelyard("replay", str(path), "--json", db=returned_twice, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (group,) = json.loads(proc.stdout)["rules"]
    assert (group["changed"], group["task_count"], group["after_change"]) == (2, 1, 1)
    assert group["sentence"] == "rule `no majority` would have escalated 1 more task to experts (2 decisions)"
    assert group["tasks"] == ["T-1"]
    assert group["instead_of"] == [{"rule": "two of three", "action": "review", "target": "senior", "count": 2}]

    text = labelyard("replay", str(path), db=returned_twice, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "on_quorum: rule `no majority` would have escalated 1 more task to experts (2 decisions)" in text.stdout
    assert "    instead of: 2 by `two of three` → review senior\n" in text.stdout
    assert "    (1 of these 2 decisions follows an earlier change on the same task)" in text.stdout
    assert text.stdout.splitlines()[-1] == "    e.g. T-1"


def test_sample_zero_prints_no_example_and_a_negative_sample_is_a_usage_error(returned_twice, tmp_path):
    path = candidate(tmp_path, TWO_OF_THREE, "votes.count == 99")
    none = labelyard("replay", str(path), "--sample", "0", db=returned_twice, cwd=tmp_path)
    assert none.returncode == 0, none.stderr
    assert "would have escalated" in none.stdout
    assert "e.g." not in none.stdout
    assert json.loads(labelyard("replay", str(path), "--json", "--sample", "0", db=returned_twice,
                                cwd=tmp_path).stdout)["rules"][0]["tasks"] == []
    negative = labelyard("replay", str(path), "--sample", "-1", db=returned_twice, cwd=tmp_path)
    assert negative.returncode == 2
    assert negative.stdout == ""
    assert "Invalid value for '--sample': -1 is not in the range x>=0" in negative.stderr


def test_instead_of_says_how_many_more_outcomes_it_leaves_out(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    tickets = [ticket("T-1", 0.6), ticket("T-2", 0.99), ticket("T-3", 0.8), ticket("T-4", 0.8, subject=""),
               ticket("T-5", 0.8, customer=None), {**ticket("T-6", 0.8), "category": "legal"},
               ticket("T-7", 0.99)]
    db = build(tmp_path, tickets)
    path = candidate(tmp_path, "on_create:                # a new task; first matching rule wins\n",
                     "on_create:\n  - name: everything\n    do: {escalate: experts}\n")
    proc = labelyard("replay", str(path), db=db, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "on_create: rule `everything` would have escalated 7 more tasks to experts\n" in proc.stdout
    # six outcomes replaced: accept twice, then one each; four are shown
    instead = next(line for line in proc.stdout.splitlines() if "instead of:" in line)
    assert instead.startswith("    instead of: 2 by `confident model` → accept; ")
    assert instead.count(" by `") == 4
    assert instead.endswith("; and 2 more (2 decisions)")
    data = json.loads(labelyard("replay", str(path), "--json", db=db, cwd=tmp_path).stdout)
    assert len(data["rules"][0]["instead_of"]) == 6


@pytest.mark.parametrize(("args", "expected"), [
    (("annotate", "triage", 2, 0, 2), "rule `r` would have sent 2 more tasks to triage"),
    (("annotate", "triage", 2, 0, 3), "rule `r` would have sent 2 more tasks to triage (3 decisions)"),
    (("annotate", "triage", 0, 1, 2), "rule `r` would have decided 1 task the same way (annotate triage) "
                                      "but with other values (2 decisions)"),
    (("release", None, 1, 0, 3), "rule `r` would have released 3 more assignments (of 1 task)"),
    (("release", None, 2, 0, 2), "rule `r` would have released 2 more assignments"),
])
def test_the_sentence_counts_tasks_and_says_decisions_when_they_differ(args, expected):
    action, target, n, values_only, decisions = args
    assert sentence("r", action, target, n, values_only, decisions=decisions) == expected
