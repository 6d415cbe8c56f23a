"""``labelyard status`` and the TUI's counts agree on gold questions (counted apart from tasks and queues)."""

from __future__ import annotations

import json

from router.queries import Queries

GOLD_WORKFLOW = """\
workflow: goldy
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create: [{name: all, do: {annotate: q, overlap: 1}}]
quality: {gold: {rate: 1.0}}
"""


def test_status_counts_gold_apart_and_agrees_with_the_dashboard(run):
    run.ok("init")
    (run.folder / "g.workflow.yaml").write_text(GOLD_WORKFLOW, encoding="utf-8")
    run.ok("apply", "g.workflow.yaml")
    (run.folder / "gold.jsonl").write_text(
        "".join(json.dumps({"id": f"G{i}", "data": {"n": i}, "answer": "a"}) + "\n" for i in (1, 2)), encoding="utf-8")
    run.ok("gold", "add", "gold.jsonl")
    (run.folder / "t.jsonl").write_text(json.dumps({"id": "T1", "data": {}}) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    for name in ("a", "b"):
        run.ok("workers", "add", name, "--role", "annotator")
        assert run.json("claim", "--as", name, "--json")["external_id"].startswith("G")

    status = run.json("status", "--json")
    assert (status["tasks"], status["total"], status["gold"]) == (
        {"open": 1, "done": 0, "held": 0, "invalid": 0}, 1, 2)
    assert status["queues"]["q"] == {"waiting": 1, "active": 0, "open": 1, "eligible_workers": 2}
    text = run.ok("status").stdout
    assert "open 1" in text and "gold questions: 2" in text

    queries = Queries.open(str(run.db))
    try:
        board = queries.dashboard()
    finally:
        queries.close()
    assert board["counts"]["tasks"] == status["tasks"] and board["counts"]["gold"] == status["gold"]
    q = next(q for q in board["queues"] if q["name"] == "q")
    counts = ("waiting", "active", "open")
    assert {k: q[k] for k in counts} == {k: status["queues"]["q"][k] for k in counts}
