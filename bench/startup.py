"""Bench 4: start-up cost of one ``labelyard claim --json`` process.

Labelyard: ``labelyard claim --json --db DB --as W`` (the console script
beside this interpreter, not a pyenv shim) on a small database (200 open
tasks, so every run makes a real claim, exit 0). Also timed, as detail: the
same command when there is nothing to do (exit 3).

Peer: ``python3 -c "import sqlite3, json"`` (this interpreter), the floor of
any Python command that touches SQLite and prints JSON.

One warm-up run each, then ``--runs`` (15) runs of each, interleaved; the
figure is the median wall time from spawn to exit. A further run with
``PYTHONPROFILEIMPORTTIME=1`` lists the slowest imports (detail only).

The measured code is byte-compiled first, as ``pip install`` does: the peer's
``sqlite3`` and ``json`` load from the standard library's ``.pyc`` files, and
where ``PYTHONDONTWRITEBYTECODE`` is set (as on the peers' machine) Labelyard's
own modules would otherwise be compiled from source on every start. The
claim as found before compiling is kept as detail (``as_found``).
"""

from __future__ import annotations

import json
import os
import sys

from . import common, fixtures

TARGET_RATIO = 4.0


def build_small_db(folder: str, n: int, name: str) -> str:
    from router.ingest import read_file

    from . import peers_raw

    path = os.path.join(folder, f"{name}.db")
    wf = fixtures.write_workflow(folder, "bench-claim", fixtures.CLAIM_WORKFLOW)
    engine = fixtures.init_db(path, fixtures.CLAIM_WORKFLOW, wf, annotators=1)
    if n:
        src = os.path.join(folder, f"{name}.jsonl")
        fixtures.write_jsonl(src, peers_raw.make_rows(n, seed=42))
        engine.ingest(read_file(src, engine.workflow.labels.choices), src)
    engine.close()
    common.checkpoint(path)
    return path


def slowest_imports(cmd: list[str], env: dict, top: int = 12) -> list[dict]:
    r = common.run_measured(cmd, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    rows = []
    for line in r["stderr"].splitlines():
        parts = line[len("import time:"):].split("|") if line.startswith("import time:") else []
        if len(parts) != 3:
            continue
        try:
            self_us, cum_us = int(parts[0]), int(parts[1])
        except ValueError:
            continue  # the header line
        name = parts[2][1:] if parts[2].startswith(" ") else parts[2]
        rows.append({"module": name.strip(), "self_ms": self_us / 1000, "cumulative_ms": cum_us / 1000,
                     "top_level": not name.startswith(" ")})
    tops = [r_ for r_ in rows if r_["top_level"]]
    tops.sort(key=lambda r_: -r_["cumulative_ms"])
    for r_ in tops:
        del r_["top_level"]
    return tops[:top]


def _timed(cmds: dict[str, tuple[list[str], int]], env: dict, runs: int) -> dict[str, list[float]]:
    """Wall times of each command, one warm-up then ``runs`` rounds, interleaved."""
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for r in range(runs + 1):  # run 0 is the warm-up
        names = list(cmds) if r % 2 == 0 else list(reversed(cmds))
        for name in names:
            cmd, want = cmds[name]
            res = common.run_measured(cmd, env=env)
            if res["rc"] != want:
                raise RuntimeError(f"{name}: exit {res['rc']} (wanted {want}): {res['stderr'][-1000:]}")
            if name == "labelyard":
                view = json.loads(res["stdout"])
                assert view["assignment"] and view["task"], view
            if r:
                times[name].append(res["wall_s"])
    return times


def _packages() -> list[str]:
    root = common.code_root()
    return [os.path.join(root, p) for p in ("router", "rules", "plugins", "tui") if os.path.isdir(os.path.join(root, p))]


def compiled_already() -> bool:
    """Whether the measured code already has ``.pyc`` files for its own modules."""
    import importlib.util

    source = os.path.join(common.code_root(), "router", "cli.py")
    return os.path.exists(importlib.util.cache_from_source(source))


def byte_compile() -> None:
    """Compile the measured packages to ``__pycache__``, as ``pip install`` does."""
    import compileall

    for folder in _packages():
        if not compileall.compile_dir(folder, quiet=1):
            raise RuntimeError(f"byte-compiling {folder} failed")


def main(args) -> dict:
    runs = 3 if args.quick else args.runs
    with common.scratch_dir() as folder:
        db = build_small_db(folder, max(200, runs + 10), "small")
        empty = build_small_db(folder, 0, "empty")
        env = common.child_env(LABELYARD_WORKER=fixtures.worker_name(0))
        ly = [*common.labelyard_command(), "claim", "--json", "--db", db, "--as", fixtures.worker_name(0)]
        ly_none = [*common.labelyard_command(), "claim", "--json", "--db", empty, "--as", fixtures.worker_name(0)]
        peer = [sys.executable, "-c", "import sqlite3, json"]
        found = _timed({"peer": (peer, 0), "labelyard": (ly, 0)}, env, max(3, runs // 3))
        found["had_bytecode"] = compiled_already()
        byte_compile()
        cmds = {"peer": (peer, 0), "labelyard": (ly, 0), "labelyard_nothing": (ly_none, 3)}
        times = _timed(cmds, env, runs)
        imports = slowest_imports(ly, env)
    med = {k: common.median(v) * 1000 for k, v in times.items()}
    as_found = {"labelyard_claim_ms": common.median(found["labelyard"]) * 1000,
                "python_import_sqlite3_json_ms": common.median(found["peer"]) * 1000,
                "had_bytecode": found["had_bytecode"]}
    as_found["ratio"] = as_found["labelyard_claim_ms"] / as_found["python_import_sqlite3_json_ms"]
    ratio = med["labelyard"] / med["peer"]
    metrics = {"labelyard_claim_ms": med["labelyard"], "labelyard_claim_nothing_ms": med["labelyard_nothing"],
               "python_import_sqlite3_json_ms": med["peer"],
               "labelyard_claim_min_ms": min(times["labelyard"]) * 1000, "python_min_ms": min(times["peer"]) * 1000,
               "labelyard_claim_overhead_ms": med["labelyard"] - med["peer"]}
    ratios = {"claim_process": ratio, "claim_nothing_process": med["labelyard_nothing"] / med["peer"]}
    targets = [common.target("labelyard claim process / python -c 'import sqlite3, json'", ratio, "<=", TARGET_RATIO,
                             f"median of {runs}, interleaved")]
    rows = [["python3 -c 'import sqlite3, json'", med["peer"], 1.0],
            ["labelyard claim --json (a claim, exit 0)", med["labelyard"], ratio],
            ["labelyard claim --json (no work, exit 3)", med["labelyard_nothing"], ratios["claim_nothing_process"]]]
    common.table(f"startup: one process, median of {runs} (ms)", ["command", "ms", "ratio"], rows, targets)
    return common.emit("startup", f"runs={runs}", metrics, ratios, targets,
                       {"runs_ms": {k: [round(t * 1000, 2) for t in v] for k, v in times.items()},
                        "as_found": as_found, "code_root": common.code_root(),
                        "commands": {k: v[0] for k, v in cmds.items()}, "slowest_imports": imports},
                       params={"runs": runs, "quick": args.quick})
