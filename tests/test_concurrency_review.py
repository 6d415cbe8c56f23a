"""Real processes at once on one SQLite file: annotating, reviewing, returning, adjudicating and ticking.

Processes (``tests/workers/review_loop.py``) started together on one line of
standard input:

- four annotators (they also take back returned work: ``correct`` slots),
- two reviewers (about a third of the tasks rejected on their first review,
  with a comment: ``on_review`` returns them to their annotators, whose
  resubmissions run ``on_quorum`` again and come back for review),
- an expert settling escalated tasks,
- two tickers: one running ``labelyard tick`` again and again, one calling
  ``router.timers.tick`` in a loop (many more ticks, racing claims, submissions
  and the other ticker). ``on_timer`` releases slots held longer than 2 s and
  escalates ``urgent`` tasks still in annotation — racing the annotators for
  some, and surely for the ``locked`` ones nobody may annotate.

Checked afterwards: no slot shared, every claim and submission the processes
report is in the database (and no refused one is), every submission has its
event, every final task exactly one ``final`` event, open-task slot counts
and annotation/assignment pairing hold, every task is finished. Then the same
run with a reviewer killed (``kill -9``) midway: the file passes
``integrity_check``, the invariants hold, what the victim logged is there,
and the slot it held is released by the tick so the others finish the work.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sqlite3
from collections import Counter
from pathlib import Path

from router.engine import Engine
from router.ingest import read_file
from router.store import Store

from process_support import HANG_GUARD_S, WorkerProcess

WORKER_SCRIPT = Path(__file__).parent / "workers" / "review_loop.py"

WORKFLOW = """\
workflow: review-concurrency
description: annotate twice, review everything, return rejections, escalate urgent work on a tick
labels:
  type: choice
  choices: [a, b]
queues:
  q:       {roles: [annotator]}
  locked:  {roles: [annotator], skills: [nobody-has-this]}
  r:       {roles: [reviewer]}
  experts: {roles: [expert]}
on_create:
  - name: locked
    when: task.category == "locked"
    do: {annotate: locked, overlap: 2}
  - name: normal or urgent
    do: {annotate: q, overlap: 2}
on_quorum:
  - name: review everything
    do: {review: r}
on_review:
  - name: rejected
    when: review.verdict == "reject"
    do: {return: annotators}
  - name: approved
    do: accept
on_timer:
  - name: stale assignment
    when: assignment.age > 2s
    do: release
  - name: urgent waits
    when: task.category != "normal" and task.stage == "annotate"
    do: {escalate: experts}
"""
ANNOTATORS = [f"ann{i}" for i in range(4)]
REVIEWERS = ["rev0", "rev1"]
EXPERT = "expert"
N_NORMAL, N_URGENT, N_LOCKED = 150, 30, 4


def make_project(tmp_path: Path) -> Path:
    db = tmp_path / "labelyard.db"
    store, _ = Store.init(str(db))
    engine = Engine(store)
    engine.apply(WORKFLOW, "review-concurrency.workflow.yaml", actor="test")
    for name in ANNOTATORS:
        engine.add_worker(name, ["annotator"], [], actor="test")
    for name in REVIEWERS:
        engine.add_worker(name, ["reviewer"], [], actor="test")
    engine.add_worker(EXPERT, ["expert"], [], actor="test")
    # urgent tasks spread among the normal ones, at the same priority: annotators and tickers race for them
    normal, urgent = iter(range(N_NORMAL)), iter(range(N_URGENT))
    step = N_NORMAL // N_URGENT
    rows = [("urgent", next(urgent)) if i % (step + 1) == step else ("normal", next(normal))
            for i in range(N_NORMAL + N_URGENT)] + [("locked", i) for i in range(N_LOCKED)]
    source = tmp_path / "tasks.jsonl"
    source.write_text("".join(json.dumps({"id": f"{c}-{i}", "category": c, "data": {"n": i}}) + "\n"
                              for c, i in rows))
    report = engine.ingest(read_file(str(source), engine.workflow.labels.choices), str(source))
    assert report.ingested == len(rows)
    engine.close()
    return db


class Proc(WorkerProcess):
    """One review_loop.py process."""

    def __init__(self, tmp_path: Path, db: Path, name: str, role: str, announce: bool = False, mode: str = "cli"):
        self.role = role
        super().__init__(WORKER_SCRIPT, tmp_path, db, name,
                         ["--role", role, "--mode", mode, *(["--announce"] if announce else [])])


def start_all(tmp_path: Path, db: Path, announce: tuple[str, ...] | list[str] = ()) -> list[Proc]:
    roles = ([(n, "annotate") for n in ANNOTATORS] + [(n, "review") for n in REVIEWERS]
             + [(EXPERT, "expert"), ("ticker", "tick"), ("ticker-api", "tick")])
    procs = [Proc(tmp_path, db, name, role, name in announce, "api" if name == "ticker-api" else "cli")
             for name, role in roles]
    try:
        for p in procs:
            p.wait_ready()
        for p in procs:
            p.go()
    except BaseException:
        kill_all(procs)
        raise
    return procs


def kill_all(procs: list[Proc]) -> None:
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def finish_cleanly(procs: list[Proc]) -> dict[str, dict]:
    """Wait for every process; each must exit 0 with an empty stderr (no traceback, no SQLITE_BUSY)."""
    try:
        codes = {p.name: p.wait() for p in procs}
    except BaseException:
        kill_all(procs)
        raise
    problems = {p.name: (codes[p.name], p.stderr()) for p in procs if codes[p.name] != 0 or p.stderr().strip()}
    assert not problems, problems
    return {p.name: p.record() for p in procs}


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def assert_invariants(conn: sqlite3.Connection) -> None:
    """What must hold at any moment, crash or not."""
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # an open task's free slots are what its stage still needs minus the slots held or offered
    bad = conn.execute(
        "SELECT t.id, t.stage, t.needed, t.free_slots, "
        "(SELECT count(*) FROM assignments AS a WHERE a.task_id = t.id AND a.status = 'active') AS active, "
        "(SELECT count(*) FROM assignments AS a WHERE a.task_id = t.id AND a.status = 'offered') AS offered "
        "FROM tasks AS t WHERE t.status = 'open' AND t.free_slots != t.needed - active - offered"
    ).fetchall()
    assert [tuple(r) for r in bad] == []
    assert conn.execute("SELECT count(*) FROM tasks WHERE free_slots < 0 OR needed < 0").fetchone()[0] == 0
    # no annotation without a submitted assignment of the same task, worker, stage and round, and vice versa
    orphans = conn.execute(
        "SELECT n.id FROM annotations AS n LEFT JOIN assignments AS a ON a.id = n.assignment_id "
        "WHERE a.id IS NULL OR a.status != 'submitted' OR a.worker != n.worker OR a.task_id != n.task_id "
        "OR a.stage != n.stage OR a.round != n.round"
    ).fetchall()
    assert orphans == []
    assert conn.execute(
        "SELECT count(*) FROM assignments AS a LEFT JOIN annotations AS n ON n.assignment_id = a.id "
        "WHERE a.status = 'submitted' AND n.id IS NULL").fetchone()[0] == 0
    # every submission has its event, and every event its submission
    submitted_events = Counter(json.loads(d)["assignment"] for (d,) in conn.execute(
        "SELECT detail FROM events WHERE kind = 'submitted'"))
    annotations = Counter(a for (a,) in conn.execute("SELECT assignment_id FROM annotations"))
    assert submitted_events == annotations
    # every slot that was ever worked was claimed, with its event; a claim event per activation
    claimed_events = Counter(json.loads(d)["assignment"] for (d,) in conn.execute(
        "SELECT detail FROM events WHERE kind = 'claimed'"))
    worked = {a for (a,) in conn.execute(
        "SELECT id FROM assignments WHERE status IN ('active', 'submitted', 'released')")}
    assert worked <= set(claimed_events)
    # every release wrote its event
    released = {a for (a,) in conn.execute("SELECT id FROM assignments WHERE status = 'released'")}
    released_events = {json.loads(d)["assignment"] for (d,) in conn.execute(
        "SELECT detail FROM events WHERE kind = 'released'")}
    assert released <= released_events
    # a worker never held two slots of one task in one round, nor reviewed a task they annotated
    assert conn.execute("SELECT count(*) FROM (SELECT 1 FROM assignments GROUP BY task_id, round, worker "
                        "HAVING count(*) > 1)").fetchone()[0] == 0
    assert conn.execute(
        "SELECT count(*) FROM annotations AS r JOIN annotations AS n ON n.task_id = r.task_id "
        "AND n.worker = r.worker WHERE r.stage IN ('review', 'escalated') AND n.stage IN ('annotate', 'correct')"
    ).fetchone()[0] == 0
    # a done task holds no slot, has its label and reached its end in exactly one event
    assert conn.execute(
        "SELECT count(*) FROM tasks AS t WHERE t.status = 'done' AND (t.final_label IS NULL OR EXISTS ("
        "SELECT 1 FROM assignments AS a WHERE a.task_id = t.id AND a.status IN ('active', 'offered')))"
    ).fetchone()[0] == 0
    assert conn.execute(
        "SELECT count(*) FROM tasks AS t WHERE (SELECT count(*) FROM events AS e WHERE e.task_id = t.id "
        "AND e.kind = 'final') != (t.status = 'done')").fetchone()[0] == 0


def assert_records_match(conn: sqlite3.Connection, records: dict[str, dict]) -> None:
    """What each process reports having done is what the database holds."""
    workers = {name: r for name, r in records.items() if r["role"] != "tick"}
    claimed = [a for r in workers.values() for a, _, _ in r["claimed"]]
    assert len(claimed) == len(set(claimed))  # no slot handed out twice
    owners = dict(conn.execute("SELECT id, worker FROM assignments").fetchall())
    assert all(owners[a] == name for name, r in workers.items() for a, _, _ in r["claimed"])
    annotations = {r["assignment_id"]: r for r in conn.execute(
        "SELECT assignment_id, worker, stage, label, verdict FROM annotations")}
    for name, r in workers.items():
        for a, task, kind, label, verdict in r["submitted"]:
            row = annotations[a]
            assert (row["worker"], row["stage"]) == (name, kind)
            assert (None if row["label"] is None else json.loads(row["label"])) == label
            assert row["verdict"] == (verdict or ("approve" if kind == "escalated" else None))
        for a, _, error in r["lost"]:
            assert a not in annotations  # a refused submission left nothing behind
            assert conn.execute("SELECT status FROM assignments WHERE id = ?", (a,)).fetchone()[0] in (
                "released", "expired"), error
        # each claim ended in a submission or a refusal (nobody walked away holding a slot)
        ended = [a for a, *_ in r["submitted"]] + [a for a, *_ in r["lost"]]
        assert sorted(a for a, _, _ in r["claimed"]) == sorted(ended)
    # every submission any process made is reported by exactly one process (none the DB holds is unknown)
    reported = {a for r in workers.values() for a, *_ in r["submitted"]}
    assert reported == set(annotations)


def assert_ticks_acted_once(conn: sqlite3.Connection) -> None:
    """Two tickers at once never both act on a task in one round (``on_timer`` fires once per round)."""
    fired = Counter()
    for task_id, rule, detail in conn.execute(
            "SELECT task_id, rule, detail FROM events WHERE actor = 'labelyard tick' AND kind != 'released'"):
        fired[(task_id, rule, json.loads(detail)["round"])] += 1
    assert [k for k, n in fired.items() if n > 1] == []


def assert_finished(conn: sqlite3.Connection) -> None:
    counts = dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall())
    assert counts == {"done": N_NORMAL + N_URGENT + N_LOCKED}, counts
    locked = conn.execute("SELECT final_by, count(*) FROM tasks WHERE category = 'locked' GROUP BY final_by"
                          ).fetchall()
    assert [tuple(r) for r in locked] == [("expert", N_LOCKED)]
    # every rejection sent its task back to the annotators whose votes counted, who all resubmitted
    returns = conn.execute("SELECT task_id FROM events WHERE kind = 'routed' AND action = 'return'").fetchall()
    assert returns, "no review was rejected"
    for (task_id,) in returns:
        corrected = {w for (w,) in conn.execute(
            "SELECT worker FROM annotations WHERE task_id = ? AND stage = 'correct'", (task_id,))}
        annotated = {w for (w,) in conn.execute(
            "SELECT worker FROM annotations WHERE task_id = ? AND stage = 'annotate'", (task_id,))}
        assert corrected and corrected <= annotated
    # a task finished by a reviewer got the reviewer's label, else the annotators' unanimous one
    for task_id, final_label, final_by in conn.execute(
            "SELECT id, final_label, final_by FROM tasks WHERE final_by = 'reviewer'").fetchall():
        review = conn.execute("SELECT label FROM annotations WHERE task_id = ? AND stage = 'review' "
                              "ORDER BY id DESC LIMIT 1", (task_id,)).fetchone()
        if review[0] is not None:
            assert final_label == review[0]
        else:
            votes = {label for (label,) in conn.execute(
                "SELECT label FROM annotations AS a WHERE task_id = ? AND stage IN ('annotate', 'correct') "
                "AND id = (SELECT max(id) FROM annotations AS b WHERE b.task_id = a.task_id "
                "AND b.worker = a.worker AND b.stage IN ('annotate', 'correct'))", (task_id,))}
            assert votes == {final_label}
    assert conn.execute("SELECT count(*) FROM tasks WHERE final_by NOT IN ('reviewer', 'expert')"
                        ).fetchone()[0] == 0


def test_annotate_review_return_and_tick_at_once(tmp_path):
    db = make_project(tmp_path)
    procs = start_all(tmp_path, db)
    records = finish_cleanly(procs)

    conn = connect(db)
    try:
        assert_invariants(conn)
        assert_records_match(conn, records)
        assert_finished(conn)
        tickers = [records["ticker"], records["ticker-api"]]
        assert records["ticker"]["ticks"] >= 2
        escalations = sum(t["actions"].get("escalate", 0) for t in tickers)
        assert escalations >= N_LOCKED  # the locked tasks can only have been escalated by a tick
        escalated = conn.execute("SELECT count(*) FROM events WHERE kind = 'routed' AND action = 'escalate' "
                                 "AND actor = 'labelyard tick'").fetchone()[0]
        assert escalated == escalations
        assert_ticks_acted_once(conn)
        assert sum(len(r["submitted"]) for n, r in records.items() if n in REVIEWERS) > 0
    finally:
        conn.close()


def test_killing_a_reviewer_midway_keeps_everything_sound(tmp_path):
    db = make_project(tmp_path)
    procs = start_all(tmp_path, db, announce=REVIEWERS)
    reviewers = {p.proc.stdout.fileno(): p for p in procs if p.name in REVIEWERS}
    try:
        # the reviewers announce each claim; kill the first to have claimed its fifth review, right then
        # (SQLite's lock is not fair: one reviewer may get most of the work, so either may be the victim)
        claims = Counter()
        victim = None
        with selectors.DefaultSelector() as selector:
            for fd in reviewers:
                selector.register(fd, selectors.EVENT_READ)
            while victim is None:
                ready = selector.select(timeout=HANG_GUARD_S)
                assert ready, "no reviewer made progress"
                for sel_key, _ in ready:
                    p = reviewers[sel_key.fd]
                    chunk = os.read(sel_key.fd, 4096)  # unbuffered: nothing waits in a Python buffer
                    assert chunk, f"{p.name} ended before the kill: {p.stderr()}"
                    claims[p.name] += chunk.count(b"claimed review\n")
                    if claims[p.name] >= 5 and victim is None:
                        victim = p
                        os.kill(p.proc.pid, signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
    except BaseException:
        kill_all(procs)
        raise
    victim_name = victim.name
    survivors = [p for p in procs if p is not victim]
    records = finish_cleanly(survivors)

    conn = connect(db)
    try:
        assert_invariants(conn)
        assert_finished(conn)
        assert_ticks_acted_once(conn)
        # what the victim logged is in the database; at most one more claim and one more submission
        # (those in flight when the signal came) went through without being logged
        logged = victim.logged()
        logged_claims = {e["assignment"] for e in logged if e["op"] == "claimed"}
        logged_submits = {e["assignment"]: e for e in logged if e["op"] == "submitted"}
        db_claims = {a for (a,) in conn.execute("SELECT id FROM assignments WHERE worker = ?", (victim_name,))}
        db_submits = {a for (a,) in conn.execute(
            "SELECT assignment_id FROM annotations WHERE worker = ?", (victim_name,))}
        assert len(logged_claims) >= 4  # the fifth claim may have been in flight
        assert logged_claims <= db_claims and len(db_claims - logged_claims) <= 1
        assert set(logged_submits) <= db_submits and len(db_submits - set(logged_submits)) <= 1
        # the slot the victim held when it died was released by a tick, and someone else finished the task
        held = db_claims - db_submits
        statuses = {a: s for a, s in conn.execute(
            "SELECT id, status FROM assignments WHERE worker = ?", (victim_name,))}
        assert all(statuses[a] in ("released", "expired") for a in held), statuses
        released_by_tick = {json.loads(d)["assignment"] for (d,) in conn.execute(
            "SELECT detail FROM events WHERE kind = 'released' AND actor = 'labelyard tick'")}
        assert {a for a in held if statuses[a] == "released"} <= released_by_tick
        # the survivors' reports match the database too (the victim's own slots aside)
        others = {name: r for name, r in records.items()}
        claimed = [a for r in others.values() if r["role"] != "tick" for a, _, _ in r["claimed"]]
        assert len(claimed) == len(set(claimed)) and not set(claimed) & db_claims
    finally:
        conn.close()
