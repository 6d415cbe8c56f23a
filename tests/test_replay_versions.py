"""`replay` and `explain` know which workflow version took each decision.

A task keeps the version that created it; a version applied while it was open took its later
decisions. `replay` read those decisions with the creation version's rules: the active
workflow reported a difference it did not have, and a candidate that differed was called
unchanged. `explain` said the task was "routed by" its creation version.
"""

from __future__ import annotations

V1 = """\
workflow: ver
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
  experts: {roles: [expert]}
on_create:
  - name: default
    do: {annotate: triage, overlap: 2}
on_quorum:
  - name: unanimous
    when: votes.unanimous
    do: accept
  - name: split
    do: {review: senior}
on_review:
  - name: approved
    do: {escalate: experts}
"""
V2 = V1.replace("do: {escalate: experts}", "do: accept")


def test_decisions_under_a_later_version_are_read_with_its_rules(run, tmp_path):
    (tmp_path / "v1.workflow.yaml").write_text(V1, encoding="utf-8")
    (tmp_path / "v2.workflow.yaml").write_text(V2, encoding="utf-8")
    (tmp_path / "t.jsonl").write_text('{"id": "X1", "data": {}}\n', encoding="utf-8")
    run.ok("init")
    run.ok("apply", "v1.workflow.yaml")
    run.ok("ingest", "t.jsonl")
    for name, role in (("ann1", "annotator"), ("ann2", "annotator"), ("sen1", "senior")):
        run.ok("workers", "add", name, "--role", role)
    for name, label in (("ann1", "a"), ("ann2", "b")):
        claim = run.json("claim", "--as", name, "--json")
        run.ok("submit", claim["assignment"], "--as", name, "--label", label)
    run.ok("apply", "v2.workflow.yaml")  # X1 is in review: v2 takes its review decision
    claim = run.json("claim", "--as", "sen1", "--json")
    run.ok("submit", claim["assignment"], "--as", "sen1", "--approve", "--label", "a")

    same = run.json("replay", "v2.workflow.yaml", "--json")
    assert (same["changed"], same["unchanged"]) == (0, 3), same
    older = run.json("replay", "v1.workflow.yaml", "--json")
    assert (older["changed"], older["unchanged"]) == (1, 2), older

    explained = run.ok("explain", "X1").stdout.splitlines()
    assert explained[1] == "created under workflow ver v1; later decisions under v2"
    assert any(line.strip().startswith("on_review: rule `approved` → accept") and line.endswith("(workflow v2)")
               for line in explained), explained
