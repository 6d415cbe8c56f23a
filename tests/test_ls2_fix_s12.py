"""The twelfth session's Label Studio fixes (second fixer): several values where the workflow's
label holds one are refused, not cut to the first; the sink's output reads back with the source."""

from __future__ import annotations

import json
import textwrap

from conftest import Runner

CHOICE = """\
workflow: lsm
labels: {type: choice, choices: [pos, neg]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: confident
    when: prediction.confidence >= 0.9
    do: accept
  - name: two
    do: {annotate: q, overlap: 2}
on_quorum:
  - name: agree
    when: votes.unanimous
    do: accept
"""


def _project(run, tmp_path, text, name="wf.yaml"):
    (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    run.ok("init")
    run.ok("apply", name)


def _ingest(run, tmp_path, tasks):
    (tmp_path / "ls.json").write_text(json.dumps(tasks), encoding="utf-8")
    run.ok("ingest", "labelstudio:ls.json")
    return {r["line"]: r["reason"] for r in run.json("rejects", "--json")}


# -- F6: several values where the label holds one --------------------------------------------------------------
def test_two_choices_for_a_choice_workflow_are_refused_not_read_as_the_first(run, tmp_path):
    _project(run, tmp_path, CHOICE)
    reasons = _ingest(run, tmp_path, [
        {"id": 1, "data": {"text": "a"},
         "predictions": [{"result": [{"value": {"choices": ["neg", "pos"]}}], "score": 0.95}]},
        {"id": 2, "data": {"text": "b"}, "annotations": [
            {"completed_by": 1, "result": [{"value": {"choices": ["pos"]}}, {"value": {"choices": ["neg"]}}]},
            {"completed_by": 2, "result": [{"value": {"choices": ["pos", "neg"]}}]}]},
        {"id": 3, "data": {"text": "c"}, "annotations": [
            {"completed_by": 1, "result": [{"value": {"choices": ["pos", "pos"]}}]}]}])
    assert reasons[1] == '`predictions[1].result` holds 2 choices ("neg", "pos"); a choice label is one'
    assert reasons[2] == ('task 2: votes left out (the task went in): '
                          'annotation #1 by labelstudio:1: `result` holds 2 choices ("pos", "neg"); a choice label '
                          'is one; annotation #2 by labelstudio:2: `result` holds 2 choices ("pos", "neg"); '
                          'a choice label is one')
    assert 3 not in reasons  # the same choice twice is one
    assert run.json("show", "ext:2", "--json")["annotations"] == []
    assert [a["label"] for a in run.json("show", "ext:3", "--json")["annotations"]] == ["pos"]
    assert run.ok("export").stdout.strip() == ""  # nothing made final: no unanimous "pos", no model "neg"


def _fresh(tmp_path, name, label_type):
    folder = tmp_path / name
    folder.mkdir()
    run = Runner(folder)
    _project(run, folder, f"workflow: {name}\nlabels: {{type: {label_type}}}\nqueues: {{q: {{roles: [annotator]}}}}\n"
                          "on_create: [{name: one, do: {annotate: q}}]\n")
    return run, folder


def test_a_span_or_box_of_two_classes_and_two_texts_are_refused(tmp_path):
    run, folder = _fresh(tmp_path, "s", "spans")
    reasons = _ingest(run, folder, [
        {"id": 1, "data": {"text": "Paris"}, "predictions": [{"result": [
            {"value": {"start": 0, "end": 5, "labels": ["place"]}},
            {"value": {"start": 0, "end": 5, "labels": ["place", "name"]}}]}]}])
    assert reasons[1] == '`predictions[1].result[2].value.labels` holds 2 labels ("place", "name"); a span has one class'
    run, folder = _fresh(tmp_path, "b", "boxes")
    box = {"x": 10, "y": 10, "width": 10, "height": 10, "rectanglelabels": ["car", "bus"]}
    reasons = _ingest(run, folder, [{"id": 5, "data": {"width": 100, "height": 100},
                                     "annotations": [{"completed_by": 1, "result": [{"value": box}]}]}])
    assert reasons[1].endswith('`result[1].value.rectanglelabels` holds 2 labels ("car", "bus"); a box has one class')
    assert run.json("show", "ext:5", "--json")["annotations"] == []
    run, folder = _fresh(tmp_path, "t", "text")
    reasons = _ingest(run, folder, [{"id": 6, "data": {"t": 1},
                                     "predictions": [{"result": [{"value": {"text": ["hello", "bye"]}}]}]}])
    assert reasons[1] == '`predictions[1].result` holds 2 texts ("hello", "bye"); a text label is one'


# -- F2: the labelstudio source reads the labelstudio sink's own output -----------------------------------------
SINKING = """\
workflow: out
labels: {type: choice, choices: [pos, neg]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: take model
    when: prediction.confidence >= 0.9
    do: accept
  - name: ask
    do: {annotate: q}
on_quorum:
  - name: agree
    do: accept
sinks:
  - {plugin: labelstudio, path: out/ls.json}
"""


def test_the_sink_output_goes_back_in_with_its_ids_labels_and_who(tmp_path):
    first, here = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    here.mkdir()
    one, two = Runner(first), Runner(here)
    _project(one, first, SINKING)
    (first / "in.jsonl").write_text('{"id":"A","data":{"text":"hi"},"prediction":{"label":"pos","confidence":0.95}}\n'
                                    '{"id":"B","data":{"text":"ho"}}\n', encoding="utf-8")
    one.ok("ingest", "-q", "in.jsonl")
    one.ok("run")  # A final by the model; B waits in q
    one.ok("workers", "add", "ann", "--role", "annotator")
    slot = one.json("claim", "--as", "ann", "--json")
    one.ok("submit", slot["assignment"], "--as", "ann", "--label", "neg")
    one.ok("run")
    written = json.loads((first / "out" / "ls.json").read_text(encoding="utf-8"))
    assert {t["meta"]["labelyard"]["id"]: t["annotations"][0]["completed_by"] for t in written} == {
        "A": {"email": "model"}, "B": {"email": "consensus"}}  # final_by
    _project(two, here, SINKING.split("sinks:")[0].replace("workflow: out", "workflow: back"))
    proc = two.ok("ingest", f"labelstudio:{first / 'out' / 'ls.json'}")
    assert proc.stdout.splitlines()[0] == "ingested 2, duplicates 0, rejected 0, prior votes 2"
    assert two.json("rejects", "--json") == []
    # B's vote is ann's, as meta.labelyard.votes records it (the thirteenth session: it was the final
    # annotation's labelstudio:consensus); A, made final by no vote, comes back as its final annotation
    for ident, label, who in (("A", "pos", "labelstudio:model"), ("B", "neg", "ann")):
        shown = two.json("show", f"ext:{ident}", "--json")
        assert shown["task"]["final_label"] == label
        assert [(a["worker"], a["label"]) for a in shown["annotations"]] == [(who, label)]
        assert shown["task"]["data"]["text"] == {"A": "hi", "B": "ho"}[ident]
