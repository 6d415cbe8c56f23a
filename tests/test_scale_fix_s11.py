"""Scale fixes of the eleventh session: paths whose cost must not grow with the project's history.

Measured without clocks: SQLite's virtual-machine steps, counted by a progress
handler (deterministic), the SQL a call runs, and what a call holds in memory.
"""

from __future__ import annotations

import sqlite3

from lead_support import Project, engine_at

SPARSE = """\
workflow: scale
labels: {type: choice, choices: [a, b, c]}
queues:
  main: {roles: [annotator]}
  side: {roles: [annotator], skills: [side]}
on_create:
  - {name: side, when: 'task.category == "side"', do: {annotate: side, overlap: 2}}
  - {name: main, do: {annotate: main, overlap: 1}}
on_quorum:
  - {name: collapse, when: queue.kappa != null and queue.kappa < -0.9, do: {hold: "agreement collapsed"}}
  - {name: done, do: accept}
"""


def steps(conn, call) -> int:
    """How many SQLite VM steps (in units of 100) ``call()`` takes on ``conn``."""
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0

    conn.set_progress_handler(count, 100)
    try:
        call()
    finally:
        conn.set_progress_handler(None, 0)
    return counted[0]


def _claim_submit(engine, worker: str, queue: str, n: int) -> None:
    for i in range(n):
        slot = engine.claim(worker, queue=queue)
        engine.submit(slot["assignment"], worker, label="abc"[i % 3])


def _quorum_steps(engine, queue: str) -> int:
    """The VM steps of the submission that completes a task's quorum in ``queue`` (its rules read `queue.kappa`)."""
    first = engine.claim("s1", queue=queue)
    engine.submit(first["assignment"], "s1", label="a")
    second = engine.claim("s2", queue=queue)
    assert second["task"] == first["task"]
    taken = steps(engine.store.conn, lambda: engine.submit(second["assignment"], "s2", label="a"))
    assert engine.store.task(first["task"])["status"] == "done"
    return taken


def test_a_sparse_queues_agreement_window_does_not_grow_with_the_other_queues_history(tmp_path, monkeypatch):
    """`queue.kappa` (and Dawid-Skene's history) read the queue's latest votes inside the submission's
    write transaction: they walked every annotation of the project to find a sparse queue's few."""
    p = Project(tmp_path, workflow=SPARSE)
    p.ingest([{"id": f"S{i}", "category": "side"} for i in range(12)]
             + [{"id": f"M{i}", "category": "main"} for i in range(1300)])
    engine = engine_at(p.db, monkeypatch, 0)
    engine.add_worker("w1", ["annotator"], actor="lead")
    for name in ("s1", "s2"):
        engine.add_worker(name, ["annotator"], skills=["side"], actor="lead")
    store = engine.store
    _claim_submit(engine, "s1", "side", 4)
    _claim_submit(engine, "s2", "side", 4)
    _claim_submit(engine, "w1", "main", 100)
    small = steps(store.conn, lambda: store.recent_votes("side", 2000))
    submit_small = _quorum_steps(engine, "side")

    _claim_submit(engine, "w1", "main", 1200)  # twelve times the history, none of it in `side`
    votes = store.recent_votes("side", 2000)
    assert len(votes) == 10 and {worker for _task, worker, _label in votes} == {"s1", "s2"}
    large = steps(store.conn, lambda: store.recent_votes("side", 2000))
    submit_large = _quorum_steps(engine, "side")
    assert large <= small + 2, (small, large)  # the old query read every annotation: 10 and 95
    # ~1.5 more: the window holds two more votes of `side` (13 and 16 here; 21 and 107 before)
    assert submit_large <= submit_small + 5, (submit_small, submit_large)
    engine.close()


def test_the_migration_gives_an_existing_databases_votes_their_queue(tmp_path, monkeypatch):
    """A database made before ``annotations.queue`` (schema 11) gets each vote's slot queue from `init`."""
    p = Project(tmp_path, workflow=SPARSE)
    p.ingest([{"id": "S0", "category": "side"}, {"id": "M0", "category": "main"}])
    engine = engine_at(p.db, monkeypatch, 0)
    engine.add_worker("w1", ["annotator"], skills=["side"], actor="lead")
    _claim_submit(engine, "w1", "main", 1)
    _claim_submit(engine, "w1", "side", 1)
    before = engine.store.recent_votes("side", 10)
    engine.close()
    conn = sqlite3.connect(p.db, isolation_level=None)
    for statement in ("DROP INDEX annotations_queue_votes", "ALTER TABLE annotations DROP COLUMN queue",
                      "UPDATE schema_version SET version = 11",
                      "DELETE FROM _sqlite_migrations WHERE name = 'm013_vote_queue_index'"):
        conn.execute(statement)
    conn.close()
    assert "run `labelyard init` to migrate" in p.run("status").stderr
    assert p.json("init")["migrations_applied"] == ["m013_vote_queue_index"]
    conn = sqlite3.connect(p.db)
    assert conn.execute("SELECT worker, queue FROM annotations ORDER BY id").fetchall() == [("w1", "main"), ("w1", "side")]
    conn.close()
    engine = engine_at(p.db, monkeypatch, 1)
    assert engine.store.recent_votes("side", 10) == before != []
    engine.close()
