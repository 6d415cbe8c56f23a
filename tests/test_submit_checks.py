"""Submit checks a read of the slot before the write lock, and takes it under the lock only if still active."""

from __future__ import annotations

import json

import pytest

from router.engine import Engine
from router.errors import AssignmentError
from router.ingest import read_file
from router.lead import release_assignment
from router.store import Store

WORKFLOW = (
    "workflow: s\nlabels: {type: choice, choices: [a, b]}\n"
    "queues: {q: {roles: [annotator]}}\n"
    "on_create:\n  - do: {annotate: q, overlap: 1}\n"
    "on_quorum:\n  - name: one vote\n    do: accept\n"
)


@pytest.fixture
def engine(tmp_path):
    store, _ = Store.init(str(tmp_path / "s.db"))
    eng = Engine(store)
    eng.apply(WORKFLOW, "s.workflow.yaml")
    for w in ("w1", "w2"):
        eng.add_worker(w, ["annotator"], [])
    rows = tmp_path / "t.jsonl"
    rows.write_text("".join(json.dumps({"id": f"T{i}"}) + "\n" for i in range(3)), encoding="utf-8")
    eng.ingest(read_file(str(rows), ("a", "b")), str(rows))
    yield eng
    eng.close()


def _counts(eng: Engine) -> tuple[int, int]:
    annotations = eng.store.one("SELECT count(*) FROM annotations")[0]
    submitted = eng.store.one("SELECT count(*) FROM events WHERE kind = 'submitted'")[0]
    return annotations, submitted


def test_mistakes_are_refused_before_anything_is_written(engine):
    slot = engine.claim("w1")
    with pytest.raises(AssignmentError, match="belongs to w1, not w2"):
        engine.submit(slot["assignment"], "w2", label="a")
    with pytest.raises(AssignmentError, match="not in|choices|one of"):
        engine.submit(slot["assignment"], "w1", label="zebra")
    with pytest.raises(AssignmentError, match="no assignment 999"):
        engine.submit(999, "w1", label="a")
    assert _counts(engine) == (0, 0)
    assert engine.store.assignment(slot["assignment"])["status"] == "active"
    done = engine.submit(slot["assignment"], "w1", label="a")
    assert done["decision"]["status"] == "done"
    assert _counts(engine) == (1, 1)


def test_a_slot_released_between_the_check_and_the_lock_is_not_taken(engine, monkeypatch):
    slot = engine.claim("w1")
    stale = engine.store.assignment(slot["assignment"])  # what the check reads: still active
    reads = iter([stale])
    real = engine.store.assignment

    def assignment(assignment_id):
        return next(reads, None) or real(assignment_id)

    # a lead releases the slot after the check has read it, before the submit takes the lock
    with engine.store.transaction():
        release_assignment(engine, real(slot["assignment"]), 0.0, "lena")
    monkeypatch.setattr(engine.store, "assignment", assignment)
    with pytest.raises(AssignmentError, match="is released, not active"):
        engine.submit(slot["assignment"], "w1", label="a")
    assert _counts(engine) == (0, 0)
    task = engine.store.task(slot["task"])
    assert task["status"] == "open" and task["free_slots"] == 1
