"""Bench 1: ``labelyard ingest`` (the real CLI, a subprocess) vs raw ``executemany``.

Labelyard side: ``labelyard ingest FILE.jsonl --db DB --json`` on a fresh
database that has the bench workflow applied (six ``on_create`` rules, two
with an expression priority). The file holds N rows with a model prediction;
the rows are the peer's rows (same 32-hex random ids, same ~200-byte payload
as ``data``). Timed: the whole process, from spawn to exit (start-up, JSON
parsing, checks, rules, SQL, the audit event of every task).

Peer: ``bench_ingest.py --modes raw`` (``peers_raw.ingest_raw``): N rows into
a fresh database with the peer schema, ``executemany`` in transactions of
10,000 rows, WAL, ``synchronous=NORMAL``, default cache. Rows are generated
before its clock starts, as in the peer script. It runs in a forked child so
the bench process stays small.

Runs are interleaved (peer, labelyard, labelyard, peer, ...). By default a
stage of ``--repeat-runs`` runs at ``--repeat-n`` rows gives the median, and
one more stage runs the full ``--n`` (default 1,000,000) ``--runs`` times.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import time

from . import common, fixtures, peers_raw

PEER_BATCH = 10_000
TARGET_RATIO = 0.6
TARGET_RSS_MIB = 300.0


def _peer_child(path: str, n: int, conn) -> None:
    try:
        rows = peers_raw.make_rows(n, seed=42)  # before the clock, as in bench_ingest.py
        cpu0 = time.process_time()
        dt = peers_raw.ingest_raw(path, rows, PEER_BATCH)
        conn.send({"seconds": dt, "cpu_s": time.process_time() - cpu0})
    except BaseException as exc:  # report instead of hanging the parent
        conn.send({"error": repr(exc)})


def run_peer(folder: str, n: int, tag: str) -> dict:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    path = os.path.join(folder, f"raw-{tag}.db")
    proc = ctx.Process(target=_peer_child, args=(path, n, child))
    proc.start()
    result = parent.recv()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"raw peer failed: {result['error']}")
    size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return {"seconds": result["seconds"], "rows_per_s": n / result["seconds"], "cpu_s": result["cpu_s"],
            "rows_per_cpu_s": n / result["cpu_s"], "db_mib": size / 2**20}


def _write_jsonl_child(path: str, n: int) -> None:
    fixtures.write_jsonl(path, peers_raw.make_rows(n, seed=42))


def prepare(folder: str, n: int) -> tuple[str, str]:
    """The input file (written in a child, so its rows never sit in this process) and a template DB."""
    ctx = mp.get_context("fork")
    src = os.path.join(folder, f"ingest-{n}.jsonl")
    proc = ctx.Process(target=_write_jsonl_child, args=(src, n))
    proc.start()
    proc.join()
    assert proc.exitcode == 0, "writing the input file failed"
    template = os.path.join(folder, "ingest-template.db")
    if not os.path.exists(template):
        wf = fixtures.write_workflow(folder, "bench-ingest", fixtures.INGEST_WORKFLOW)
        engine = fixtures.init_db(template, fixtures.INGEST_WORKFLOW, wf)
        engine.close()
        common.checkpoint(template)
    return src, template


def run_labelyard(folder: str, src: str, template: str, n: int, tag: str, extra_args: tuple = ()) -> dict:
    db = common.copy_db(template, os.path.join(folder, f"ly-{tag}.db"))
    cmd = [*common.labelyard_command(), "ingest", src, "--db", db, "--json", *extra_args]
    r = common.run_measured(cmd, env=common.child_env())
    if r["rc"] != 0:
        raise RuntimeError(f"labelyard ingest exited {r['rc']}: {r['stderr'][-2000:]}")
    report = json.loads(r["stdout"].strip().splitlines()[-1])
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    events = conn.execute("SELECT count(*) FROM events WHERE kind = 'created'").fetchone()[0]
    conn.close()
    assert report["ingested"] == n == stored == events, (report, stored, events)
    size = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    return {"seconds": r["wall_s"], "rows_per_s": n / r["wall_s"], "peak_rss_mib": r["peak_rss_mib"],
            "ru_maxrss_mib": r["ru_maxrss_mib"], "user_s": r["user_s"], "sys_s": r["sys_s"],
            "cpu_s": r["user_s"] + r["sys_s"], "rows_per_cpu_s": n / (r["user_s"] + r["sys_s"]),
            "db_mib": size / 2**20, "routed": report["routed"]}


def run_stage(folder: str, n: int, runs: int) -> dict:
    src, template = prepare(folder, n)
    peer, ly = [], []
    for r in range(runs):
        order = ("peer", "ly") if r % 2 == 0 else ("ly", "peer")
        for side in order:
            if side == "peer":
                res = run_peer(folder, n, f"{n}-{r}")
                peer.append(res)
                common.log(f"ingest n={n:,} run {r + 1}/{runs}: raw peer {res['rows_per_s']:,.0f} rows/s "
                           f"({res['seconds']:.1f}s)")
            else:
                res = run_labelyard(folder, src, template, n, f"{n}-{r}")
                ly.append(res)
                common.log(f"ingest n={n:,} run {r + 1}/{runs}: labelyard {res['rows_per_s']:,.0f} rows/s "
                           f"({res['seconds']:.1f}s), peak RSS {res['peak_rss_mib']:.0f} MiB")
    os.remove(src)
    ratios = [a["rows_per_s"] / b["rows_per_s"] for a, b in zip(ly, peer)]
    cpu_ratios = [a["rows_per_cpu_s"] / b["rows_per_cpu_s"] for a, b in zip(ly, peer)]
    return {
        "cpu_ratio": common.median(cpu_ratios),
        "labelyard_rows_per_cpu_s": common.median([x["rows_per_cpu_s"] for x in ly]),
        "peer_rows_per_cpu_s": common.median([x["rows_per_cpu_s"] for x in peer]),
        "n": n, "runs": runs,
        "labelyard_rows_per_s": common.median([x["rows_per_s"] for x in ly]),
        "peer_rows_per_s": common.median([x["rows_per_s"] for x in peer]),
        "ratio": common.median(ratios),
        "ratios": ratios,
        "labelyard_peak_rss_mib": max(x["peak_rss_mib"] for x in ly),
        "labelyard": ly, "peer": peer,
    }


def plan(n: int, runs: int, repeat_n: int, repeat_runs: int) -> list[tuple[int, int]]:
    stages = []
    if repeat_n and repeat_runs and repeat_n != n:
        stages.append((repeat_n, repeat_runs))
    if n and runs:
        stages.append((n, runs))
    return stages


def main(args) -> dict:
    if args.quick:
        stages = [(args.quick_n, 3)]
    else:
        stages = plan(args.n, args.runs, args.repeat_n, args.repeat_runs)
    results = []
    with common.scratch_dir() as folder:
        for n, runs in stages:
            results.append(run_stage(folder, n, runs))

    metrics, ratios, targets, rows = {}, {}, [], []
    for st in results:
        key = f"n{st['n']}"
        metrics[f"{key}_labelyard_rows_per_s"] = st["labelyard_rows_per_s"]
        metrics[f"{key}_peer_raw_rows_per_s"] = st["peer_rows_per_s"]
        metrics[f"{key}_labelyard_peak_rss_mib"] = st["labelyard_peak_rss_mib"]
        metrics[f"{key}_runs"] = st["runs"]
        metrics[f"{key}_labelyard_rows_per_cpu_s"] = st["labelyard_rows_per_cpu_s"]
        metrics[f"{key}_peer_raw_rows_per_cpu_s"] = st["peer_rows_per_cpu_s"]
        ratios[f"{key}_rows_per_s"] = st["ratio"]
        ratios[f"{key}_rows_per_cpu_s"] = st["cpu_ratio"]
        targets.append(common.target(f"{key} rows/s ratio", st["ratio"], ">=", TARGET_RATIO,
                                     f"labelyard / raw executemany, median of {st['runs']}"))
        targets.append(common.target(f"{key} peak RSS MiB", st["labelyard_peak_rss_mib"], "<", TARGET_RSS_MIB,
                                     "labelyard ingest process + its routing child, sum of VmHWM"))
        rows.append([f"{st['n']:,}", st["runs"], st["labelyard_rows_per_s"], st["peer_rows_per_s"], st["ratio"],
                     st["cpu_ratio"], st["labelyard_peak_rss_mib"]])
    common.table("ingest: labelyard CLI vs raw executemany (10k rows/txn)",
                 ["rows", "runs", "labelyard rows/s", "raw rows/s", "ratio", "CPU-time ratio", "ly peak RSS MiB"],
                 rows, targets)
    detail = {"stages": results,
              "labelyard_command": common.labelyard_command(), "peer_batch": PEER_BATCH,
              "workflow": fixtures.INGEST_WORKFLOW}
    variant = ",".join(f"n={n}x{runs}" for n, runs in stages)
    return common.emit("ingest", variant, metrics, ratios, targets, detail,
                       params={k: v for k, v in vars(args).items() if k != "func"})
