"""The raw-sqlite3 peers, copied from the peer benchmark scripts.

Source: ``/work/shared/peers/`` on the machine where the anchors were measured
(``common.py``, ``bench_ingest.py --modes raw`` and ``bench_claim.py``).
The code is copied, not imported, because ``shared/`` may not sit beside the
repository. What is copied verbatim (apart from names and the ``queues``
parameter) is marked; keep it identical to the peers so the ratios mean the
same thing as the figures in ``peers/RESULTS.md``.

Common settings (peers' ``common.connect``): WAL, ``synchronous=NORMAL``,
``busy_timeout=5000``, SQLite's default page cache (2 MB).
"""

from __future__ import annotations

import random
import sqlite3
import time
from array import array

# ---------------------------------------------------------------------------
# From peers/common.py (verbatim: schema, connect, make_rows, bulk_insert, is_busy)
# ---------------------------------------------------------------------------

TASK_COLUMNS = ("external_id", "queue", "state", "priority", "payload", "created_at")

TASKS_DDL = """
CREATE TABLE IF NOT EXISTS tasks (
    id          INTEGER PRIMARY KEY,
    external_id TEXT UNIQUE,
    queue       TEXT,
    state       TEXT,
    priority    REAL,
    payload     TEXT,          -- JSON, ~200 bytes
    created_at  REAL,
    assignee    TEXT           -- NULL until claimed
);
CREATE INDEX IF NOT EXISTS tasks_queue_state_priority
    ON tasks (queue, state, priority);
"""

ANNOTATIONS_DDL = """
CREATE TABLE IF NOT EXISTS annotations (
    id         INTEGER PRIMARY KEY,
    task_id    INTEGER NOT NULL,
    annotator  TEXT NOT NULL,
    result     TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_task_id ON annotations (task_id);
"""

INSERT_TASK_SQL = (
    "INSERT INTO tasks (external_id, queue, state, priority, payload, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)

QUEUES = tuple(f"q{i:02d}" for i in range(10))
STATES = ("ready", "assigned", "done")
STATE_WEIGHTS = (80, 5, 15)


def connect(path: str, busy_timeout_ms: int = 5000, legacy_tx: bool = False,
            synchronous: str = "NORMAL", cache_mb: int | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_ms / 1000.0,
        isolation_level="" if legacy_tx else None,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    if cache_mb:
        conn.execute(f"PRAGMA cache_size={-1024 * int(cache_mb)}")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(TASKS_DDL + ANNOTATIONS_DDL)


def is_busy(exc: BaseException) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED style OperationalErrors."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


_ALPHABET = "abcdefghijklmnopqrstuvwxyz      "


def make_rows(n: int, seed: int = 42, ext_ids: str = "random") -> list[tuple]:
    """Generate `n` task rows as tuples in TASK_COLUMNS order (deterministic)."""
    if ext_ids not in ("random", "seq"):
        raise ValueError(f"unknown ext_ids mode {ext_ids!r}")
    rng = random.Random(seed)
    blob = "".join(rng.choice(_ALPHABET) for _ in range(8192))
    sources = ("cron-a", "cron-b", "cron-c", "webhook")
    kinds = ("bbox", "classify", "transcribe", "ner", "review")
    states = rng.choices(STATES, weights=STATE_WEIGHTS, k=n)
    nq = len(QUEUES)
    now = time.time()
    rnd, getrandbits, randrange = rng.random, rng.getrandbits, rng.randrange
    fmt = ('{"source":"%s","kind":"%s","item":%d,"lang":"en","text":"%s",'
           '"labels":["a","b"],"score":%.4f}')
    rows = []
    append = rows.append
    for i in range(n):
        ext = ("%032x" % getrandbits(128)) if ext_ids == "random" else ("ext-%012d" % i)
        off = randrange(8092)
        payload = fmt % (sources[i & 3], kinds[i % 5], i, blob[off:off + 100], rnd())
        append((ext, QUEUES[randrange(nq)], states[i], rnd(), payload, now - (n - i) * 0.001))
    return rows


def bulk_insert(conn: sqlite3.Connection, rows: list[tuple], batch: int) -> None:
    """The raw ingest path: executemany in explicit transactions of `batch` rows."""
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN")
        conn.executemany(INSERT_TASK_SQL, rows[i:i + batch])
        conn.execute("COMMIT")


def percentile(values, p: float) -> float:
    """Linear-interpolated percentile (p in 0..100) of a non-empty sequence."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * (p / 100.0)
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------------------
# From peers/bench_ingest.py: ingest_raw (verbatim, rows passed in)
# ---------------------------------------------------------------------------


def ingest_raw(path: str, rows: list[tuple], batch: int = 10_000, cache_mb: int | None = None) -> float:
    """Insert ``rows`` into a fresh database at ``path``; returns the timed seconds."""
    conn = connect(path, cache_mb=cache_mb)
    create_schema(conn)
    before = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    t0 = time.perf_counter()
    bulk_insert(conn, rows, batch)
    dt = time.perf_counter() - t0
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == before + len(rows)
    conn.close()
    return dt


# ---------------------------------------------------------------------------
# From peers/bench_claim.py: the claim/submit worker loop (verbatim except that
# the list of queues is a parameter: the equivalent fixture here has one queue)
# ---------------------------------------------------------------------------

CLAIM_SQL = """
UPDATE tasks SET state = 'assigned', assignee = ?
 WHERE id = (SELECT id FROM tasks
              WHERE queue = ? AND state = 'ready'
              ORDER BY priority DESC LIMIT 1)
RETURNING id
"""
INSERT_ANNOTATION_SQL = (
    "INSERT INTO annotations (task_id, annotator, result, created_at) VALUES (?, ?, ?, ?)"
)
DONE_SQL = "UPDATE tasks SET state = 'done' WHERE id = ? AND assignee = ? AND state = 'assigned'"
RESULT_JSON = '{"label":"cat","bbox":[10,20,110,220],"confidence":0.93,"notes":""}'
MAX_SUBMIT_TRIES = 20


def claim_worker_loop(idx: int, path: str, duration: float, busy_ms: int, barrier,
                      queues: tuple[str, ...] = QUEUES) -> dict:
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000.0)
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    conn.execute("PRAGMA synchronous=NORMAL")  # journal_mode=WAL is persistent in the file
    name = f"w{idx:03d}"
    qi = idx % len(queues)
    ids = array("q")
    claim_lat = array("d")
    submit_lat = array("d")
    claim_busy = submit_busy = empty = 0
    barrier.wait()
    t_start = time.monotonic()
    end = t_start + duration
    while time.monotonic() < end:
        # --- claim -------------------------------------------------------
        t0 = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(CLAIM_SQL, (name, queues[qi])).fetchall()
            conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if is_busy(e):
                claim_busy += 1
                continue
            raise
        t1 = time.perf_counter()
        if not rows:
            empty += 1
            qi = (qi + 1) % len(queues)
            continue
        tid = rows[0][0]
        ids.append(tid)
        claim_lat.append(t1 - t0)
        # --- submit ------------------------------------------------------
        for _ in range(MAX_SUBMIT_TRIES):
            t2 = time.perf_counter()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(INSERT_ANNOTATION_SQL, (tid, name, RESULT_JSON, time.time()))
                changed = conn.execute(DONE_SQL, (tid, name)).rowcount
                if changed != 1:
                    raise AssertionError(f"{name}: task {tid} not assigned to me at submit")
                conn.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if is_busy(e):
                    submit_busy += 1
                    continue
                raise
            submit_lat.append(time.perf_counter() - t2)
            break
    elapsed = time.monotonic() - t_start
    conn.close()
    return {
        "idx": idx,
        "ids": ids.tobytes(),
        "claim_lat": claim_lat.tobytes(),
        "submit_lat": submit_lat.tobytes(),
        "claim_busy": claim_busy,
        "submit_busy": submit_busy,
        "empty": empty,
        "elapsed": elapsed,
    }


def verify_claims(path: str, ids: array, submits: int) -> dict:
    """The peer's post-run checks (bench_claim.run_k): nothing handed out twice."""
    claims = len(ids)
    assert len(set(ids)) == claims, f"{claims - len(set(ids))} task(s) claimed twice"
    conn = connect(path)
    try:
        dup = conn.execute(
            "SELECT count(*) FROM (SELECT task_id FROM annotations GROUP BY task_id HAVING count(*) > 1)"
        ).fetchone()[0]
        assert dup == 0, f"{dup} task(s) annotated twice"
        n_ann = conn.execute("SELECT count(*) FROM annotations").fetchone()[0]
        assert n_ann == submits, (n_ann, submits)
        n_assigned = conn.execute("SELECT count(*) FROM tasks WHERE assignee IS NOT NULL").fetchone()[0]
        assert n_assigned == claims, (n_assigned, claims)
        n_done = conn.execute(
            "SELECT count(*) FROM tasks WHERE assignee IS NOT NULL AND state='done'").fetchone()[0]
        assert n_done == submits, (n_done, submits)
    finally:
        conn.close()
    return {"double_claims": 0, "double_annotations": dup}


def build_claim_fixture(path: str, n: int, queue: str = "q00", seed: int = 42) -> None:
    """The peer's claim fixture, made equivalent to Labelyard's: ``n`` ready tasks in one queue.

    Same rows as ``make_rows`` (random priority, ~200 B payload), except that
    every task is ``ready`` in ``queue`` (the peers' 1M fixture spreads tasks
    over 10 queues and 3 states).
    """
    rows = [(ext, queue, "ready", prio, payload, created)
            for ext, _q, _s, prio, payload, created in make_rows(n, seed=seed)]
    conn = connect(path)
    create_schema(conn)
    bulk_insert(conn, rows, 10_000)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
