"""``labelyard explain TASK``: every decision of a task's life, with the values its rules saw.

A real database is built through the engine (with ``LABELYARD_NOW`` fixed), then
``labelyard explain`` runs as a real subprocess.
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
from router.store import Store

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "workflows" / "ticket-triage.workflow.yaml"
NOW = "2025-01-06T09:00:00Z"
LATER = "2025-01-06T10:30:00Z"

TICKETS = [
    {"id": "T-1", "data": {"subject": "Refund please", "customer": "c-1"}, "prediction": {"label": "bug", "confidence": 0.62}},
    {"id": "T-2", "data": {"subject": "Crash on login", "customer": "c-2"}, "prediction": {"label": "bug", "confidence": 0.97}},
    {"id": "T-3", "data": {"subject": "Dark mode", "customer": "c-3"}, "prediction": {"label": "feature", "confidence": 0.99}},
    {"id": "T-4", "data": {"subject": "Invoice VAT", "customer": "c-4"}, "prediction": {"label": "billing", "confidence": 0.8}},
    {"id": "T-5", "data": {"subject": "", "customer": "c-5"}, "prediction": {"label": "spam", "confidence": 0.5}},
]


def build_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """T-1: uncertain → 3 votes (bug, bug, feature) → two of three → senior approves at LATER.
    T-2, T-3: confident model. T-4: default → one vote → unanimous. T-5: empty ticket rejected."""
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    db = tmp_path / "history.db"
    store, _ = Store.init(str(db))
    engine = Engine(store)
    engine.apply(WORKFLOW.read_text(encoding="utf-8"), str(WORKFLOW), actor="lucy")
    for name, roles in (("ann1", ["annotator"]), ("ann2", ["annotator"]), ("ann3", ["annotator"]), ("sen", ["senior"])):
        engine.add_worker(name, roles, [], actor="lucy")
    inbox = tmp_path / "tickets.jsonl"
    inbox.write_text("".join(json.dumps(t) + "\n" for t in TICKETS), encoding="utf-8")
    report = engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    assert report.ingested == 5
    for worker, label in (("ann1", "bug"), ("ann2", "bug"), ("ann3", "feature")):
        view = engine.claim(worker)
        assert view["external_id"] == "T-1"  # the most uncertain ticket comes first
        engine.submit(view["assignment"], worker, label=label)
    monkeypatch.setenv("LABELYARD_NOW", LATER)
    review = engine.claim("sen")
    assert (review["external_id"], review["kind"]) == ("T-1", "review")
    engine.submit(review["assignment"], "sen", verdict="approve", comment="fine")
    view = engine.claim("ann1")
    assert view["external_id"] == "T-4"
    engine.submit(view["assignment"], "ann1", label="billing")
    engine.close()
    return db


def labelyard(*args: str, db: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABELYARD_DB": str(db), "LABELYARD_NOW": LATER}
    return subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


@pytest.fixture()
def history(tmp_path, monkeypatch) -> Path:
    return build_history(tmp_path, monkeypatch)


def test_explain_shows_each_decision_with_the_values_its_rule_saw(history):
    proc = labelyard("explain", "T-1", db=history)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0] == 'task 1 (T-1): done: final label "bug" by reviewer (rule `approved`)'
    assert "created under workflow ticket-triage v1" in out
    # on_create: the rule, its condition, the value it saw, the action and its values
    assert "on_create: rule `uncertain` → annotate triage (overlap 3, priority 0.38)" in out
    assert "when prediction.confidence < 0.7" in out
    assert "prediction.confidence = 0.62 < 0.7 → true" in out
    # on_quorum: both comparisons with their values, and the votes
    assert "on_quorum: rule `two of three` → review senior" in out
    assert "votes.count = 3 == 3 → true" in out
    assert "votes.top_count = 2 == 2 → true" in out
    assert 'votes: 3, top "bug", agreement 0.6667' in out
    # who acted, and when
    assert "2025-01-06T09:00:00+00:00  submitted by ann3: label \"feature\"" in out
    assert "2025-01-06T10:30:00+00:00  final by sen" in out
    assert "on_review: rule `approved` → accept" in out
    assert "(no condition: always matches)" in out
    # decisions come in the order they happened
    assert out.index("on_create: rule") < out.index("on_quorum: rule") < out.index("on_review: rule")


def test_explain_json_lists_every_event_and_spells_out_decisions(history):
    proc = labelyard("explain", "1", "--json", db=history)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["task"]["external_id"] == "T-1"
    assert data["task"]["final_by"] == "reviewer"
    assert data["decisions"] == 3
    kinds = [e["kind"] for e in data["events"]]
    assert kinds == ["created"] + ["claimed", "submitted"] * 3 + ["routed", "claimed", "submitted", "final"]
    decisions = [e for e in data["events"] if "decision" in e]
    assert [(d["decision"]["section"], d["decision"]["rule"], d["decision"]["action"]) for d in decisions] == [
        ("on_create", "uncertain", "annotate"), ("on_quorum", "two of three", "review"),
        ("on_review", "approved", "accept")]
    created = decisions[0]
    assert created["actor"] == "labelyard"
    assert created["at"] == "2025-01-06T09:00:00+00:00"
    assert created["decision"]["target"] == "triage"
    assert created["decision"]["values"]["overlap"] == 3
    assert created["decision"]["values"]["priority"] == pytest.approx(0.38)
    assert created["decision"]["trace"] == ["prediction.confidence = 0.62 < 0.7 → true"]
    assert decisions[1]["actor"] == "ann3"
    assert decisions[1]["decision"]["votes"] == {"count": 3, "top": "bug", "agreement": pytest.approx(2 / 3)}
    assert decisions[2]["actor"] == "sen"
    submitted = [e for e in data["events"] if e["kind"] == "submitted"]
    assert [e["actor"] for e in submitted] == ["ann1", "ann2", "ann3", "sen"]


def test_explain_names_a_bare_condition_with_its_value(history):
    proc = labelyard("explain", "T-4", db=history)
    assert proc.returncode == 0, proc.stderr
    assert "on_create: rule `default` → annotate triage (overlap 1)" in proc.stdout
    assert "on_quorum: rule `unanimous` → accept" in proc.stdout
    assert "votes.unanimous = true → true" in proc.stdout


def test_explain_rejected_and_accepted_at_creation(history):
    rejected = json.loads(labelyard("explain", "T-5", "--json", db=history).stdout)
    assert rejected["task"]["status"] == "invalid"
    assert rejected["summary"].startswith("invalid: empty ticket, since rule `empty ticket` in on_create")
    (event,) = rejected["events"]
    assert event["decision"]["action"] == "reject"
    assert event["decision"]["trace"] == ['len(task.data.subject) = 0 == 0 → true']
    accepted = labelyard("explain", "T-2", db=history).stdout
    assert 'done: final label "bug" by model (rule `confident model`)' in accepted
    assert "prediction.confidence = 0.97 >= 0.95 → true" in accepted


def test_explain_an_open_task_says_where_it_waits(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    db = tmp_path / "open.db"
    store, _ = Store.init(str(db))
    engine = Engine(store)
    engine.apply(WORKFLOW.read_text(encoding="utf-8"), str(WORKFLOW), actor="lucy")
    inbox = tmp_path / "one.jsonl"
    inbox.write_text(json.dumps(TICKETS[0]) + "\n", encoding="utf-8")
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    engine.close()
    proc = labelyard("explain", "T-1", db=db)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "task 1 (T-1): open: waiting in `triage` for annotate (3 more submissions), "
        "since rule `uncertain` in on_create (2025-01-06T09:00:00+00:00)")


def test_explain_unknown_task_is_a_user_error_and_changes_nothing(history):
    before = history.read_bytes()
    proc = labelyard("explain", "T-404", db=history)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "labelyard: no task `T-404` (by id or external id)"
    assert "Traceback" not in proc.stderr
    assert labelyard("explain", "T-1", db=history).returncode == 0
    assert history.read_bytes() == before


def test_on_create_is_traced_again_with_the_version_that_routed_the_task(history, tmp_path):
    store = Store.open(str(history))
    stored = json.loads(store.one("SELECT detail FROM events WHERE task_id = 1 AND kind = 'created'")[0])
    assert "trace" not in stored and "condition" not in stored  # ingest does not render it
    store.close()
    # a new version changes the rule the ticket went by; the ticket keeps the version that routed it
    changed = WORKFLOW.read_text(encoding="utf-8").replace("prediction.confidence < 0.7", "prediction.confidence < 0.65")
    assert changed != WORKFLOW.read_text(encoding="utf-8")
    v2 = tmp_path / "v2.workflow.yaml"
    v2.write_text(changed, encoding="utf-8")
    # a database made without `init` has no lead: its first one registers, then applies (a lead's action)
    assert labelyard("workers", "add", "lucy", "--role", "lead", "--as", "lucy", db=history).returncode == 0
    assert labelyard("apply", str(v2), "--as", "lucy", db=history).returncode == 0
    proc = labelyard("explain", "T-1", "--json", db=history)
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout)["events"][0]["decision"]
    assert created["condition"] == "prediction.confidence < 0.7"
    assert created["trace"] == ["prediction.confidence = 0.62 < 0.7 → true"]
    assert created["traced_again"] is True
    text = labelyard("explain", "T-1", db=history).stdout
    assert "when prediction.confidence < 0.7 (traced again from the task's input)" in text
