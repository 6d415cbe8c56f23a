"""A CSV ``prediction_label`` cell is read as the workflow's label type: a number for
``number``, JSON for ``multi_choice``, ``spans`` and ``boxes``, text for ``choice`` and
``text``; a cell that does not read is one reject naming the column.

``labelyard export --format csv`` writes the final label in the same form, in a column named
``label``: ingested as it is, that column is data; renamed ``prediction_label``, every label
type comes back as the prediction it was.

The label type reaches the reader through the csv source plugin (``labelyard run`` and
``labelyard ingest csv:FILE``).
"""

from __future__ import annotations

import csv
import json

import pytest

RULES = """\
queues: {q: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q}}
on_quorum: [{name: acc, do: accept}]
"""

LABELS = {
    "choice": "{type: choice, choices: [a, b]}",
    "multi_choice": "{type: multi_choice, choices: [x, y, z]}",
    "spans": "{type: spans, choices: [car, person]}",
    "boxes": "{type: boxes, choices: [car, person]}",
    "number": "{type: number, min: 0, max: 10}",
    "text": "{type: text}",
}

# labels of each type, as a model would predict them (one is a text that looks like JSON)
EXAMPLES = {
    "choice": ["a", "b"],
    "multi_choice": [["x", "y"], []],
    "spans": [[{"start": 0, "end": 3, "label": "car"}], [{"start": 2, "end": 2}]],
    "boxes": [[{"x": 1, "y": 2, "width": 3.5, "height": 4, "label": "person"}], []],
    "number": [5, 4.25],
    "text": ["[not json]", "7"],
}


@pytest.fixture
def project(run, tmp_path):
    """``init`` done; ``use(label_type)`` applies a workflow of that label type."""
    run.ok("init")

    def use(label_type: str, db=None) -> None:
        (tmp_path / "w.workflow.yaml").write_text(f"workflow: w\nlabels: {LABELS[label_type]}\n{RULES}",
                                                  encoding="utf-8")
        env = None if db is None else {"LABELYARD_DB": str(db)}
        if db is not None:
            run.ok("init", env=env)
        run.ok("apply", "w.workflow.yaml", env=env)

    run.use = use
    return run


def prediction(run, ident: str) -> tuple:
    task = run.json("show", ident, "--json")["task"]
    return task["pred_label"], task["pred_confidence"]


def rejects(run) -> list[tuple[int, str]]:
    return sorted((r["line"], r["reason"]) for r in run.json("rejects", "--json"))


def test_number_predictions_come_in_through_csv(project, tmp_path):
    project.use("number")
    (tmp_path / "n.csv").write_text(
        "id;text;prediction_label;prediction_confidence\n"
        "n1;a;5;0,95\n"
        "n2;b;4,5;0,5\n"  # a decimal comma, as for confidences
        "n3;c; 1e1 ;\n"
        "n4;d;five;\n"
        "n5;e;nan;\n"
        "n6;f;11;\n", encoding="utf-8")
    report = project.json("ingest", "csv:n.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (3, 3)
    assert prediction(project, "n1") == (5, 0.95)
    assert project.json("show", "n1", "--json")["task"]["final_label"] == 5  # accepted as a number
    assert prediction(project, "n2") == (4.5, 0.5)
    assert prediction(project, "n3") == (10.0, None)
    assert rejects(project) == [
        (5, '`prediction_label` "five" is not a finite number'),
        (6, '`prediction_label` "nan" is not a finite number'),
        (7, "`prediction_label`: label 11 is outside 0..10"),
    ]


@pytest.mark.parametrize("label_type, cell, reason", [
    ("multi_choice", "x", "`prediction_label` is not JSON (column 1: Expecting value); "
                          'a multi_choice label is written like ["x", "y"]'),
    ("multi_choice", '["x", "w"]', '`prediction_label`: "w" not among x, y, z'),
    ("spans", "car", "`prediction_label` is not JSON (column 1: Expecting value); "
                     'a spans label is written like [{"start": 0, "end": 3, "label": "x"}]'),
    ("spans", '[{"start": 0, "end": 3, "label": "bus"}]', '`prediction_label`: "bus" is not one of car, person'),
    ("boxes", '[{"x": 0, "y": 0, "width": 1}]', "`prediction_label`: each of the boxes needs finite numeric height"),
    ("boxes", "[" * 100000, "`prediction_label`: JSON nested too deeply"),
], ids=["multi-not-json", "multi-unknown", "spans-not-json", "spans-unknown", "boxes-no-height", "deep"])
def test_a_structured_label_cell_that_does_not_read_is_one_reject(project, tmp_path, label_type, cell, reason):
    project.use(label_type)
    with open(tmp_path / "s.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["id", "prediction_label"], ["good", ""], ["bad", cell]])
    report = project.json("ingest", "csv:s.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert rejects(project) == [(3, reason)]


@pytest.mark.parametrize("label_type", sorted(EXAMPLES))
def test_an_exported_csv_comes_back_with_its_labels(project, tmp_path, label_type):
    project.use(label_type)
    rows = [{"id": f"e{n}", "data": {"n": n}, "prediction": {"label": label, "confidence": 0.95}}
            for n, label in enumerate(EXAMPLES[label_type])]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert project.json("ingest", "in.jsonl", "--json")["ingested"] == len(rows)
    project.ok("export", "--format", "csv", "-o", "final.csv")
    exported = (tmp_path / "final.csv").read_text(encoding="utf-8")
    assert exported.startswith("id,label,")

    other = tmp_path / "other.db"  # as exported: the label column is data, kept as written
    project.use(label_type, db=other)
    assert project.json("ingest", "csv:final.csv", "--json", env={"LABELYARD_DB": str(other)})["ingested"] == len(rows)
    as_data = project.json("show", "e0", "--json", env={"LABELYARD_DB": str(other)})["task"]
    assert as_data["pred_label"] is None and as_data["data"]["label"] == next(csv.DictReader(exported.splitlines()))["label"]

    (tmp_path / "again.csv").write_text(exported.replace("id,label,", "id,prediction_label,", 1), encoding="utf-8")
    third = tmp_path / "third.db"
    project.use(label_type, db=third)
    report = project.json("ingest", "csv:again.csv", "--json", env={"LABELYARD_DB": str(third)})
    assert (report["ingested"], report["rejected"]) == (len(rows), 0)
    for n, label in enumerate(EXAMPLES[label_type]):
        task = project.json("show", f"e{n}", "--json", env={"LABELYARD_DB": str(third)})["task"]
        assert task["pred_label"] == label and type(task["pred_label"]) is type(label)
