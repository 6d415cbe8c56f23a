"""``python -m bench {ingest,claim,ingest-during-claims,startup,rules,tui,profile,all} [--quick]``.

Each bench prints one JSON line on stdout and a table on stderr; see
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import time


def _add_ingest(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=1_000_000, help="rows of the full-size stage (default 1,000,000)")
    p.add_argument("--runs", type=int, default=1, help="runs per side of the full-size stage (default 1)")
    p.add_argument("--repeat-n", type=int, default=200_000,
                   help="rows of the repeated stage that gives the median (default 200,000; 0 = none)")
    p.add_argument("--repeat-runs", type=int, default=3, help="runs per side of the repeated stage (default 3)")
    p.add_argument("--quick-n", type=int, default=2_000, help=argparse.SUPPRESS)


def _add_claim(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ks", default="1,8,64", help="worker process counts (default 1,8,64)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per K per run per side (default 5)")
    p.add_argument("--runs", type=int, default=3, help="runs per K per side (default 3)")
    p.add_argument("--tasks", type=int, default=200_000, help="open tasks in the prepared database (default 200,000)")
    p.add_argument("--floor-ks", default="1",
                   help="K values at which the audited floor (bench/floor.py) runs too (default 1; '' for none)")


def _add_during(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=8, help="claimer processes (default 8)")
    p.add_argument("--tasks", type=int, default=200_000, help="open tasks before the ingest (default 200,000)")
    p.add_argument("--ingest-n", type=int, default=200_000, help="rows the ingest loads (default 200,000)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of each baseline run (default 5)")
    p.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")


def _add_startup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")


def _add_rules(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=20_000, help="decisions per run (default 20,000)")
    p.add_argument("--runs", type=int, default=5, help="interleaved runs (default 5)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", metavar="REF", default=None,
                    help="measure the router/rules code of git REF (e.g. HEAD, via git archive into the temp dir) "
                         "instead of the working tree; for runs while the tree is being edited")
    sub = ap.add_subparsers(dest="bench", required=True)
    for name, adder, help_ in (
        ("ingest", _add_ingest, "labelyard ingest (CLI) vs raw executemany"),
        ("claim", _add_claim, "K processes claim+submit via Engine vs raw SQL loop"),
        ("ingest-during-claims", _add_during, "K=8 claimers with and without a concurrent labelyard ingest"),
        ("startup", _add_startup, "labelyard claim --json process vs python -c 'import sqlite3, json'"),
        ("rules", _add_rules, "12-rule workflow decisions vs plain lambdas and simpleeval"),
    ):
        p = sub.add_parser(name, help=help_)
        adder(p)
        p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    p = sub.add_parser("tui", help="TUI first paint, task pages and refresh under 8 claimers at 1M tasks")
    p.add_argument("--n", type=int, default=1_000_000, help="tasks in the generated database (default 1,000,000)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    p = sub.add_parser("all", help="every bench in turn (budget: < 10 min on 2 cores)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (< 30 s)")
    p.add_argument("--ingest-n", type=int, default=0,
                   help="also run the ingest at this size once per side (default: none; 1,000,000 takes ~6 min)")
    p = sub.add_parser("profile", help="cProfile one labelyard ingest, or one claim worker")
    p.add_argument("what", choices=("ingest", "claim"))
    p.add_argument("--n", type=int, default=200_000, help="ingest rows / claim fixture tasks")
    p.add_argument("--seconds", type=float, default=10.0, help="claim: seconds to profile")
    p.add_argument("--k", type=int, default=1, help="claim: worker processes (only worker 0 is profiled)")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--out", default=None, help="keep the .prof file here")
    p.add_argument("--ablate", action="store_true",
                   help="ingest: rerun with one cost removed at a time (triggers, trace rendering, batch size)")
    return ap


def _defaults(adder, **overrides) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    adder(p)
    ns = p.parse_args([])
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import common

    if args.snapshot:
        common.log(f"measuring git {args.snapshot}: {common.use_snapshot(args.snapshot)}")
    from . import claim, ingest, ingest_during_claims, startup

    t0 = time.monotonic()
    common.mark_start()
    if args.bench == "ingest":
        ingest.main(args)
    elif args.bench == "claim":
        claim.main(args)
    elif args.bench == "ingest-during-claims":
        ingest_during_claims.main(args)
    elif args.bench == "startup":
        startup.main(args)
    elif args.bench == "rules":
        from . import rules

        rules.main(args)
    elif args.bench == "tui":
        from . import tui

        tui.main(args)
    elif args.bench == "profile":
        from . import profile

        profile.main(args)
    else:  # all
        from . import fixtures

        quick = args.quick
        # The suite's budget is < 10 min on 2 cores. Labelyard ingests ~4-8k rows/s here, so the
        # ingest bench runs 3 x 100k per side (the 1M stage only with --ingest-n, or as
        # `python -m bench ingest`); claim runs 4 s per K per side; the claim benches share one
        # prepared database. ingest-during-claims (3 x a 200k ingest under 8 claimers) dominates.
        with common.scratch_dir("fixtures-") as shared:
            fixtures.SHARED_DIR = shared
            ingest.main(_defaults(_add_ingest, quick=quick, n=args.ingest_n, runs=1 if args.ingest_n else 0,
                                  repeat_n=100_000))
            common.mark_start()
            claim.main(_defaults(_add_claim, quick=quick, duration=4.0))
            common.mark_start()
            ingest_during_claims.main(_defaults(_add_during, quick=quick))
            common.mark_start()
            startup.main(_defaults(_add_startup, quick=quick))
            common.mark_start()
            from . import rules

            rules.main(_defaults(_add_rules, quick=quick))
            fixtures.SHARED_DIR = None
    common.log(f"bench {args.bench}{' --quick' if getattr(args, 'quick', False) else ''} took "
               f"{time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
