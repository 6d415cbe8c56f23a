"""A claim past many tasks its worker may not take: the long walk is done without the write lock.

A fast annotator on an `overlap: 2` queue finds its head full of tasks they already voted
on, waiting for someone else's vote; the claim steps over each. Under the lock it walks only
so far (``Engine.claim_walk_steps``); beyond that it walks again without the lock and takes
what it found, if that is still free. These tests shrink the budget so a few dozen tasks
are a long walk, and check that the claim still takes exactly the slot it would have taken.
"""

from __future__ import annotations

import json

import pytest

from router.engine import Engine
from router.errors import NothingToDo
from router.ingest import read_file
from router.store import ClaimWalkTooLong, Store

WORKFLOW = """\
workflow: w
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}, other: {roles: [annotator]}}
on_create:
  - {when: 'task.category == "other"', do: {annotate: other, priority: task.data.p}}
  - do: {annotate: q, overlap: 2, priority: task.data.p}
on_quorum: [{do: accept}]
"""


@pytest.fixture
def engine(tmp_path):
    store, _ = Store.init(str(tmp_path / "w.db"))
    engine = Engine(store)
    engine.apply(WORKFLOW, "w.workflow.yaml")
    for name in ("alice", "bob"):
        engine.add_worker(name, ["annotator"], [])
    rows = tmp_path / "t.jsonl"
    rows.write_text("".join(json.dumps({"id": f"T{i:02}", "data": {"p": 0}}) + "\n" for i in range(60))
                    + json.dumps({"id": "O1", "category": "other", "data": {"p": 0}}) + "\n", encoding="utf-8")
    engine.ingest(read_file(str(rows), ("a", "b")), str(rows))
    yield engine
    engine.close()


def vote(engine: Engine, worker: str, times: int) -> list[str]:
    taken = []
    for _ in range(times):
        slot = engine.claim(worker, "q")
        engine.submit(slot["assignment"], worker, label="a")
        taken.append(slot["external_id"])
    return taken


def assignments(engine: Engine) -> int:
    return engine.store.one("SELECT count(*) FROM assignments")[0]


def test_a_walk_past_its_budget_is_rolled_back_with_nothing_written(engine):
    vote(engine, "alice", 40)  # T00..T39 wait for a second vote, alice's own
    before = assignments(engine)
    with pytest.raises(ClaimWalkTooLong), engine.store.transaction():
        engine.store.claim_slot("alice", ["q"], 0.0, steps=50)
    assert assignments(engine) == before
    assert engine.store.one("SELECT sum(free_slots) FROM tasks WHERE queue = 'q'")[0] == 40 + 20 * 2


def test_a_claim_whose_walk_is_too_long_under_the_lock_takes_the_slot_it_would_have_taken(engine):
    assert vote(engine, "alice", 40) == [f"T{i:02}" for i in range(40)]
    engine.claim_walk_steps = 50  # the walk over T00..T39 no longer fits under the lock
    assert engine.claim("alice", "q")["external_id"] == "T40"  # the same as an unbounded walk
    claimed = [e for e in engine.store.query("SELECT * FROM events WHERE kind = 'claimed' AND actor = 'alice'")]
    assert len(claimed) == 41  # one claim, one event: the rolled-back attempt left nothing
    assert engine.claim("bob", "q")["external_id"] == "T00"  # bob, who may take the head, is not held up


def test_a_higher_priority_task_in_another_queue_still_comes_first(engine):
    vote(engine, "alice", 40)
    engine.store.conn.execute("UPDATE tasks SET priority = 5 WHERE external_id = 'O1'")
    engine.claim_walk_steps = 50
    assert engine.claim("alice")["external_id"] == "O1"
    assert engine.claim("alice")["external_id"] == "T40"


def test_nothing_left_to_take_is_no_work_after_the_walk_without_the_lock(engine):
    vote(engine, "alice", 60)
    engine.claim_walk_steps = 50
    with pytest.raises(NothingToDo, match="no work for alice in `q`"):
        engine.claim("alice", "q")
    assert engine.claim("bob", "q")["external_id"] == "T00"


def test_a_found_task_taken_meanwhile_is_not_taken_twice(engine, monkeypatch):
    """The walk without the lock found T40; before the claim's turn someone took its last slot
    (simulated: the candidate read names a task alice already voted on, which she may not take)."""
    vote(engine, "alice", 40)
    engine.claim_walk_steps = 50
    monkeypatch.setattr(engine.store, "claim_candidate", lambda worker, queues: 1)  # T00: alice's own vote
    assert engine.store.claim_task_slot(1, "alice", ["q"], 0.0) is None
    # the claim falls back to the walk again, then to the unbounded walk of the last attempt
    assert engine.claim("alice", "q")["external_id"] == "T40"
    assert engine.store.one("SELECT count(*) FROM assignments WHERE worker = 'alice' AND task_id = 1")[0] == 1
