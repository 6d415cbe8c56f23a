"""The audited floor: Labelyard's claim+submit as the fewest raw SQL statements its contract needs.

Not Labelyard and not a peer: a reference point. The worker runs on a copy of
Labelyard's own claim fixture (same schema, indexes and counter triggers) and
does, in plain ``sqlite3`` with SQLite's busy handler and no Python engine,
what one audited claim and one audited submit must write:

  claim:   BEGIN IMMEDIATE; UPDATE tasks (take a free slot) … RETURNING;
           INSERT assignment; INSERT its `claimed` event; COMMIT
  submit:  BEGIN IMMEDIATE; UPDATE assignment (submitted) … RETURNING;
           INSERT annotation; UPDATE worker counter; INSERT `submitted` event;
           UPDATE task (final); INSERT `final` event; COMMIT

Its ratio to the raw peer loop (which writes one task update and one
annotation, with no audit) is the best any implementation of the audited
contract on this schema could reach; Labelyard's own ratio to the floor
says how much its engine (rules, checks, views) costs on top.
"""

from __future__ import annotations

import json
import sqlite3
import time
from array import array

from . import fixtures

CLAIM_SQL = (
    "UPDATE tasks SET free_slots = free_slots - 1, updated_at = ? WHERE id = ("
    "SELECT t.id FROM tasks AS t INDEXED BY tasks_claimable WHERE t.queue = 'work' AND t.status = 'open' "
    "AND t.free_slots > 0 AND NOT EXISTS (SELECT 1 FROM assignments AS a WHERE a.task_id = t.id AND a.worker = ?) "
    "ORDER BY t.priority DESC, t.id LIMIT 1) RETURNING id, stage, queue, round"
)
ASSIGN_SQL = ("INSERT INTO assignments (task_id, worker, stage, queue, round, status, created_at, updated_at) "
              "VALUES (?, ?, ?, ?, ?, 'active', ?, ?)")
EVENT_SQL = "INSERT INTO events (task_id, kind, rule, action, actor, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
TAKE_SQL = ("UPDATE assignments SET status = 'submitted', updated_at = ? WHERE id = ? AND worker = ? "
            "AND status = 'active' RETURNING task_id, stage, round")
ANNOTATION_SQL = ("INSERT INTO annotations (assignment_id, task_id, worker, stage, round, label, created_at) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?)")
COUNTER_SQL = "UPDATE workers SET submitted = submitted + 1 WHERE id = ?"
FINAL_SQL = ("UPDATE tasks SET status = 'done', stage = NULL, queue = NULL, needed = 0, free_slots = 0, "
             "final_label = ?, final_by = 'consensus', final_rule = 'single vote', final_at = ?, updated_at = ? "
             "WHERE id = ?")


def _claim(conn: sqlite3.Connection, name: str) -> tuple[int, int] | None:
    """One audited claim: ``(task id, assignment id)``, or ``None`` when no slot is left."""
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    row = conn.execute(CLAIM_SQL, (now, name)).fetchone()
    if row is None:
        conn.execute("ROLLBACK")
        return None
    task_id, stage, queue, round_ = row
    assignment = conn.execute(ASSIGN_SQL, (task_id, name, stage, queue, round_, now, now)).lastrowid
    conn.execute(EVENT_SQL, (task_id, "claimed", None, None, name,
                             json.dumps({"assignment": assignment, "stage": stage, "queue": queue}), now))
    conn.execute("COMMIT")
    return task_id, assignment


def _submit(conn: sqlite3.Connection, name: str, assignment: int, label: str) -> None:
    """One audited submit that settles its task (a single vote is accepted)."""
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    task_id, stage, round_ = conn.execute(TAKE_SQL, (now, assignment, name)).fetchone()
    conn.execute(ANNOTATION_SQL, (assignment, task_id, name, stage, round_, label, now))
    conn.execute(COUNTER_SQL, (name,))
    conn.execute(EVENT_SQL, (task_id, "submitted", None, None, name,
                             json.dumps({"assignment": assignment, "stage": stage, "label": label}), now))
    conn.execute(FINAL_SQL, (label, now, now, task_id))
    conn.execute(EVENT_SQL, (task_id, "final", "single vote", "accept", name,
                             json.dumps({"section": "on_quorum", "label": label}), now))
    conn.execute("COMMIT")


def floor_worker_loop(idx: int, path: str, duration: float, busy_ms: int, barrier, stop_at=None) -> dict:
    """One worker of the floor loop; returns the same record as the Labelyard worker."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000.0)
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    conn.execute("PRAGMA synchronous=NORMAL")
    name = fixtures.worker_name(idx)
    ids, claim_lat, submit_lat = array("q"), array("d"), array("d")
    errors: dict[str, int] = {}
    labels = fixtures.CHOICES
    perf = time.perf_counter

    def attempt(where: str, step, *args):
        """Run one transaction; a busy or locked database is counted, not raised."""
        try:
            return True, step(conn, name, *args)
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            errors[f"{where}:{exc}"] = errors.get(f"{where}:{exc}", 0) + 1
            return False, None

    barrier.wait()
    t_start = time.monotonic()
    cpu0 = time.process_time()
    end = t_start + duration
    i = 0
    while time.monotonic() < end and (stop_at is None or time.monotonic() < stop_at.value):
        t0 = perf()
        ok, claimed = attempt("claim", _claim)
        if not ok:
            continue
        if claimed is None:
            break
        claim_lat.append(perf() - t0)
        ids.append(claimed[0])
        i += 1
        t1 = perf()
        ok, _ = attempt("submit", _submit, claimed[1], json.dumps(labels[i % len(labels)]))
        if ok:
            submit_lat.append(perf() - t1)
    elapsed = time.monotonic() - t_start
    cpu = time.process_time() - cpu0
    conn.close()
    return {"idx": idx, "ids": ids.tobytes(), "claim_lat": claim_lat.tobytes(), "submit_lat": submit_lat.tobytes(),
            "errors": errors, "error_samples": list(errors)[:5], "empty": 0, "elapsed": elapsed, "cpu_s": cpu}
