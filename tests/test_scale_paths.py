"""Paths whose cost must not grow with the project (found on 1M-task projects).

Measured here without clocks: SQLite's virtual-machine steps (a progress handler
counts them, deterministically), the SQL a call runs, and the write transactions
it opens.

- The open-task walk behind `tick` and every `--where` lead action paged with
  ``(queue, id) > (?, ?)``, which SQLite narrows by ``queue`` alone: each page
  re-read its queue from the first task, so a 1M-task tick took 98 s.
- `status` counted the tasks table (2 s at 1M) although kept counters hold the
  numbers; `apply` counted it twice under the write lock.
- A tick whose rules had already moved every task took the write lock per page
  to find that out.
"""

from __future__ import annotations

import random

from lead_support import Project, engine_at
from router.quality import krippendorff_alpha

TIMER = """\
workflow: scale
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
on_create: [{name: start, do: {annotate: triage}}]
on_timer:
  - {name: bump, when: task.age > 1h, do: {annotate: triage, priority: 5}}
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


def test_a_page_of_the_open_task_walk_costs_the_same_at_the_end_of_a_queue(tmp_path, monkeypatch):
    p = Project(tmp_path, workflow=TIMER)
    p.ingest([{"id": f"T{i}"} for i in range(4000)])
    engine = engine_at(p.db, monkeypatch, 0)
    store = engine.store
    ids = [t["id"] for t in store.tasks_after("open", "", 0, 5000)]
    assert len(ids) == 4000
    first = steps(store.conn, lambda: store.tasks_after("open", "triage", ids[0], 50))
    last = steps(store.conn, lambda: store.tasks_after("open", "triage", ids[-60], 50))
    assert [t["id"] for t in store.tasks_after("open", "triage", ids[-60], 50)] == ids[-59:-9]
    assert last <= 2 * first + 2, (first, last)  # the old walk skipped ~3,900 index entries first
    engine.close()


def test_status_and_queue_counts_read_the_kept_counters_not_the_tasks(tmp_path, monkeypatch):
    p = Project(tmp_path, workflow=TIMER)
    p.ingest([{"id": f"T{i}"} for i in range(30)])
    engine = engine_at(p.db, monkeypatch, 0)
    store = engine.store
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    counts = (store.status_counts(), store.queue_counts(), store.open_count_by_queue())
    store.conn.set_trace_callback(None)
    assert counts[0] == {"open": 30} and counts[1]["triage"]["open"] == 30 and counts[2] == {"triage": 30}
    scans = [s for s in statements if " FROM tasks" in s]
    assert scans == [], scans
    engine.close()


def test_a_tick_whose_rules_already_acted_takes_no_write_lock(tmp_path, monkeypatch):
    p = Project(tmp_path, workflow=TIMER)
    p.ingest([{"id": f"T{i}"} for i in range(12)])
    first = p.json("tick", hours=2)
    assert first["actions"] == {"priority": 12}
    engine = engine_at(p.db, monkeypatch, 3)
    statements: list[str] = []
    engine.store.conn.set_trace_callback(statements.append)
    from router.timers import tick

    report = tick(engine, page=5)
    engine.store.conn.set_trace_callback(None)
    assert (report.already, report.actions) == (12, {})
    assert not [s for s in statements if s.startswith("BEGIN")], statements[:5]
    engine.close()


REVIEWED = """\
workflow: scale
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create: [{name: start, do: {annotate: triage, overlap: 2}}]
on_quorum: [{name: check, do: {review: senior}}]
"""


def test_apply_reads_only_the_tasks_waiting_for_review_to_warn_of_returns_to_a_dropped_queue(tmp_path, monkeypatch):
    """`apply` counts the reviews whose `return` would need a queue it drops: the queues where
    reviews wait, each task's latest vote by index, never the tasks waiting for annotators."""
    p = Project(tmp_path, workflow=REVIEWED)
    p.ingest([{"id": f"R{i}"} for i in range(3)])
    engine = engine_at(p.db, monkeypatch, 0)
    for name in ("a1", "a2"):
        engine.add_worker(name, ["annotator"], actor="lead")
    for _ in range(3):
        for name in ("a1", "a2"):
            slot = engine.claim(name)
            engine.submit(slot["assignment"], name, label="cat")
    store = engine.store
    assert store.reviews_with_votes_in(["triage"]) == {"triage": 3}
    few = steps(store.conn, lambda: store.reviews_with_votes_in(["triage"]))
    p.ingest([{"id": f"T{i}"} for i in range(4000)], name="more.jsonl")  # open in triage, unvoted
    assert store.reviews_with_votes_in(["triage"]) == {"triage": 3}
    many = steps(store.conn, lambda: store.reviews_with_votes_in(["triage"]))
    assert many <= 2 * few + 2, (few, many)  # reading the 4,000 would take hundreds
    engine.close()


def test_alpha_over_vote_positions_equals_alpha_over_workers():
    """``labelyard agreement`` builds alpha's table by vote position (most votes x tasks), not by
    worker (every worker x tasks, 94 MB for 38k tasks): the statistic pairs values within a task."""
    rng = random.Random(7)
    for _ in range(300):
        workers = [f"w{i}" for i in range(8)]
        tasks = [{w: rng.choice("abc") for w in rng.sample(workers, rng.randint(2, 5))}
                 for _ in range(rng.randint(2, 12))]
        by_worker = [[t.get(w) for t in tasks] for w in workers]
        depth = max(len(t) for t in tasks)
        by_position = [[list(t.values())[i] if i < len(t) else None for t in tasks] for i in range(depth)]
        try:
            expected = krippendorff_alpha(by_worker, level="nominal")
        except Exception as exc:  # noqa: BLE001 - the same refusal either way
            expected = type(exc)
        try:
            got = krippendorff_alpha(by_position, level="nominal")
        except Exception as exc:  # noqa: BLE001
            got = type(exc)
        assert got == expected or abs(got - expected) < 1e-12
