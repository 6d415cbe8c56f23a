"""Smoke test of the benchmarks: ``python -m bench all --quick`` runs and reports well-formed results.

No timing thresholds: this checks the plumbing (every bench runs, prints one
JSON line with positive ratios, finds no shared slot and no error), not the
figures. The figures come from a full run, see bench/README.md.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ["ingest", "claim", "ingest-during-claims", "startup", "rules"]


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_bench_all_quick(tmp_path):
    env = {**os.environ, "BENCH_TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("LABELYARD_NOW", None)
    env.pop("LABELYARD_DB", None)
    proc = subprocess.run([sys.executable, "-m", "bench", "all", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [line["bench"] for line in lines] == BENCHES
    for line in lines:
        for key in ("variant", "metrics", "ratios", "targets", "detail", "params", "env", "ts"):
            assert key in line, (line["bench"], key)
        assert line["params"]["quick"] is True
        assert line["ratios"], line["bench"]
        for name, value in line["ratios"].items():
            assert _positive_number(value), (line["bench"], name, value)
        for name, value in line["metrics"].items():
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (line["bench"], name, value)
        for t in line["targets"]:
            assert {"name", "value", "op", "bound", "met", "what"} <= set(t)
            assert isinstance(t["met"], bool)
    by_name = {line["bench"]: line for line in lines}
    # correctness, not speed: no slot handed out twice, nothing raised in a worker
    claim = by_name["claim"]["metrics"]
    for k in (1, 4):
        assert claim[f"k{k}_labelyard_double_claims"] == 0
        assert claim[f"k{k}_labelyard_errors"] == 0
    during = by_name["ingest-during-claims"]["metrics"]
    assert during["double_claims"] == 0 and during["errors"] == 0
    assert by_name["ingest"]["metrics"]["n2000_labelyard_rows_per_s"] > 0
    # tables go to stderr, one per bench
    assert proc.stderr.count("\n== ") >= len(BENCHES)
    assert not list(tmp_path.glob("run-*")), "scratch directories were left behind"


def _bench(tmp_path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("LABELYARD_NOW", None)
    env.pop("LABELYARD_DB", None)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_rules_bench_without_simpleeval(tmp_path):
    """A plain ``pip install .`` has no simpleeval: the rules bench skips that peer and says so in one line."""
    proc = _bench(tmp_path, "import sys; sys.modules['simpleeval'] = None\n"
                            "from bench.__main__ import main; sys.exit(main(['rules', '--quick']))")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "simpleeval is not installed" in line]
    assert len(notes) == 1 and "pip install -e '.[test]'" in notes[0] and "pip install simpleeval" in notes[0]
    [line] = [json.loads(text) for text in proc.stdout.splitlines() if text.strip()]
    assert line["bench"] == "rules" and "simpleeval" in line["detail"]["skipped"]
    assert set(line["ratios"]) == {"vs_lambda"} and _positive_number(line["ratios"]["vs_lambda"])


def test_profile_prints_one_json_line(tmp_path):
    """``profile`` prints its figures as one JSON line on stdout, as every bench does."""
    proc = _bench(tmp_path, "import sys\n"
                            "from bench.__main__ import main; sys.exit(main(['profile', 'ingest', '--n', '300']))")
    assert proc.returncode == 0, proc.stderr[-4000:]
    [line] = [json.loads(text) for text in proc.stdout.splitlines() if text.strip()]
    assert line["bench"] == "profile" and line["params"]["what"] == "ingest"
    assert _positive_number(line["metrics"]["wall_s"]) and _positive_number(line["metrics"]["rows_per_s"])
    assert "cProfile" in proc.stderr
    assert not list(tmp_path.glob("run-*")) and not list(tmp_path.glob("profile-*"))
