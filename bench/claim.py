"""Bench 2: K annotator processes claiming and submitting through Labelyard's Python API.

Labelyard side: K forked processes, each with its own ``Engine`` (its own
connection), loop ``Engine.claim(worker)`` then ``Engine.submit(assignment,
worker, label=...)`` for ``--duration`` seconds on a copy of a prepared
database of ``--tasks`` open tasks in one queue (overlap 1, every worker an
eligible annotator; the workflow accepts a single vote, so a submit settles
its task). Claim latency is the wall time of the ``Engine.claim`` call
(waiting for the write lock included).

Peer: ``bench_claim.py``'s raw-SQL worker loop (``peers_raw.claim_worker_loop``:
``BEGIN IMMEDIATE; UPDATE … RETURNING; COMMIT`` then ``INSERT`` annotation +
``UPDATE`` done) at the same K, on the equivalent fixture: the same number of
ready tasks in one queue, random priority, ~200-byte payload.

Runs interleave peer and Labelyard at each K (order alternating per run);
figures are medians over ``--runs`` runs; ratios are medians of the per-run
(back-to-back) ratios. After every run the bench checks that no task was
claimed twice (the claim ids, and the database: one assignment and one
annotation per task at most, no negative free slots, counts match) and counts
every exception that reached a worker.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import sqlite3
import threading
import time
from array import array

from . import common, fixtures, floor, peers_raw

TARGET_OPS_RATIO = 0.8
TARGET_P99_RATIO = 2.0
BUSY_MS = 5000
PEER_QUEUES = ("q00",)


# ---------------------------------------------------------------------------- labelyard worker


def labelyard_worker(idx: int, path: str, duration: float, barrier, out_q, stop_at=None) -> None:
    try:
        out_q.put(_labelyard_worker(idx, path, duration, barrier, stop_at))
    except BaseException as exc:  # report instead of leaving the parent waiting
        barrier.abort()
        out_q.put({"idx": idx, "error": repr(exc)})


def _labelyard_worker(idx: int, path: str, duration: float, barrier, stop_at) -> dict:
    from router.engine import Engine
    from router.errors import NothingToDo

    engine = Engine.open(path)
    choices = engine.workflow.labels.choices  # compiles the workflow before the clock
    name = fixtures.worker_name(idx)
    task_ids = array("q")
    claim_lat = array("d")
    submit_lat = array("d")
    errors: collections.Counter = collections.Counter()
    error_samples: list[str] = []
    empty = 0
    perf = time.perf_counter
    barrier.wait()
    t_start = time.monotonic()
    cpu0 = time.process_time()
    end = t_start + duration
    i = 0

    def failed(where: str, exc: BaseException) -> None:
        kind = f"{where}:{type(exc).__name__}"
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            kind += ":busy"
        errors[kind] += 1
        if len(error_samples) < 5:
            error_samples.append(f"{kind}: {exc}")

    while True:
        now = time.monotonic()
        if now >= end or (stop_at is not None and now >= stop_at.value):
            break
        t0 = perf()
        try:
            view = engine.claim(name)
        except NothingToDo:
            empty += 1
            time.sleep(0.001)
            continue
        except Exception as exc:  # noqa: BLE001 - every error that reaches a worker is counted
            failed("claim", exc)
            continue
        claim_lat.append(perf() - t0)
        task_ids.append(view["task"])
        i += 1
        t1 = perf()
        try:
            engine.submit(view["assignment"], name, label=choices[i % len(choices)])
        except Exception as exc:  # noqa: BLE001
            failed("submit", exc)
            continue
        submit_lat.append(perf() - t1)
    elapsed = time.monotonic() - t_start
    cpu = time.process_time() - cpu0
    engine.close()
    return {"idx": idx, "ids": task_ids.tobytes(), "claim_lat": claim_lat.tobytes(),
            "submit_lat": submit_lat.tobytes(), "errors": dict(errors), "error_samples": error_samples,
            "empty": empty, "elapsed": elapsed, "cpu_s": cpu}


def floor_worker(idx: int, path: str, duration: float, barrier, out_q, stop_at=None) -> None:
    try:
        out_q.put(floor.floor_worker_loop(idx, path, duration, BUSY_MS, barrier, stop_at))
    except BaseException as exc:
        barrier.abort()
        out_q.put({"idx": idx, "error": repr(exc)})


def peer_worker(idx: int, path: str, duration: float, barrier, out_q) -> None:
    try:
        cpu0 = time.process_time()  # includes opening the connection (~1 ms); the loop is verbatim
        r = peers_raw.claim_worker_loop(idx, path, duration, BUSY_MS, barrier, PEER_QUEUES)
        r["cpu_s"] = time.process_time() - cpu0
        r["errors"] = {"claim:busy": r["claim_busy"]} if r["claim_busy"] else {}
        if r["submit_busy"]:
            r["errors"]["submit:busy"] = r["submit_busy"]
        out_q.put(r)
    except BaseException as exc:
        barrier.abort()
        out_q.put({"idx": idx, "error": repr(exc)})


# ---------------------------------------------------------------------------- one run


def run_workers(side: str, path: str, k: int, duration: float, *, during=None) -> dict:
    """Run K workers of ``side`` ("labelyard" or "peer") on ``path``; returns the figures.

    ``during()``: optional; called in a thread right after the barrier; the
    workers stop when it returns, and its dict joins the figures (the
    ingest-during-claims bench).
    """
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(k + 1)
    out_q = ctx.Queue()
    stop_at = ctx.RawValue("d", float("inf"))
    if side in ("labelyard", "floor"):
        target = labelyard_worker if side == "labelyard" else floor_worker
        procs = [ctx.Process(target=target, args=(i, path, duration, barrier, out_q, stop_at)) for i in range(k)]
    else:
        procs = [ctx.Process(target=peer_worker, args=(i, path, duration, barrier, out_q)) for i in range(k)]
    for p in procs:
        p.start()
    extra: dict = {}
    during_result: dict = {}

    def run_during() -> None:
        try:
            during_result.update(during())
        except BaseException as exc:  # noqa: BLE001 - reported below
            during_result["during_error"] = repr(exc)
        finally:
            stop_at.value = time.monotonic()

    thread = threading.Thread(target=run_during) if during is not None else None
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass  # a worker failed during setup; its error is collected below
    if thread is not None:
        thread.start()
    t0 = time.monotonic()
    results = [out_q.get(timeout=(duration if duration != float("inf") else 3600) + 300) for _ in procs]
    wall = time.monotonic() - t0
    for p in procs:
        p.join()
    if thread is not None:
        thread.join()
        extra = during_result
        assert "during_error" not in extra, extra["during_error"]
    failures = [r for r in results if "error" in r]
    assert not failures, f"{side} K={k}: worker failures: {failures[:3]}"
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]

    ids, claim_lat, submit_lat = array("q"), array("d"), array("d")
    per_worker = []
    errors: collections.Counter = collections.Counter()
    samples: list[str] = []
    for r in results:
        a = array("q"); a.frombytes(r["ids"]); ids.extend(a)  # noqa: E702
        per_worker.append(len(a))
        b = array("d"); b.frombytes(r["claim_lat"]); claim_lat.extend(b)  # noqa: E702
        c = array("d"); c.frombytes(r["submit_lat"]); submit_lat.extend(c)  # noqa: E702
        errors.update(r["errors"])
        samples += r.get("error_samples", [])
    claims, submits = len(ids), len(submit_lat)
    elapsed = max(r["elapsed"] for r in results)
    if side in ("labelyard", "floor"):
        check = verify_labelyard(path, ids, submits)
    else:
        check = peers_raw.verify_claims(path, ids, submits)
    ms = 1000.0
    return {
        "side": side, "k": k, "claims": claims, "submits": submits,
        "elapsed_s": elapsed, "wall_s": wall,
        "ops_per_s": (claims + submits) / elapsed,
        "cpu_us_per_op": 1e6 * sum(r["cpu_s"] for r in results) / max(claims + submits, 1),
        "claims_per_s": claims / elapsed,
        "claim_p50_ms": common.percentile(claim_lat, 50) * ms if claims else float("nan"),
        "claim_p99_ms": common.percentile(claim_lat, 99) * ms if claims else float("nan"),
        "claim_max_ms": max(claim_lat) * ms if claims else float("nan"),
        "submit_p50_ms": common.percentile(submit_lat, 50) * ms if submits else float("nan"),
        "submit_p99_ms": common.percentile(submit_lat, 99) * ms if submits else float("nan"),
        "errors": sum(errors.values()), "error_kinds": dict(errors), "error_samples": samples[:5],
        "empty_polls": sum(r["empty"] for r in results),
        "per_worker_claims_min": min(per_worker), "per_worker_claims_max": max(per_worker),
        "double_claims": check["double_claims"], **{k_: v for k_, v in check.items() if k_ != "double_claims"},
        **extra,
    }


def verify_labelyard(path: str, ids: array, submits: int) -> dict:
    """No slot shared: no task id returned twice, one assignment and annotation per task, counts agree."""
    claims = len(ids)
    dup_ids = claims - len(set(ids))
    conn = sqlite3.connect(path, timeout=60)
    try:
        q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        dup_assign = q("SELECT count(*) FROM (SELECT task_id FROM assignments GROUP BY task_id HAVING count(*) > 1)")
        dup_ann = q("SELECT count(*) FROM (SELECT task_id FROM annotations GROUP BY task_id HAVING count(*) > 1)")
        negative = q("SELECT count(*) FROM tasks WHERE free_slots < 0")
        n_assign = q("SELECT count(*) FROM assignments")
        n_ann = q("SELECT count(*) FROM annotations")
        n_done = q("SELECT count(*) FROM tasks WHERE status = 'done'")
        n_active = q("SELECT count(*) FROM assignments WHERE status = 'active'")
    finally:
        conn.close()
    problems = []
    if dup_ids or dup_assign or dup_ann or negative:
        problems.append(f"shared slots: {dup_ids} ids twice, {dup_assign} tasks with 2+ assignments, "
                        f"{dup_ann} with 2+ annotations, {negative} negative free_slots")
    if n_assign != claims or n_ann != submits or n_done != submits or n_active != claims - submits:
        problems.append(f"counts: assignments {n_assign} vs claims {claims}, annotations {n_ann} / done {n_done} "
                        f"vs submits {submits}, active {n_active}")
    assert not problems, "; ".join(problems)
    return {"double_claims": dup_ids + dup_assign, "double_annotations": dup_ann}


# ---------------------------------------------------------------------------- the bench


def prepare_fixtures(folder: str, n_tasks: int, workers: int) -> tuple[str, str]:
    """(labelyard fixture, peer fixture), both checkpointed for copying."""
    t0 = time.perf_counter()
    ly = fixtures.build_claim_db(folder, n_tasks, workers)
    t1 = time.perf_counter()
    peer = os.path.join(folder, f"peer-claim-{n_tasks}.db")
    peers_raw.build_claim_fixture(peer, n_tasks, queue=PEER_QUEUES[0])
    common.log(f"claim fixtures: labelyard {n_tasks:,} tasks in {t1 - t0:.1f}s, peer in {time.perf_counter() - t1:.1f}s")
    return ly, peer


def fresh_copy(src: str, folder: str, name: str) -> str:
    dst = os.path.join(folder, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(dst + suffix):
            os.remove(dst + suffix)
    return common.copy_db(src, dst)


def summarise(per_run: list[dict], key: str) -> float:
    return common.median([r[key] for r in per_run])


def main(args) -> dict:
    if args.quick:
        ks, duration, runs, n_tasks = [1, 4], 0.3, 3, 3_000
    else:
        ks = [int(x) for x in args.ks.split(",") if x]
        duration, runs, n_tasks = args.duration, args.runs, args.tasks
    floor_ks = [int(x) for x in (getattr(args, "floor_ks", "1") or "").split(",") if x.strip()]
    with common.scratch_dir() as folder:
        ly_fix, peer_fix = prepare_fixtures(folder, n_tasks, max(ks))
        per_k: dict[int, dict[str, list]] = {k: {"labelyard": [], "peer": [], "floor": []} for k in ks}
        for r in range(runs):
            for k in ks:
                order = ("peer", "labelyard") if (r + ks.index(k)) % 2 == 0 else ("labelyard", "peer")
                if k in floor_ks:
                    order = (*order, "floor")
                for side in order:
                    path = fresh_copy(peer_fix if side == "peer" else ly_fix, folder, f"{side}.db")
                    res = run_workers(side, path, k, duration)
                    per_k[k][side].append(res)
                    common.log(f"claim run {r + 1}/{runs} K={k:>2} {side:<9}: {res['ops_per_s']:>8,.0f} ops/s  "
                               f"claim p50={res['claim_p50_ms']:.3f}ms p99={res['claim_p99_ms']:.2f}ms  "
                               f"errors={res['errors']} double={res['double_claims']}")
    metrics, ratios, targets, rows = {}, {}, [], []
    detail: dict = {"per_k": {}}
    for k in ks:
        ly, peer = per_k[k]["labelyard"], per_k[k]["peer"]
        ops_ratio = common.median([a["ops_per_s"] / b["ops_per_s"] for a, b in zip(ly, peer)])
        p99_ratio = common.median([a["claim_p99_ms"] / b["claim_p99_ms"] for a, b in zip(ly, peer)])
        p50_ratio = common.median([a["claim_p50_ms"] / b["claim_p50_ms"] for a, b in zip(ly, peer)])
        errors = sum(x["errors"] for x in ly)
        doubles = sum(x["double_claims"] for x in ly)
        m = {
            f"k{k}_labelyard_ops_per_s": summarise(ly, "ops_per_s"),
            f"k{k}_peer_ops_per_s": summarise(peer, "ops_per_s"),
            f"k{k}_labelyard_claim_p50_ms": summarise(ly, "claim_p50_ms"),
            f"k{k}_peer_claim_p50_ms": summarise(peer, "claim_p50_ms"),
            f"k{k}_labelyard_claim_p99_ms": summarise(ly, "claim_p99_ms"),
            f"k{k}_peer_claim_p99_ms": summarise(peer, "claim_p99_ms"),
            f"k{k}_labelyard_claim_max_ms": max(x["claim_max_ms"] for x in ly),
            f"k{k}_labelyard_errors": errors,
            f"k{k}_peer_busy_errors": sum(x["errors"] for x in peer),
            f"k{k}_labelyard_double_claims": doubles,
            f"k{k}_labelyard_per_worker_claims_min": min(x["per_worker_claims_min"] for x in ly),
            f"k{k}_peer_per_worker_claims_min": min(x["per_worker_claims_min"] for x in peer),
            f"k{k}_labelyard_cpu_us_per_op": summarise(ly, "cpu_us_per_op"),
            f"k{k}_peer_cpu_us_per_op": summarise(peer, "cpu_us_per_op"),
        }
        metrics.update(m)
        ratios[f"k{k}_ops_per_s"] = ops_ratio
        ratios[f"k{k}_claim_p99"] = p99_ratio
        ratios[f"k{k}_claim_p50"] = p50_ratio
        ratios[f"k{k}_cpu_per_op"] = common.median([a["cpu_us_per_op"] / b["cpu_us_per_op"] for a, b in zip(ly, peer)])
        targets += [
            common.target(f"K={k} ops/s ratio", ops_ratio, ">=", TARGET_OPS_RATIO, "labelyard / raw loop"),
            common.target(f"K={k} claim p99 ratio", p99_ratio, "<=", TARGET_P99_RATIO, "labelyard / raw loop"),
            common.target(f"K={k} shared slots", doubles, "==", 0, "tasks claimed twice, all runs"),
            common.target(f"K={k} errors", errors, "==", 0, "exceptions reaching a labelyard worker, all runs"),
        ]
        rows.append([k, m[f"k{k}_labelyard_ops_per_s"], m[f"k{k}_peer_ops_per_s"], ops_ratio,
                     m[f"k{k}_labelyard_claim_p50_ms"], m[f"k{k}_peer_claim_p50_ms"],
                     m[f"k{k}_labelyard_claim_p99_ms"], m[f"k{k}_peer_claim_p99_ms"], p99_ratio, errors, doubles])
        detail["per_k"][str(k)] = {"labelyard": ly, "peer": peer}
        fl = per_k[k]["floor"]
        if fl:
            metrics[f"k{k}_floor_ops_per_s"] = summarise(fl, "ops_per_s")
            metrics[f"k{k}_floor_claim_p99_ms"] = summarise(fl, "claim_p99_ms")
            ratios[f"k{k}_floor_ops_per_s"] = common.median(
                [a["ops_per_s"] / b["ops_per_s"] for a, b in zip(fl, peer)])
            ratios[f"k{k}_labelyard_vs_floor_ops_per_s"] = common.median(
                [a["ops_per_s"] / b["ops_per_s"] for a, b in zip(ly, fl)])
            ratios[f"k{k}_floor_claim_p99"] = common.median(
                [a["claim_p99_ms"] / b["claim_p99_ms"] for a, b in zip(fl, peer)])
            detail["per_k"][str(k)]["floor"] = fl
            common.log(f"K={k} audited floor (bench/floor.py): {metrics[f'k{k}_floor_ops_per_s']:,.0f} ops/s = "
                       f"{ratios[f'k{k}_floor_ops_per_s']:.3f}x the raw loop; Labelyard = "
                       f"{ratios[f'k{k}_labelyard_vs_floor_ops_per_s']:.3f}x the floor; floor claim p99 "
                       f"{ratios[f'k{k}_floor_claim_p99']:.2f}x raw")
    common.table(f"claim+submit: Engine API vs raw SQL loop ({n_tasks:,} tasks, {duration:g}s per run, median of {runs})",
                 ["K", "ly ops/s", "raw ops/s", "ratio", "ly p50 ms", "raw p50 ms", "ly p99 ms", "raw p99 ms",
                  "p99 ratio", "ly errors", "shared"], rows, targets)
    return common.emit("claim", f"tasks={n_tasks},ks={','.join(map(str, ks))},duration={duration:g},runs={runs}",
                       metrics, ratios, targets, detail,
                       params={"ks": ks, "duration": duration, "runs": runs, "tasks": n_tasks, "quick": args.quick})
