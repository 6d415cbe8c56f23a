"""Label Studio exports: prior votes the workflow cannot take are reported, a worker's latest
annotation is the vote, and an export nested too deeply is one reject.

(Named with the CSV input tests: both are files other tools write.)
"""

from __future__ import annotations

import json

import pytest

WORKFLOW = """\
workflow: t
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q, overlap: 3}}
on_quorum: [{name: acc, do: accept}]
"""


@pytest.fixture
def project(run, tmp_path):
    run.ok("init")
    (tmp_path / "t.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("apply", "t.workflow.yaml")
    return run


def annotation(ident: int, who: str, choice: str, **extra) -> dict:
    return {"id": ident, "completed_by": {"id": 7, "email": who}, **extra,
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]}


def votes(run, ident: str) -> list[tuple[str, str]]:
    return [(a["worker"], a["label"]) for a in run.json("show", ident, "--json")["annotations"]]


def test_a_vote_outside_the_choices_is_reported_not_dropped_silently(project, tmp_path):
    tasks = [{"id": 1, "data": {"text": "x"}, "annotations": [
        annotation(11, "ann@x", "c"), annotation(12, "bob@x", "a"), annotation(13, "cy@x", "d")]},
             {"id": 2, "data": {"text": "y"}, "annotations": [annotation(21, "ann@x", "b")]}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks), encoding="utf-8")
    proc = project.ok("ingest", "labelstudio:ls.json")
    assert proc.stdout.splitlines()[0] == "ingested 2, duplicates 0, rejected 1, prior votes 2"
    assert votes(project, "1") == [("labelstudio:bob@x", "a")]  # the task went in with the vote it could take
    [reject] = project.json("rejects", "--json")
    assert (reject["line"], reject["reason"]) == (
        1, 'task 1: votes left out (the task went in): annotation 11 by labelstudio:ann@x: '
           'label "c" is not one of a, b; annotation 13 by labelstudio:cy@x: label "d" is not one of a, b')


LATER, EARLIER = "2024-05-02T10:00:00.000000Z", "2024-05-01T10:00:00.000000Z"


@pytest.mark.parametrize("made", [
    [("a", {"updated_at": EARLIER}), ("b", {"updated_at": LATER})],
    [("b", {"updated_at": LATER}), ("a", {"updated_at": EARLIER})],  # listed first, but made later
    [("b", {"created_at": "2024-05-02T10:00:00Z"}), ("a", {"created_at": "2024-05-01T10:00:00+00:00"})],
], ids=["later-last", "later-first", "created-at"])
def test_the_latest_annotation_of_a_worker_is_their_vote(project, tmp_path, made):
    annotations = [annotation(11 + n, "ann@x", choice, **times) for n, (choice, times) in enumerate(made)]
    (tmp_path / "ls.json").write_text(json.dumps([{"id": 1, "data": {"text": "x"}, "annotations": annotations}]),
                                      encoding="utf-8")
    result = project.json("ingest", "labelstudio:ls.json", "--json")
    assert (result["ingested"], result["rejected"], result["prior_votes"]) == (1, 0, 1)
    assert votes(project, "1") == [("labelstudio:ann@x", "b")]


def test_without_times_the_later_annotation_in_the_list_is_the_vote(project, tmp_path):
    tasks = [{"id": 1, "data": {"text": "x"}, "annotations": [annotation(11, "ann@x", "a"),
                                                               annotation(12, "bob@x", "a"),
                                                               annotation(13, "ann@x", "b")]}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks), encoding="utf-8")
    assert project.json("ingest", "labelstudio:ls.json", "--json")["prior_votes"] == 2
    assert sorted(votes(project, "1")) == [("labelstudio:ann@x", "b"), ("labelstudio:bob@x", "a")]


def test_an_export_nested_too_deeply_is_one_reject(project, tmp_path):
    (tmp_path / "ls").mkdir()
    (tmp_path / "ls" / "deep.json").write_text("[" * 100000, encoding="utf-8")
    (tmp_path / "ls" / "ok.json").write_text(json.dumps([{"id": 5, "data": {"text": "fine"}}]), encoding="utf-8")
    (tmp_path / "t.workflow.yaml").write_text(WORKFLOW + 'sources: [{plugin: labelstudio, path: "ls/*.json"}]\n',
                                              encoding="utf-8")
    project.ok("apply", "t.workflow.yaml")
    proc = project("run", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["sources"]["labelstudio:ls/*.json"]
    assert (report["ingested"], report["rejected"]) == (1, 1)
    [reject] = project.json("rejects", "--json")
    assert (reject["source"].endswith("deep.json"), reject["line"], reject["reason"]) == (
        True, 1, "not a Label Studio export: JSON nested too deeply")



def test_a_latest_annotation_left_out_does_not_bring_back_the_one_before(project, tmp_path):
    tasks = [{"id": 1, "data": {"text": "x"}, "annotations": [annotation(11, "ann@x", "a", updated_at=EARLIER),
                                                               annotation(12, "ann@x", "zz", updated_at=LATER)]}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks), encoding="utf-8")
    result = project.json("ingest", "labelstudio:ls.json", "--json")
    assert (result["ingested"], result["rejected"], result.get("prior_votes")) == (1, 1, None)
    assert votes(project, "1") == []
    assert [r["reason"] for r in project.json("rejects", "--json")] == [
        'task 1: votes left out (the task went in): annotation 12 by labelstudio:ann@x: label "zz" is not one of a, b']
