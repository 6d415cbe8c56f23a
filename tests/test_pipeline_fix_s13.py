"""`labelyard ingest FILE`'s routing child takes its own SQLite locks (real processes, Linux).

The child is forked. When the parent had a connection open to the database at that moment,
the child inherited SQLite's per-process lock bookkeeping for the file (the unix VFS keeps
it per inode: ``unixInodeInfo``, and the WAL index's ``unixShmNode`` with its lock counts).
The child's own connection then believed the process held the database's shared lock and
the WAL index's "in use" lock already, and took neither: POSIX locks are not inherited,
so nothing protected the child's reads from a checkpoint that resets the WAL, or from a
process rebuilding the index. The parent now closes its connections to the file before it
forks and opens them again after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from router.engine import Engine
from router.store import Store

WORKFLOW = ("workflow: p\nlabels: {type: choice, choices: [a, b]}\nqueues: {q: {roles: [annotator]}}\n"
            "on_create:\n  - name: rest\n    do: {annotate: q, overlap: 1}\n")

# Runs Engine.ingest(fork=True) as `labelyard ingest FILE` does. The rows are read in the child:
# there the first row begins a read transaction on the child's routing connection and writes
# down which POSIX locks this process (the child) holds on the database file and its -shm.
SCRIPT = textwrap.dedent("""
    import json, os, sqlite3, sys
    from router.engine import Engine
    from router.ingest import TaskInput
    from router.store import Store

    db, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    parent = os.getpid()

    def locks(pid):
        files = {os.stat(db).st_ino: "db", os.stat(db + "-shm").st_ino: "shm"}
        held = []
        with open("/proc/locks") as table:
            for line in table:
                r = line.replace("->", "").split()
                inode = int(r[5].rsplit(":", 1)[1])
                if r[1] == "POSIX" and r[4] == str(pid) and inode in files:
                    held.append([files[inode], r[3], int(r[6]), int(r[7])])
        return sorted(held)

    engine = Engine.open(db)
    other = Store.open(db)                      # another store of this process on the same file
    other.query("SELECT count(*) FROM tasks")
    if mode == "foreign":                       # a connection Labelyard does not know of, reading
        foreign = sqlite3.connect(db)
        foreign.execute("SELECT count(*) FROM tasks").fetchall()

    def rows():
        conn = engine.store.conn                # the child's routing connection (the parent's, unforked)
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM tasks").fetchall()
        with open(out, "w") as f:
            json.dump({"forked": os.getpid() != parent, "locks": locks(os.getpid())}, f)
        conn.execute("COMMIT")
        for n in range(3):
            yield TaskInput(line=n + 1, external_id=f"T{n}", data={"n": n})

    report = engine.ingest(rows(), "rows.jsonl", fork=True, whole=True)
    # the parent's stores work after the ingest: each connection it closed for the fork is open again
    print(json.dumps({"ingested": report.ingested,
                      "engine": engine.store.query("SELECT count(*) FROM tasks")[0][0],
                      "other": other.query("SELECT count(*) FROM tasks")[0][0]}))
""")

SHARED_FIRST = 0x40000000 + 2  # SQLite's shared range on the database file: PENDING_BYTE + 2 …
WAL_INDEX_IN_USE = 128  # the -shm byte every process using the WAL index holds shared (the "DMS" lock)
READ_MARKS = range(120 + 3, 120 + 8)  # the -shm bytes of the WAL read marks


def _database(tmp_path: Path) -> Path:
    db = tmp_path / "lab.db"
    store, _ = Store.init(str(db))
    Engine(store).apply(WORKFLOW, "p.workflow.yaml")
    store.close()
    return db


def _run(tmp_path: Path, db: Path, mode: str) -> tuple[dict, dict]:
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "child.json"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(db), str(out), mode], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), json.loads(proc.stdout)


def test_the_routing_child_holds_its_own_locks_on_the_database_and_its_wal_index(tmp_path):
    db = _database(tmp_path)
    child, parent = _run(tmp_path, db, "plain")
    assert child["forked"]
    held = child["locks"]
    assert any(f == "db" and kind == "READ" and start == SHARED_FIRST for f, kind, start, _ in held), held
    assert ["shm", "READ", WAL_INDEX_IN_USE, WAL_INDEX_IN_USE] in held, held
    assert any(f == "shm" and kind == "READ" and start in READ_MARKS for f, kind, start, _ in held), held
    assert parent == {"ingested": 3, "engine": 3, "other": 3}


def test_a_connection_to_the_database_labelyard_cannot_close_keeps_the_routing_in_the_process(tmp_path):
    """Forking then would hand the child its lock bookkeeping: the rows are routed in a thread instead."""
    db = _database(tmp_path)
    child, parent = _run(tmp_path, db, "foreign")
    assert not child["forked"]
    assert parent == {"ingested": 3, "engine": 3, "other": 3}


def _rows(n: int, raw_bytes: int = 0):
    from router.ingest import TaskInput

    for i in range(n):
        row = TaskInput(line=i + 1, external_id=f"R{i}", data={"n": i})
        if raw_bytes:
            row.raw = b"x" * raw_bytes  # the row as read: its size counts toward the batch's bytes
        yield row


def test_batches_grow_from_a_small_first_one_and_large_rows_make_small_ones(tmp_path, monkeypatch):
    """The writer commits larger batches (fewer commits write fewer pages a row), the first one
    small so that it starts early; rows of many bytes make a batch of few rows."""
    from router import engine as engine_module

    monkeypatch.setattr(engine_module, "INGEST_BATCH_SECONDS", 1e9)  # sizes by rows and bytes alone
    store, _ = Store.init(str(tmp_path / "lab.db"))
    engine = Engine(store)
    engine.apply(WORKFLOW, "p.workflow.yaml")
    reached: list[int] = []
    report = engine.ingest(_rows(16_000), "rows.jsonl", progress=reached.append, whole=True)
    assert report.ingested == 16_000
    assert reached == [1000, 3000, 7000, 15_000, 16_000]
    reached.clear()
    report = engine.ingest(_rows(7, raw_bytes=3 << 20), "big.jsonl", progress=reached.append)
    assert report.duplicates == 7
    assert reached == [3, 6, 7]  # 8 MiB of rows as read at most: three rows of 3 MiB
    engine.close()
