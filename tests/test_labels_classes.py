"""Box and span classes are JSON values: ``true`` is not ``1`` (``1`` and ``1.0`` are one class),
in consensus, ``top_count``, agreement and gold alike.

Without ``choices`` any JSON value is a class; Python's ``True == 1`` used to merge them in
consensus and gold while kappa (JSON text) kept them apart.
"""

from __future__ import annotations

import json

from lead_support import Project
from router.agreement import agreement_of
from router.consensus import aggregate, canonical, same_label
from rules.workflow import LabelSpec

BOXES = LabelSpec(type="boxes", iou=0.5)
SPANS = LabelSpec(type="spans")


def box(cls):
    return [{"x": 0, "y": 0, "width": 10, "height": 10, "label": cls}]


def span(cls):
    return [{"start": 0, "end": 5, "label": cls}]


def test_canonical_keeps_booleans_apart_from_numbers():
    from router.consensus import JsonBool

    assert canonical(True) != canonical(1) and canonical(False) != canonical(0)
    assert canonical(True) == JsonBool(True) and str(canonical(False)) == "false"
    assert canonical(1.0) == canonical(1) and canonical(box(1.0)) == canonical(box(1))
    assert len({canonical(v) for v in (True, 1, 1.0, 0, 0.0, False)}) == 4  # true, 1, 0, false


def test_box_and_span_consensus_counts_true_and_1_as_two_classes():
    c = aggregate([box(True), box(1), box(1.0)], "boxes")
    assert c.label == box(1) and c.top_count == 2 and not c.unanimous
    c = aggregate([box(True), box(True), box(1)], "boxes")
    assert c.label == box(True) and c.top_count == 2
    tie = aggregate([span(True), span(1)], "spans")
    assert tie.tie and tie.label is None
    same = aggregate([span(1), span(1.0)], "spans")  # 1.0 is the class 1
    assert same.unanimous and same.top_count == 2 and same.label == span(1)


def test_votes_that_fit_no_type_count_true_and_1_apart():
    c = aggregate([True, 1, 1.0], "choice")
    assert c.label == 1 and c.top_count == 2


def test_same_label_and_kappa_agree_on_classes():
    for spec, make in ((BOXES, box), (SPANS, span)):
        assert not same_label(make(True), make(1), spec)
        assert same_label(make(1.0), make(1), spec)
        assert same_label(make(False), make(False), spec) and not same_label(make(False), make(0), spec)
    # kappa sees the same classes: raters who differ only by true/1 do not agree perfectly
    rows = [("t1", "a", box(True)), ("t1", "b", box(1)), ("t2", "a", box("x")), ("t2", "b", box("x"))]
    kappa, _ = agreement_of(rows)
    assert kappa is not None and kappa < 1
    same = [("t1", "a", box(1.0)), ("t1", "b", box(1)), ("t2", "a", box("x")), ("t2", "b", box("x"))]
    assert agreement_of(same)[0] == 1.0


WORKFLOW = """\
workflow: cls
labels: {type: boxes}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 3}
on_quorum:
  - name: all agree
    when: votes.top_count == 3
    do: accept
  - name: majority
    when: votes.top_count == 2
    do: accept
  - do: {hold: "split"}
"""


def test_the_final_class_and_agreement_through_the_cli(tmp_path):
    p = Project(tmp_path, WORKFLOW)
    for name in ("u1", "u2", "u3"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1"}])
    for name, cls in (("u1", True), ("u2", 1), ("u3", 1.0)):
        view = p.claim(name)
        p.submit(view["assignment"], name, "--value", json.dumps(box(cls)))
    t = p.show("T1")["task"]
    assert (t["final_rule"], t["final_label"]) == ("majority", box(1))
    agree = {a["worker"]: a["matched"] for a in p.json("agreement")["annotators"]}
    assert agree == {"u1": 0, "u2": 1, "u3": 1}


def test_a_gold_class_true_is_not_answered_by_1(tmp_path):
    p = Project(tmp_path, WORKFLOW.replace("overlap: 3", "overlap: 1") + "quality:\n  gold: {rate: 1.0}\n")
    p.worker("u1", "annotator")
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"id": ref, "answer": box(cls)}) + "\n" for ref, cls in (("G1", True),
                                                                                                  ("G2", 1))))
    p.json("gold", "add", gold)
    for answer in (1, 1.0):  # G1 (true) answered 1: wrong; G2 (1) answered 1.0: right
        view = p.claim("u1")
        p.submit(view["assignment"], "u1", "--value", json.dumps(box(answer)))
    (row,) = [a for a in p.json("agreement")["annotators"] if a["worker"] == "u1"]
    assert (row["gold_answered"], row["gold_correct"]) == (2, 1)
