"""`gold add` reads its whole input and replaces all of that input's rejects.

`gold add` deleted its file's earlier rejects only on lines 1..N of the file as it is now, so a bad
line removed from the end of the file (or every line: N = 0) stayed listed.
"""

from __future__ import annotations

import json
import pytest

WORKFLOW = """\
workflow: g
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create: [{name: all, do: {annotate: q}}]
on_quorum: [{name: ok, do: accept}]
"""
GOOD = json.dumps({"id": "G1", "data": {}, "answer": "a"})
BAD = json.dumps({"id": "G2", "data": {}, "answer": "zzz"})  # no choice


@pytest.fixture
def project(run, tmp_path):
    run.ok("init")
    (tmp_path / "g.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("apply", "g.workflow.yaml")
    return run


def rejects(run) -> list[tuple[str, int]]:
    return sorted((r["source"], r["line"]) for r in run.json("rejects", "--json"))


@pytest.mark.parametrize("rewrite", [GOOD + "\n", ""], ids=["bad-line-cut-off", "emptied"])
def test_rejects_of_lines_gone_from_the_file_go_with_them(project, tmp_path, rewrite):
    gold = tmp_path / "gold.jsonl"
    other = tmp_path / "other.jsonl"
    other.write_text("{broken\n", encoding="utf-8")
    project.ok("ingest", "other.jsonl")  # another source's reject: kept
    gold.write_text(f"{GOOD}\n{BAD}\n{BAD.replace('G2', 'G3')}\n", encoding="utf-8")
    assert project.json("gold", "add", "gold.jsonl", "--json")["rejected"] == 2
    assert rejects(project) == [(str(gold), 2), (str(gold), 3), (str(other), 1)]
    gold.write_text(rewrite, encoding="utf-8")
    assert project.json("gold", "add", "gold.jsonl", "--json")["rejected"] == 0
    assert rejects(project) == [(str(other), 1)]
