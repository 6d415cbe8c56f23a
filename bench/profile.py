"""``python -m bench profile {ingest,claim}``: where Labelyard's time goes.

Two views, because cProfile's per-call overhead inflates Python-heavy code
against time spent inside SQLite:

1. **split** (no profiler): the same work in-process with a timer around
   each SQL call (grouped by statement), the rule evaluation
   (``Workflow.decide``) and, for ingest, reading/checking the input rows.
   The rest is Python in the engine (row building, JSON encoding, ...).
2. **cProfile**: the top functions by own time and by cumulative time.

Nothing here changes Labelyard: the timers wrap the store's connection and
the workflow object of one engine instance.

Like every bench, it prints one JSON line on stdout (``bench: "profile"``,
the split's figures in ``metrics`` and ``detail``; no peer, so ``ratios``
and ``targets`` are empty) and its tables on stderr.
"""

from __future__ import annotations

import cProfile
import collections
import io
import multiprocessing as mp
import os
import pstats
import re
import sys
import time

from . import claim, common, fixtures, ingest


class TimedConnection:
    """Forwards to a sqlite3 connection, timing execute/executemany per statement kind."""

    def __init__(self, conn):
        self._conn = conn
        self.seconds: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()
        self.holds: list[float] = []  # write lock held: BEGIN IMMEDIATE returned -> COMMIT returned
        self._locked_at: float | None = None

    @staticmethod
    def kind(sql: str) -> str:
        text = re.sub(r"\s+", " ", sql.strip())
        m = re.match(r"(INSERT INTO \w+|UPDATE \w+ SET \w+|SELECT .{0,40}?FROM \w+|DELETE FROM \w+|\w+(?: \w+)?)", text)
        return m.group(1) if m else text[:40]

    def _timed(self, method: str, sql: str, *args):
        t0 = time.perf_counter()
        try:
            return getattr(self._conn, method)(sql, *args)
        finally:
            t1 = time.perf_counter()
            key = f"{method}: {self.kind(sql)}"
            self.seconds[key] += t1 - t0
            self.calls[key] += 1
            if sql == "BEGIN IMMEDIATE":
                self._locked_at = t1
            elif sql in ("COMMIT", "ROLLBACK") and self._locked_at is not None:
                self.holds.append(t1 - self._locked_at)
                self._locked_at = None

    def execute(self, sql, *args):
        return self._timed("execute", sql, *args)

    def executemany(self, sql, *args):
        return self._timed("executemany", sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def instrument(engine) -> tuple[TimedConnection, dict]:
    timed = TimedConnection(engine.store.conn)
    engine.store.conn = timed
    workflow = engine.workflow
    spent = {"decide_s": 0.0, "decide_calls": 0}
    decide = workflow.decide

    def timed_decide(section, ctx):
        t0 = time.perf_counter()
        try:
            return decide(section, ctx)
        finally:
            spent["decide_s"] += time.perf_counter() - t0
            spent["decide_calls"] += 1

    workflow.decide = timed_decide
    return timed, spent


def timed_rows(rows, spent: dict):
    it = iter(rows)
    while True:
        t0 = time.perf_counter()
        try:
            row = next(it)
        except StopIteration:
            spent["read_s"] += time.perf_counter() - t0
            return
        spent["read_s"] += time.perf_counter() - t0
        yield row


def print_split(title: str, total: float, timed: TimedConnection, spent: dict, extra: dict[str, float]) -> dict:
    """The split on stderr; returns its figures (seconds) for the JSON line."""
    lines = [f"\n== {title}: split of {total:.2f}s wall (no profiler) =="]
    sql_total = sum(timed.seconds.values())
    parts = [(k, v) for k, v in extra.items()]
    parts.append(("rules: Workflow.decide (%d calls)" % spent["decide_calls"], spent["decide_s"]))
    parts.append(("SQL, all statements", sql_total))
    accounted = sum(v for _, v in parts)
    parts.append(("other Python (engine: row/view building, JSON, transaction logic)", total - accounted))
    for name, v in parts:
        lines.append(f"  {v:8.2f}s  {100 * v / total:5.1f}%  {name}")
    figures = {
        "metrics": {"wall_s": total, "decide_s": spent["decide_s"], "decide_calls": spent["decide_calls"],
                    "sql_s": sql_total, "other_python_s": total - accounted, "transactions": len(timed.holds)},
        "detail": {"split_s": {name: v for name, v in parts},
                   "sql_by_statement": [{"statement": key, "s": v, "calls": timed.calls[key]}
                                        for key, v in timed.seconds.most_common(12)]},
    }
    if timed.holds:
        figures["metrics"].update(lock_hold_p50_ms=1e3 * common.percentile(timed.holds, 50),
                                  lock_hold_p99_ms=1e3 * common.percentile(timed.holds, 99),
                                  lock_hold_max_ms=1e3 * max(timed.holds), lock_held_s=sum(timed.holds))
    if timed.holds:
        lines.append(f"  write lock held per transaction: {len(timed.holds):,} transactions, "
                     f"p50 {1e3 * common.percentile(timed.holds, 50):.2f} ms, "
                     f"p99 {1e3 * common.percentile(timed.holds, 99):.2f} ms, max {1e3 * max(timed.holds):.1f} ms, "
                     f"total {sum(timed.holds):.2f}s ({100 * sum(timed.holds) / total:.0f}% of wall)")
    lines.append("  SQL by statement:")
    for key, v in timed.seconds.most_common(12):
        lines.append(f"    {v:8.2f}s  {100 * v / total:5.1f}%  {timed.calls[key]:>8,} x  {key}")
    print("\n".join(lines), file=sys.stderr)
    return figures


def print_pstats(path: str, top: int) -> None:
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats = pstats.Stats(path, stream=buf)
        stats.strip_dirs().sort_stats(order).print_stats(top)
        text = buf.getvalue()
        start = text.find("   ncalls")
        print(f"\n== cProfile, top {top} by {order} ==\n" + text[start:], file=sys.stderr)


def profile_ingest(args, folder: str) -> dict:
    from router.engine import Engine
    from router.ingest import read_file

    src, template = ingest.prepare(folder, args.n)
    # 1. split, in-process, no profiler
    db = common.copy_db(template, os.path.join(folder, "split.db"))
    engine = Engine.open(db)
    timed, spent = instrument(engine)
    spent["read_s"] = 0.0
    t0 = time.perf_counter()
    report = engine.ingest(timed_rows(read_file(src, engine.workflow.labels.choices), spent), os.path.abspath(src))
    total = time.perf_counter() - t0
    engine.close()
    assert report.ingested == args.n
    read_s = spent.pop("read_s")
    figures = print_split(f"labelyard ingest of {args.n:,} rows, in-process ({args.n / total:,.0f} rows/s)", total,
                          timed, spent, {"reading + checking rows (json.loads, check_row)": read_s})
    figures["metrics"].update(rows_per_s=args.n / total, read_s=read_s)
    # 2. cProfile of the real CLI
    db = common.copy_db(template, os.path.join(folder, "prof.db"))
    prof = args.out or os.path.join(folder, "ingest.prof")
    cmd = [sys.executable, "-m", "cProfile", "-o", prof, "-m", "router.cli", "ingest", src, "--db", db, "--json"]
    r = common.run_measured(cmd, env=common.child_env())
    assert r["rc"] == 0, r["stderr"][-2000:]
    print(f"\ncProfile run of the CLI: {r['wall_s']:.1f}s wall under the profiler", file=sys.stderr)
    print_pstats(prof, args.top)
    figures["metrics"]["cli_wall_s_under_cprofile"] = r["wall_s"]
    return figures


ABLATIONS = {
    "as shipped": (),
    "no triggers (counter tables) and no tasks_open_age index": ("triggers",),
    "no trace rendering (rules.expr._render returns '')": ("render",),
    "10,000-row transactions (INGEST_BATCH_ROWS=10000)": ("batch",),
    "all three": ("triggers", "render", "batch"),
}


def _ablation_child(src: str, db: str, changes: tuple[str, ...], conn) -> None:
    import sqlite3 as sq

    import rules.expr
    from router import engine as engine_mod
    from router.engine import Engine
    from router.ingest import read_file

    if "triggers" in changes:
        c = sq.connect(db, isolation_level=None)
        for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            c.execute(f'DROP TRIGGER "{name}"')
        c.execute("DROP INDEX IF EXISTS tasks_open_age")
        c.close()
    if "render" in changes:
        rules.expr._render = lambda value: ""
    if "batch" in changes:
        engine_mod.INGEST_BATCH_ROWS = engine_mod.INGEST_FIRST_BATCH_ROWS = 10_000
        engine_mod.INGEST_BATCH_SECONDS = 1e9
    engine = Engine.open(db)
    timed, spent = instrument(engine)
    t0 = time.perf_counter()
    report = engine.ingest(read_file(src, engine.workflow.labels.choices), os.path.abspath(src))
    total = time.perf_counter() - t0
    engine.close()
    conn.send({"total": total, "ingested": report.ingested, "decide_s": spent["decide_s"],
               "sql_s": sum(timed.seconds.values()), "commit_s": timed.seconds.get("execute: COMMIT", 0.0),
               "holds": list(timed.holds)})


def ablate_ingest(args, folder: str) -> dict:
    """The in-process ingest with one cost removed at a time (on a scratch copy; router/ is untouched)."""
    src, template = ingest.prepare(folder, args.n)
    ctx = mp.get_context("fork")
    lines = [f"\n== ablation: in-process Engine.ingest of {args.n:,} rows, one cost removed at a time =="]
    lines.append(f"  {'variant':<58} {'rows/s':>8} {'x':>5} {'rules s':>8} {'SQL s':>7} {'COMMIT s':>8} {'lock p50 ms':>11}")
    base = None
    variants = []
    for name, changes in ABLATIONS.items():
        db = common.copy_db(template, os.path.join(folder, "ablate.db"))
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_ablation_child, args=(src, db, changes, child))
        proc.start()
        r = parent.recv()
        proc.join()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        assert r["ingested"] == args.n
        rate = args.n / r["total"]
        base = base or rate
        lines.append(f"  {name:<58} {rate:>8,.0f} {rate / base:>5.2f} {r['decide_s']:>8.2f} {r['sql_s']:>7.2f} "
                     f"{r['commit_s']:>8.2f} {1e3 * common.percentile(r['holds'], 50):>11.1f}")
        print(lines[-1], file=sys.stderr, flush=True)
        variants.append({"variant": name, "rows_per_s": rate, "vs_as_shipped": rate / base,
                         "decide_s": r["decide_s"], "sql_s": r["sql_s"], "commit_s": r["commit_s"],
                         "lock_hold_p50_ms": 1e3 * common.percentile(r["holds"], 50)})
    print("\n".join(lines), file=sys.stderr)
    return {"metrics": {"as_shipped_rows_per_s": variants[0]["rows_per_s"]}, "detail": {"ablations": variants}}


def _profiled_worker(path: str, seconds: float, barrier, out_q, prof: str) -> None:
    from router.engine import Engine

    engine = Engine.open(path)
    timed, spent = instrument(engine)
    choices = engine.workflow.labels.choices
    name = fixtures.worker_name(0)
    barrier.wait()

    def loop(deadline: float) -> tuple[int, float, float]:
        n = 0
        claim_s = submit_s = 0.0
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            view = engine.claim(name)
            t1 = time.perf_counter()
            engine.submit(view["assignment"], name, label=choices[n % len(choices)])
            claim_s += t1 - t0
            submit_s += time.perf_counter() - t1
            n += 1
        return n, claim_s, submit_s

    half = seconds / 2
    t0 = time.perf_counter()
    n, claim_s, submit_s = loop(time.monotonic() + half)
    total = time.perf_counter() - t0
    figures = print_split(f"claim worker 0 ({n:,} claim+submit pairs, {2 * n / total:,.0f} ops/s in this worker)",
                          total, timed, spent, {})
    figures["metrics"].update(pairs=n, ops_per_s=2 * n / total, claim_ms=1e3 * claim_s / max(n, 1),
                              submit_ms=1e3 * submit_s / max(n, 1))
    print(f"  Engine.claim: {claim_s:.2f}s ({1e3 * claim_s / max(n, 1):.3f} ms each), "
          f"Engine.submit: {submit_s:.2f}s ({1e3 * submit_s / max(n, 1):.3f} ms each)", file=sys.stderr)
    profiler = cProfile.Profile()
    profiler.enable()
    loop(time.monotonic() + half)
    profiler.disable()
    profiler.dump_stats(prof)
    engine.close()
    out_q.put({"idx": 0, "done": True, "figures": figures})


def profile_claim(args, folder: str) -> dict:
    fixture = fixtures.build_claim_db(folder, args.n, max(args.k, 1))
    path = claim.fresh_copy(fixture, folder, "prof.db")
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(args.k + 1)
    out_q = ctx.Queue()
    prof = args.out or os.path.join(folder, "claim.prof")
    procs = [ctx.Process(target=_profiled_worker, args=(path, args.seconds, barrier, out_q, prof))]
    procs += [ctx.Process(target=claim.labelyard_worker, args=(i, path, args.seconds, barrier, out_q))
              for i in range(1, args.k)]
    for p in procs:
        p.start()
    barrier.wait()
    figures: dict = {}
    for _ in procs:
        result = out_q.get(timeout=args.seconds + 300)
        figures = result.get("figures", figures)
    for p in procs:
        p.join()
    print_pstats(prof, args.top)
    return figures


def main(args) -> dict:
    with common.scratch_dir("profile-") as folder:
        if args.what == "ingest" and args.ablate:
            figures, variant = ablate_ingest(args, folder), f"ingest-ablate,n={args.n}"
        elif args.what == "ingest":
            figures, variant = profile_ingest(args, folder), f"ingest,n={args.n}"
        else:
            figures, variant = profile_claim(args, folder), f"claim,n={args.n},k={args.k},seconds={args.seconds}"
    return common.emit("profile", variant, figures.get("metrics", {}), {}, [], detail=figures.get("detail"),
                       params={"what": args.what, "n": args.n, "top": args.top,
                               **({"k": args.k, "seconds": args.seconds} if args.what == "claim"
                                  else {"ablate": bool(args.ablate)})})
