"""``worker.agreement`` judges a vote against the final label as the label type does."""

from __future__ import annotations

import json

WORKFLOW = """\
workflow: tags
labels: {type: multi_choice, choices: [x, y, z]}
queues:
  q: {roles: [annotator]}
on_create: [{name: two, do: {annotate: q, overlap: 2}}]
on_quorum: [{name: take, do: accept}]
on_worker:
  - {name: disagrees, when: worker.agreement != null and worker.agreement < 0.5, do: {flag: true}}
"""


def test_a_vote_in_another_order_agrees_with_the_final_label(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(WORKFLOW))
    for name in ("u1", "u2"):
        run.ok("workers", "add", name, "--role", "annotator")
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"id": f"T{i}", "data": {}}) + "\n" for i in range(2)))
    run.ok("ingest", "t.jsonl")
    for _ in range(2):
        first = run.json("claim", "--as", "u1", "--json")
        run.ok("submit", first["assignment"], "--as", "u1", "--value", '["x", "y"]')
        second = run.json("claim", "--as", "u2", "--json")
        run.ok("submit", second["assignment"], "--as", "u2", "--value", '["y", "x"]')
    assert {t["task"]["status"] for t in (run.json("show", f"T{i}", "--json") for i in range(2))} == {"done"}
    workers = {w["id"]: w for w in run.json("workers", "list", "--json")}
    assert not workers["u2"]["flagged"]  # ["y", "x"] is the final ["x", "y"]
