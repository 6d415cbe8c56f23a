"""``python -m bench tui``: the TUI's reads at 1,000,000 tasks.

Measures, on a generated database (:func:`build_tui_db`):
- first paint of the dashboard and of a task page: ``LabelyardApp.run_test`` from start until the
  screen's table is filled (headless; Textual's own start-up included);
- the data behind them: ``Queries.dashboard()`` and ``Queries.task_page()`` (first page, a page
  10,000 pages deep by keyset, a queue page), each beside the raw indexed ``sqlite3`` query of the
  same page (target: a task page <= 2x raw);
- the refresh cost (one poll + ``Queries.dashboard()``) while 8 processes claim and submit
  through the engine (target: < 100 ms at 1M tasks).

The database is generated with raw ``executemany`` (tasks in every status and queue, their
``created`` events, a few thousand assignments and annotations), not through ingest: this measures
reading, and ingest has its own bench.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import statistics
import time
from typing import Any

from .common import scratch_dir

CATS = ("billing", "bug", "feature", "spam")
WORKERS = 60
LEAD = "lead"


def build_tui_db(path: str, n: int = 1_000_000, *, seed: int = 1, events: bool = True,
                 now: float | None = None) -> str:
    """A ticket-triage database with ``n`` tasks: ~70% done, 25% open across triage / legal / senior /
    experts, 3% held, 2% invalid; ``WORKERS`` annotators (a0000…), a ``lead``; some active slots and
    submissions. Fast: raw ``executemany`` with the journal off (~10-20 s for 1M)."""
    from router.demo import sample_workflow_text
    from router.engine import Engine
    from router.store import Store

    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    now = time.time() if now is None else now
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(sample_workflow_text(), "ticket-triage.workflow.yaml", actor="bench")
    for i in range(WORKERS):
        engine.add_worker(f"a{i:04d}", ["annotator"], ["legal"] if i % 10 == 0 else [], None, actor="bench")
    engine.add_worker("s0000", ["senior"], [], None, actor="bench")
    engine.add_worker(LEAD, ["lead"], [], None, actor="bench")
    wfid = engine.workflow_id
    store.close()

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-100000")
    rng = random.Random(seed)
    rnd = rng.random
    task_sql = "INSERT INTO tasks VALUES (" + ",".join("?" * 28) + ")"
    event_sql = "INSERT INTO events (task_id, kind, rule, action, actor, detail, at) VALUES (?,?,?,?,?,?,?)"
    created_detail = '{"section":"on_create"}'
    tasks: list[tuple] = []
    evs: list[tuple] = []
    open_ids: list[int] = []

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(task_sql, tasks)
        if evs:
            conn.executemany(event_sql, evs)
        conn.execute("COMMIT")
        tasks.clear()
        evs.clear()

    for i in range(1, n + 1):
        r = rnd()
        created = now - 7 * 86400 * rnd()
        label = json.dumps(CATS[i & 3])
        final = fb = fr = fa = stage = queue = None
        need = 0
        if r < 0.70:
            status, final, fb, fr, fa, rule = "done", label, "model", "confident model", created + 60, "confident model"
        elif r < 0.95:
            status = "open"
            qq = rnd()
            if qq < 0.7:
                stage, queue, need, rule = "annotate", "triage", 3, "uncertain"
            elif qq < 0.8:
                stage, queue, need, rule = "annotate", "legal", 2, "legal documents"
            elif qq < 0.95:
                stage, queue, need, rule = "review", "senior", 1, "uncertain"
            else:
                stage, queue, need, rule = "escalated", "experts", 1, "uncertain"
            if len(open_ids) < 5000 and queue == "triage":
                open_ids.append(i)
        elif r < 0.98:
            status, rule = "held", "unknown customer"
        else:
            status, rule = "invalid", "empty ticket"
        tasks.append((i, f"T-{i:07d}", "gen", "support", "[]", '{"subject":"ticket %d","customer":"c%d"}' % (i, i % 97),
                      status, stage, queue, need, need, round(rnd(), 3), 1, 1, wfid, label, round(rnd(), 3), "m",
                      None, final, fb, fr, fa, None, 0, created, created, created))
        if events:
            evs.append((i, "created", rule, "accept" if status == "done" else "annotate", "labelyard",
                        created_detail, created))
        if len(tasks) >= 50_000:
            flush()
    if tasks:
        flush()
    # Some work in progress and history: one active slot and one submission per chosen task.
    conn.execute("BEGIN")
    for k, task_id in enumerate(open_ids):
        worker = f"a{k % WORKERS:04d}"
        status = "active" if k % 5 == 0 else "submitted"
        at = now - 3600 * 20 * rnd()
        cur = conn.execute("INSERT INTO assignments (task_id, worker, stage, queue, round, status, created_at, "
                           "updated_at) VALUES (?, ?, 'annotate', 'triage', 1, ?, ?, ?)",
                           (task_id, worker, status, at, at))
        if status == "submitted":
            conn.execute("INSERT INTO annotations (assignment_id, task_id, worker, stage, round, label, created_at) "
                         "VALUES (?, ?, ?, 'annotate', 1, ?, ?)", (cur.lastrowid, task_id, worker,
                                                                   json.dumps(CATS[k & 3]), at))
            conn.execute(event_sql, (task_id, "submitted", None, None, worker, None, at))
        conn.execute("UPDATE tasks SET free_slots = free_slots - 1 WHERE id = ?", (task_id,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    store = Store.open(path)
    store.recount_counters()  # the rows above went in around the store, which counts its own inserts
    store.close()
    return path


# -- measuring -----------------------------------------------------------------------------

def _best(fn, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _median(fn, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def first_paint(db: str, mode: str) -> float:
    """Seconds from starting the app headless until ``mode``'s table holds data."""
    import asyncio

    from textual.widgets import DataTable

    from tui.app import LabelyardApp

    async def go() -> float:
        t0 = time.perf_counter()
        app = LabelyardApp(db, LEAD, start=mode, poll_interval=None)
        async with app.run_test(size=(120, 40)) as pilot:
            table_id = "#queues" if mode == "dashboard" else "#tasks"
            while True:
                await app.workers.wait_for_complete()
                await pilot.pause()
                if app.screen.query_one(table_id, DataTable).row_count:
                    return time.perf_counter() - t0

    return asyncio.run(go())


def claimer(db: str, worker: str, seconds: float) -> None:  # pragma: no cover - runs in a child process
    from router.engine import Engine
    from router.errors import NothingToDo

    engine = Engine.open(db)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            view = engine.claim(worker)
        except NothingToDo:
            continue
        engine.submit(view["assignment"], worker, label=view["choices"][0])


def measure(db: str, claimers: int = 8, seconds: float = 5.0) -> dict[str, Any]:
    from router.queries import Queries, TaskFilter

    q = Queries.open(db)
    raw = sqlite3.connect(db)
    out: dict[str, Any] = {}
    out["dashboard_ms"] = _median(lambda: q.dashboard()) * 1000
    out["poll_ms"] = _median(lambda: q.data_version(), 21) * 1000  # what the TUI's poller reads
    first = q.task_page(TaskFilter())
    out["page_first_ms"] = _median(lambda: q.task_page(TaskFilter())) * 1000
    out["page_first_raw_ms"] = _median(lambda: raw.execute(
        "SELECT * FROM tasks WHERE is_gold = 0 ORDER BY id DESC LIMIT 51").fetchall()) * 1000
    # 10,000 pages deep, by keyset (the key of row 500,000 from the top)
    deep = (None, first.rows[0]["id"] - 500_000)
    out["page_deep_ms"] = _median(lambda: q.task_page(TaskFilter(), deep)) * 1000
    out["page_deep_raw_ms"] = _median(lambda: raw.execute(
        "SELECT * FROM tasks WHERE is_gold = 0 AND id < ? ORDER BY id DESC LIMIT 51", (deep[1],)).fetchall()) * 1000
    qf = TaskFilter(status="open", queue="triage")
    out["page_queue_ms"] = _median(lambda: q.task_page(qf)) * 1000
    out["page_queue_raw_ms"] = _median(lambda: raw.execute(
        "SELECT * FROM tasks WHERE status = 'open' AND queue = 'triage' AND is_gold = 0 ORDER BY id DESC LIMIT 51"
    ).fetchall()) * 1000
    out["group_by_status_raw_ms"] = _median(lambda: raw.execute(
        "SELECT status, count(*) FROM tasks GROUP BY status").fetchall(), 3) * 1000
    out["first_paint_dashboard_s"] = first_paint(db, "dashboard")
    out["first_paint_tasks_s"] = first_paint(db, "tasks")

    import multiprocessing as mp

    procs = [mp.Process(target=claimer, args=(db, f"a{i:04d}", seconds)) for i in range(claimers)]
    for p in procs:
        p.start()
    refresh: list[float] = []
    end = time.monotonic() + seconds
    time.sleep(0.5)
    while time.monotonic() < end:
        t = time.perf_counter()
        q.data_version()
        q.dashboard()
        refresh.append(time.perf_counter() - t)
        time.sleep(0.2)
    for p in procs:
        p.join()
    out["refresh_under_load_ms_median"] = statistics.median(refresh) * 1000
    out["refresh_under_load_ms_max"] = max(refresh) * 1000
    out["refreshes"] = len(refresh)
    q.close()
    return out


def main(args) -> None:
    from . import common

    n = 20_000 if getattr(args, "quick", False) else getattr(args, "n", 1_000_000)
    with scratch_dir("tui-") as folder:
        db = os.path.join(folder, "tui.db")
        t = time.perf_counter()
        build_tui_db(db, n)
        build_s = time.perf_counter() - t
        common.log(f"tui: built {n:,} tasks in {build_s:.1f}s")
        m = measure(db, claimers=8, seconds=2.0 if getattr(args, "quick", False) else 5.0)
    m["build_s"] = build_s
    ratios = {"page_first": m["page_first_ms"] / m["page_first_raw_ms"],
              "page_deep": m["page_deep_ms"] / m["page_deep_raw_ms"],
              "page_queue": m["page_queue_ms"] / m["page_queue_raw_ms"]}
    targets = [{"name": "refresh under load < 100 ms", "value": m["refresh_under_load_ms_median"],
                "ok": m["refresh_under_load_ms_median"] < 100},
               *[{"name": f"{k} <= 2x raw", "value": v, "ok": v <= 2.0} for k, v in ratios.items()]]
    print(json.dumps({"bench": "tui", "variant": "quick" if getattr(args, "quick", False) else "full",
                      "metrics": m, "ratios": ratios, "targets": targets, "params": {"n": n}}))
    for k, v in m.items():
        common.log(f"  {k:<34} {v:10.2f}")
    for k, v in ratios.items():
        common.log(f"  ratio {k:<28} {v:10.2f}")
