"""Bench 3: claims while ``labelyard ingest`` loads new tasks into the same database.

K=8 Labelyard claimers (``Engine.claim`` + ``Engine.submit``, as in bench 2)
work on a copy of the prepared database (``--tasks`` open tasks, one queue).

- **with ingest:** right after the claimers start, ``labelyard ingest`` (the
  real CLI, a subprocess) loads ``--ingest-n`` new tasks (default 200,000,
  routed by the same workflow into the same queue); the claimers stop when
  the ingest process exits. Claim throughput is over that window.
- **baseline (the peer here):** the same claimers on a fresh copy for
  ``--duration`` seconds, without the ingest.

Runs alternate (baseline, with, with, baseline, ...); the ratio is the median
of the per-pair ratios. Reported besides: claim p99/max latency during the
ingest, the fewest claims any worker got (starvation), the ingest's own
rows/s, and errors (every exception reaching a worker; SQLITE_BUSY included).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os

from . import claim, common, fixtures, peers_raw

TARGET_RATIO = 0.7


def _write_jsonl_child(path: str, n: int) -> None:
    # seed 43: fresh external ids that never collide with the fixture's (seed 42)
    fixtures.write_jsonl(path, peers_raw.make_rows(n, seed=43), seed=8)


def make_ingest(src: str, db: str, n: int):
    def during() -> dict:
        cmd = [*common.labelyard_command(), "ingest", src, "--db", db, "--json"]
        r = common.run_measured(cmd, env=common.child_env())
        if r["rc"] != 0:
            raise RuntimeError(f"labelyard ingest exited {r['rc']}: {r['stderr'][-2000:]}")
        report = json.loads(r["stdout"].strip().splitlines()[-1])
        assert report["ingested"] == n, report
        return {"ingest_s": r["wall_s"], "ingest_rows_per_s": n / r["wall_s"], "ingest_peak_rss_mib": r["peak_rss_mib"]}

    return during


def main(args) -> dict:
    if args.quick:
        k, n_tasks, ingest_n, duration, runs = 2, 3_000, 2_000, 0.3, 3
    else:
        k, n_tasks, ingest_n, duration, runs = args.k, args.tasks, args.ingest_n, args.duration, args.runs
    with common.scratch_dir() as folder:
        fixture = fixtures.build_claim_db(folder, n_tasks, k)
        src = os.path.join(folder, "during.jsonl")
        proc = mp.get_context("fork").Process(target=_write_jsonl_child, args=(src, ingest_n))
        proc.start()
        proc.join()
        assert proc.exitcode == 0
        base, during = [], []
        for r in range(runs):
            order = ("base", "during") if r % 2 == 0 else ("during", "base")
            for side in order:
                path = claim.fresh_copy(fixture, folder, f"{side}.db")
                if side == "base":
                    res = claim.run_workers("labelyard", path, k, duration)
                    base.append(res)
                    common.log(f"ingest-during-claims run {r + 1}/{runs} baseline: {res['ops_per_s']:,.0f} ops/s "
                               f"p99={res['claim_p99_ms']:.2f}ms errors={res['errors']}")
                else:
                    res = claim.run_workers("labelyard", path, k, float("inf"),
                                            during=make_ingest(src, path, ingest_n))
                    during.append(res)
                    common.log(f"ingest-during-claims run {r + 1}/{runs} with ingest: {res['ops_per_s']:,.0f} ops/s "
                               f"p99={res['claim_p99_ms']:.2f}ms max={res['claim_max_ms']:.0f}ms "
                               f"min/worker={res['per_worker_claims_min']} errors={res['errors']}; "
                               f"ingest {res['ingest_rows_per_s']:,.0f} rows/s ({res['ingest_s']:.1f}s)")
    ratio = common.median([d["ops_per_s"] / b["ops_per_s"] for d, b in zip(during, base)])
    errors = sum(x["errors"] for x in base + during)
    doubles = sum(x["double_claims"] for x in base + during)
    med = lambda xs, key: common.median([x[key] for x in xs])  # noqa: E731
    metrics = {
        "with_ingest_ops_per_s": med(during, "ops_per_s"),
        "baseline_ops_per_s": med(base, "ops_per_s"),
        "with_ingest_claim_p50_ms": med(during, "claim_p50_ms"),
        "with_ingest_claim_p99_ms": med(during, "claim_p99_ms"),
        "with_ingest_claim_max_ms": max(x["claim_max_ms"] for x in during),
        "baseline_claim_p99_ms": med(base, "claim_p99_ms"),
        "with_ingest_per_worker_claims_min": min(x["per_worker_claims_min"] for x in during),
        "ingest_rows_per_s_during_claims": med(during, "ingest_rows_per_s"),
        "ingest_s": med(during, "ingest_s"),
        "errors": errors,
        "double_claims": doubles,
    }
    ratios = {"ops_per_s": ratio,
              "claim_p99": common.median([d["claim_p99_ms"] / b["claim_p99_ms"] for d, b in zip(during, base)])}
    targets = [
        common.target("claim ops/s with ingest / without", ratio, ">=", TARGET_RATIO, f"K={k}, median of {runs}"),
        common.target("errors", errors, "==", 0, "exceptions reaching a worker, all runs"),
        common.target("shared slots", doubles, "==", 0, "tasks claimed twice, all runs"),
    ]
    rows = [["baseline", metrics["baseline_ops_per_s"], med(base, "claim_p50_ms"), metrics["baseline_claim_p99_ms"],
             max(x["claim_max_ms"] for x in base), min(x["per_worker_claims_min"] for x in base),
             sum(x["errors"] for x in base), "-"],
            ["with ingest", metrics["with_ingest_ops_per_s"], metrics["with_ingest_claim_p50_ms"],
             metrics["with_ingest_claim_p99_ms"], metrics["with_ingest_claim_max_ms"],
             metrics["with_ingest_per_worker_claims_min"], sum(x["errors"] for x in during),
             metrics["ingest_rows_per_s_during_claims"]]]
    common.table(f"ingest-during-claims: K={k} claimers, {ingest_n:,}-row labelyard ingest, median of {runs}",
                 ["claimers", "ops/s", "p50 ms", "p99 ms", "max ms", "min claims/worker", "errors", "ingest rows/s"],
                 rows, targets)
    return common.emit("ingest-during-claims", f"k={k},tasks={n_tasks},ingest_n={ingest_n},runs={runs}",
                       metrics, ratios, targets, {"baseline": base, "with_ingest": during},
                       params={"k": k, "tasks": n_tasks, "ingest_n": ingest_n, "duration": duration, "runs": runs,
                               "quick": args.quick})
