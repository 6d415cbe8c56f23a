"""Many real processes on one real SQLite file, and ``kill -9`` at arbitrary points.

- Claiming: 16 processes claim and submit through the Python API (and 8 through
  the ``labelyard`` CLI) at once; no slot is shared, no submission is lost,
  every task reaches its quorum, no ``SQLITE_BUSY`` reaches a caller.
- Ingest: ``kill -9`` of ``labelyard ingest`` midway, then the same ingest
  again, ends with every row exactly once and a sound database file.
- Claim loop: ``kill -9`` of claiming processes leaves nothing half-done.

Workers are ``tests/workers/claim_loop.py`` subprocesses. They start together
on a line written to their standard input (no sleeping); the only sleeps here
are short pauses inside loops that poll a real process's progress.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from router.engine import Engine
from router.ingest import read_file
from router.store import Store

from process_support import HANG_GUARD_S, WorkerProcess, child_env

WORKER_SCRIPT = Path(__file__).parent / "workers" / "claim_loop.py"
POLL_S = 0.01

WORKFLOW = """\
workflow: concurrency
description: two choices, one queue, every task annotated by {overlap} workers
labels:
  type: choice
  choices: [a, b]
queues:
  q: {{roles: [annotator]}}
on_create:
  - name: everything
    do: {{annotate: q, overlap: {overlap}}}
"""


# -- helpers ---------------------------------------------------------------------------------
def labelyard() -> list[str]:
    beside = Path(sys.executable).parent / "labelyard"
    return [str(beside)] if beside.exists() else ["labelyard"]


def write_tasks(path: Path, n: int, prefix: str = "t") -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(f'{{"id":"{prefix}{i}","data":{{"n":{i}}}}}\n' for i in range(n)))


def make_project(tmp_path: Path, *, tasks: int, overlap: int, workers: list[str]) -> Path:
    """A database with the workflow applied, ``tasks`` tasks ingested and the workers registered."""
    db = tmp_path / "labelyard.db"
    store, applied = Store.init(str(db))
    assert applied
    engine = Engine(store)
    engine.apply(WORKFLOW.format(overlap=overlap), "concurrency.workflow.yaml", actor="test")
    for name in workers:
        engine.add_worker(name, ["annotator"], [], actor="test")
    source = tmp_path / "tasks.jsonl"
    write_tasks(source, tasks)
    report = engine.ingest(read_file(str(source), engine.workflow.labels.choices), str(source))
    assert (report.ingested, report.duplicates, report.rejected) == (tasks, 0, 0)
    engine.close()
    return db


class Worker(WorkerProcess):
    """One claim_loop.py process."""

    def __init__(self, tmp_path: Path, db: Path, name: str, mode: str):
        super().__init__(WORKER_SCRIPT, tmp_path, db, name, ["--mode", mode])


def start_together(tmp_path: Path, db: Path, names: list[str], mode: str) -> list[Worker]:
    workers = [Worker(tmp_path, db, name, mode) for name in names]
    try:
        for w in workers:
            w.wait_ready()
        for w in workers:
            w.go()
    except BaseException:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
        raise
    return workers


def finish_cleanly(workers: list[Worker]) -> list[dict]:
    """Wait for every worker; each must exit 0 with an empty stderr (no traceback, no SQLITE_BUSY)."""
    codes = {w.name: w.wait() for w in workers}
    problems = {w.name: (codes[w.name], w.stderr()) for w in workers if codes[w.name] != 0 or w.stderr().strip()}
    assert not problems, problems
    records = [w.record() for w in workers]
    for r in records:
        assert r["nothing_to_do"] is not None  # ended by NothingToDo, nothing else
    return records


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def connect_readonly(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def majority(labels: list[str]) -> str | None:
    counts = Counter(labels).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def assert_consistent(conn: sqlite3.Connection) -> None:
    """What must hold after any crash: a sound file, and no transition half-made."""
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # an open task's free slots are what its stage still needs minus the slots held
    bad_slots = conn.execute(
        "SELECT t.id, t.needed, t.free_slots, (SELECT count(*) FROM assignments AS a "
        "WHERE a.task_id = t.id AND a.status = 'active') AS active FROM tasks AS t "
        "WHERE t.status = 'open' AND t.free_slots != t.needed - active"
    ).fetchall()
    assert [tuple(r) for r in bad_slots] == []
    assert conn.execute("SELECT count(*) FROM tasks WHERE free_slots < 0 OR needed < 0").fetchone()[0] == 0
    # every annotation belongs to a submitted assignment of the same task and worker, and vice versa
    orphans = conn.execute(
        "SELECT n.id FROM annotations AS n LEFT JOIN assignments AS a ON a.id = n.assignment_id "
        "WHERE a.id IS NULL OR a.status != 'submitted' OR a.worker != n.worker OR a.task_id != n.task_id "
        "OR a.stage != n.stage OR a.round != n.round"
    ).fetchall()
    assert orphans == []
    unrecorded = conn.execute(
        "SELECT a.id FROM assignments AS a LEFT JOIN annotations AS n ON n.assignment_id = a.id "
        "WHERE a.status = 'submitted' AND n.id IS NULL"
    ).fetchall()
    assert unrecorded == []
    # each claim and each submission wrote its event in the same transaction
    n_assignments = conn.execute("SELECT count(*) FROM assignments").fetchone()[0]
    n_annotations = conn.execute("SELECT count(*) FROM annotations").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM events WHERE kind = 'claimed'").fetchone()[0] == n_assignments
    assert conn.execute("SELECT count(*) FROM events WHERE kind = 'submitted'").fetchone()[0] == n_annotations
    # finished tasks hold no slot and have their label
    assert conn.execute(
        "SELECT count(*) FROM tasks AS t WHERE t.status = 'done' AND (t.final_label IS NULL OR EXISTS ("
        "SELECT 1 FROM assignments AS a WHERE a.task_id = t.id AND a.status = 'active'))"
    ).fetchone()[0] == 0
    # a task reached its final state in exactly one event
    assert conn.execute(
        "SELECT count(*) FROM tasks AS t WHERE t.status = 'done' AND (SELECT count(*) FROM events AS e "
        "WHERE e.task_id = t.id AND e.kind = 'final') != 1"
    ).fetchone()[0] == 0


def assert_all_work_done(db: Path, records: list[dict], *, tasks: int, overlap: int) -> None:
    """The invariants of a claim/submit run that went to the end with no crash."""
    claimed = [tuple(c) for r in records for c in r["claimed"]]
    submitted = [tuple(s) for r in records for s in r["submitted"]]

    # no slot was handed out twice, and no worker got two slots of one task
    assignment_ids = [a for a, _, _ in claimed]
    assert len(assignment_ids) == len(set(assignment_ids))
    pairs = Counter((task, r["worker"]) for r in records for _, task, kind in r["claimed"] if kind == "annotate")
    assert [p for p, n in pairs.items() if n > 1] == []
    assert all(kind == "annotate" for _, _, kind in claimed)
    # every worker submitted what it claimed
    assert sorted(a for a, _, _ in submitted) == sorted(assignment_ids)
    assert len(submitted) == tasks * overlap

    conn = connect(db)
    try:
        assert_consistent(conn)
        rows = conn.execute("SELECT id, assignment_id, task_id, worker, stage, label FROM annotations").fetchall()
        # the database holds exactly the submissions the workers reported, with their labels
        assert len(rows) == len(submitted)
        reported = {(a, t, label) for a, t, label in submitted}
        assert {(r["assignment_id"], r["task_id"], json.loads(r["label"])) for r in rows} == reported
        by_worker = {r["worker"]: {a for a, _, _ in r["submitted"]} for r in records}
        assert all(r["assignment_id"] in by_worker[r["worker"]] for r in rows)

        votes: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for r in rows:
            assert r["stage"] == "annotate"
            votes[r["task_id"]].append((r["worker"], json.loads(r["label"])))
        tasks_rows = conn.execute("SELECT id, status, needed, free_slots, final_label, final_by FROM tasks").fetchall()
        assert len(tasks_rows) == tasks
        for t in tasks_rows:
            cast = votes[t["id"]]
            # exactly `overlap` annotations by `overlap` distinct workers
            assert len(cast) == overlap, (t["id"], cast)
            assert len({w for w, _ in cast}) == overlap, (t["id"], cast)
            assert (t["needed"], t["free_slots"]) == (0, 0)
            expected = majority([label for _, label in cast])
            if expected is None:
                assert t["status"] == "held", dict(t)  # a tie holds the task (default on_quorum)
            else:
                assert t["status"] == "done", dict(t)
                assert (json.loads(t["final_label"]), t["final_by"]) == (expected, "consensus")
        assert conn.execute("SELECT count(*) FROM assignments WHERE status != 'submitted'").fetchone()[0] == 0
    finally:
        conn.close()


# -- (a) many processes claiming at once ---------------------------------------------------------
def test_sixteen_api_processes_never_share_a_slot_and_lose_nothing(tmp_path):
    names = [f"w{i:02d}" for i in range(16)]
    db = make_project(tmp_path, tasks=600, overlap=3, workers=names)
    workers = start_together(tmp_path, db, names, "api")
    records = finish_cleanly(workers)

    assert_all_work_done(db, records, tasks=600, overlap=3)
    # with two choices and three votes there is always a majority: every task is done
    conn = connect(db)
    try:
        assert [tuple(r) for r in conn.execute("SELECT status, count(*) FROM tasks GROUP BY status")] == [("done", 600)]
    finally:
        conn.close()
    # the work really was shared out among the processes
    assert sum(1 for r in records if r["submitted"]) >= 2


def test_eight_cli_loops_never_share_a_slot_and_lose_nothing(tmp_path):
    names = [f"c{i}" for i in range(8)]
    db = make_project(tmp_path, tasks=40, overlap=2, workers=names)
    workers = start_together(tmp_path, db, names, "cli")
    records = finish_cleanly(workers)

    assert_all_work_done(db, records, tasks=40, overlap=2)
    for r in records:
        assert "no work" in r["nothing_to_do"]  # claim's own exit-3 message, nothing else


# -- (b) kill -9 of an ingest midway ---------------------------------------------------------------
INGEST_ROWS = 200_000


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ingest") / "big.jsonl"
    write_tasks(path, INGEST_ROWS, prefix="row-")
    return path


def _count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]


def _children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (a scan of /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(pid).encode() and fields[0] != b"Z":
                found.append(int(name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` is still running (a zombie, or a pid gone, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


@pytest.mark.parametrize("fraction", [0.05, 0.5])
def test_ingest_killed_midway_then_rerun_keeps_every_row_once(tmp_path, big_jsonl, fraction):
    db = tmp_path / "labelyard.db"
    store, _ = Store.init(str(db))
    Engine(store).apply(WORKFLOW.format(overlap=1), "concurrency.workflow.yaml", actor="test")
    store.close()

    command = [*labelyard(), "ingest", str(big_jsonl), "--db", str(db)]
    err_path = tmp_path / "ingest.stderr"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=child_env(), cwd=str(tmp_path))
    target = max(1, int(INGEST_ROWS * fraction))
    reader = connect_readonly(db)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        seen = 0
        while seen < target:
            assert proc.poll() is None, f"ingest ended before the kill ({seen} rows): {err_path.read_text()}"
            assert time.monotonic() < deadline, "ingest made no progress"
            seen = _count(reader)
            if seen < target:
                time.sleep(POLL_S)
        children = _children_of(proc.pid)
        assert children, "labelyard ingest FILE should route in a child process"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=HANG_GUARD_S) == -signal.SIGKILL
        # the routing child notices its parent is gone at its next send and exits
        while any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline + HANG_GUARD_S, "the routing child outlived the killed ingest"
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.close()

    conn = connect(db)
    try:
        partial = _count(conn)
        assert target <= partial < INGEST_ROWS
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()

    rerun = subprocess.run([*command, "--json"], capture_output=True, text=True, env=child_env(), cwd=str(tmp_path))
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert (report["ingested"], report["duplicates"], report["rejected"]) == (INGEST_ROWS - partial, partial, 0)

    conn = connect(db)
    try:
        assert _count(conn) == INGEST_ROWS
        assert conn.execute("SELECT count(DISTINCT external_id) FROM tasks").fetchone()[0] == INGEST_ROWS
        ids = {r[0] for r in conn.execute("SELECT external_id FROM tasks")}
        assert ids == {f"row-{i}" for i in range(INGEST_ROWS)}
        # one 'created' event per task, none for a task that does not exist
        assert conn.execute("SELECT count(*) FROM events WHERE kind = 'created'").fetchone()[0] == INGEST_ROWS
        assert conn.execute(
            "SELECT count(*) FROM (SELECT task_id FROM events WHERE kind = 'created' GROUP BY task_id "
            "HAVING count(*) != 1)"
        ).fetchone()[0] == 0
        assert conn.execute(
            "SELECT count(*) FROM events AS e LEFT JOIN tasks AS t ON t.id = e.task_id "
            "WHERE e.kind = 'created' AND t.id IS NULL"
        ).fetchone()[0] == 0
        assert conn.execute(
            "SELECT count(*) FROM tasks WHERE status != 'open' OR stage != 'annotate' OR queue != 'q' "
            "OR needed != 1 OR free_slots != 1"
        ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
        assert_consistent(conn)
    finally:
        conn.close()


# -- (c) kill -9 in the middle of a claim/submit loop ------------------------------------------------
def test_killing_claiming_processes_leaves_nothing_half_done(tmp_path):
    tasks, overlap = 300, 3
    names = [f"k{i}" for i in range(6)]
    db = make_project(tmp_path, tasks=tasks, overlap=overlap, workers=names)
    workers = start_together(tmp_path, db, names, "api")
    victims: list[Worker] = []

    # kill one worker early and one later, each as soon as the run has made that much progress; the
    # victim is the busiest live worker (SQLite's lock is not fair: a process may get no slot for a while)
    reader = connect_readonly(db)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        for share in (0.15, 0.45):
            goal = int(tasks * overlap * share)
            while reader.execute("SELECT count(*) FROM annotations").fetchone()[0] < goal:
                assert time.monotonic() < deadline, "the workers made no progress"
                time.sleep(POLL_S)
            claims = dict(reader.execute("SELECT worker, count(*) FROM assignments GROUP BY worker").fetchall())
            victim = max((w for w in workers if w not in victims), key=lambda w: claims.get(w.name, 0))
            assert victim.proc.poll() is None, f"{victim.name} ended early: {victim.stderr()}"
            os.kill(victim.proc.pid, signal.SIGKILL)
            assert victim.wait() == -signal.SIGKILL
            victims.append(victim)
    except BaseException:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
        raise
    finally:
        reader.close()
    survivors = [w for w in workers if w not in victims]

    records = finish_cleanly(survivors)

    conn = connect(db)
    try:
        assert_consistent(conn)
        # what the victims had logged as done is in the database; at most one more claim and one more
        # submission (the one in flight when the signal came) went through without being logged
        for victim in victims:
            logged = victim.logged()
            logged_claims = {e["assignment"] for e in logged if e["op"] == "claimed"}
            logged_submits = {e["assignment"]: e["label"] for e in logged if e["op"] == "submitted"}
            assert logged_claims, f"{victim.name} was killed before it did anything"
            db_claims = {r[0] for r in conn.execute("SELECT id FROM assignments WHERE worker = ?", (victim.name,))}
            db_submits = {r[0]: json.loads(r[1]) for r in conn.execute(
                "SELECT assignment_id, label FROM annotations WHERE worker = ?", (victim.name,))}
            assert logged_claims <= db_claims
            assert len(db_claims - logged_claims) <= 1
            assert all(db_submits.get(a) == label for a, label in logged_submits.items())
            assert len(set(db_submits) - set(logged_submits)) <= 1
            assert conn.execute(
                "SELECT count(*) FROM assignments WHERE worker = ? AND status = 'active'", (victim.name,)
            ).fetchone()[0] <= 1

        # the survivors never shared a slot with anyone
        survivor_claims = [a for r in records for a, _, _ in r["claimed"]]
        assert len(survivor_claims) == len(set(survivor_claims))
        assert sorted(survivor_claims) == sorted(a for r in records for a, _, _ in r["submitted"])
        owners = dict(conn.execute("SELECT id, worker FROM assignments").fetchall())
        assert all(owners[a] == r["worker"] for r in records for a, _, _ in r["claimed"])
        pairs = conn.execute(
            "SELECT task_id, worker FROM assignments GROUP BY task_id, worker HAVING count(*) > 1").fetchall()
        assert pairs == []

        # every slot was taken: a task is done, or still open only for a slot a dead worker holds
        assert conn.execute("SELECT count(*) FROM tasks WHERE free_slots != 0").fetchone()[0] == 0
        active = conn.execute("SELECT task_id, worker FROM assignments WHERE status = 'active'").fetchall()
        assert {w for _, w in active} <= {v.name for v in victims}
        open_tasks = {r[0] for r in conn.execute("SELECT id FROM tasks WHERE status = 'open'")}
        assert open_tasks == {t for t, _ in active}
        assert conn.execute(
            "SELECT count(*) FROM tasks WHERE status NOT IN ('open', 'done')").fetchone()[0] == 0
        # each open task still needs exactly the slots the dead workers hold
        for task_id in open_tasks:
            submitted = conn.execute(
                "SELECT count(*) FROM annotations WHERE task_id = ?", (task_id,)).fetchone()[0]
            needed = conn.execute("SELECT needed FROM tasks WHERE id = ?", (task_id,)).fetchone()[0]
            assert submitted + needed == overlap
    finally:
        conn.close()
