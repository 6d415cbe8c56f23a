"""Degenerate and huge boxes and spans: equal ones always match, nothing turns into ``nan``.

Pure tests of ``box_iou``, ``span_overlap``, consensus and ``same_label``, then the CLI on a real
database: unanimous zero-width and huge boxes become the final label, and a gold answer equal to
a zero-width gold box scores as right.
"""

from __future__ import annotations

import json
import math

import pytest

from lead_support import Project
from router.consensus import boxes_vote, same_label, span_overlap, spans_vote
from router.quality import box_iou
from rules.workflow import LabelSpec

BOXES = LabelSpec(type="boxes", iou=0.5)
SPANS = LabelSpec(type="spans")


def box(x, y, w, h, label="car"):
    return {"x": x, "y": y, "width": w, "height": h, "label": label}


ZERO_WIDTH = [box(5, 5, 0, 10)]
HUGE = [box(0, 0, 1e200, 1e200)]


@pytest.mark.parametrize("b", [[5, 5, 0, 10], [5, 5, 10, 0], [5, 5, 0, 0], [0, 0, 1e200, 1e200],
                               [1e308, 1e308, 1.7e308, 1e-300], [0, 0, 1e-200, 1e-200]])
def test_equal_boxes_have_iou_one(b):
    assert box_iou(b, list(b)) == 1.0


def test_two_zero_area_boxes_are_measured_along_the_line_they_share():
    assert box_iou([5, 5, 0, 10], [5, 7, 0, 10]) == pytest.approx(8 / 12)  # one vertical line, heights overlap
    assert box_iou([5, 5, 10, 0], [8, 5, 10, 0]) == pytest.approx(7 / 13)  # one horizontal line
    assert box_iou([5, 5, 0, 10], [6, 5, 0, 10]) == 0.0  # parallel lines
    assert box_iou([5, 5, 0, 10], [0, 8, 10, 0]) == 0.0  # crossing lines
    assert box_iou([5, 5, 0, 0], [5, 5, 0, 10]) == 0.0  # a point and a line through it
    assert box_iou([5, 5, 0, 0], [5, 6, 0, 0]) == 0.0  # two points
    assert box_iou([5, 5, 0, 10], [0, 0, 20, 20]) == 0.0  # a line inside a box: no area in common


def test_huge_and_tiny_boxes_give_finite_exact_values():
    assert box_iou([0, 0, 1e200, 1e200], [0, 0, 1e200, 2e200]) == pytest.approx(0.5)
    assert box_iou([1e308, 0, 1e308, 1], [1e308, 0, 1.5e308, 1]) == pytest.approx(1 / 1.5)
    assert box_iou([0, 0, 1e-200, 1e-200], [0, 0, 2e-200, 1e-200]) == pytest.approx(0.5)
    value = box_iou([0, 0, 1e200, 1e200], [5e199, 0, 1e200, 1e200])
    assert math.isfinite(value) and value == pytest.approx(1 / 3)


def test_spans_near_the_float_limit_overlap_without_overflow():
    assert span_overlap((0, 1.7e308), (0, 1.7e308)) == 1.0
    assert span_overlap((0, 1.7e308), (0.85e308, 1.7e308)) == pytest.approx(0.5)
    assert span_overlap((3, 3), (3, 3)) == 1.0 and span_overlap((3, 3), (4, 4)) == 0.0


@pytest.mark.parametrize("label", [ZERO_WIDTH, HUGE, [box(5, 5, 0, 0)]])
def test_identical_degenerate_or_huge_votes_give_that_label(label):
    c = boxes_vote([label, label, label])
    assert (c.label, c.top_count, c.agreement, c.unanimous, c.tie) == (label, 3, 1.0, True, False)


def test_zero_width_votes_on_one_line_agree_by_their_overlap():
    c = boxes_vote([[box(5, 5, 0, 10)], [box(5, 5, 0, 10)], [box(5, 6, 0, 10)]])
    assert c.label == [box(5, 5, 0, 10)] and c.top_count == 3 and 0.8 < c.agreement < 1


def test_huge_spans_agree():
    s = [{"start": 0, "end": 1.7e308}]
    c = spans_vote([s, s, s])
    assert (c.label, c.top_count, c.agreement) == (s, 3, 1.0)


def test_same_label_of_degenerate_and_huge_boxes():
    assert same_label(ZERO_WIDTH, ZERO_WIDTH, BOXES)
    assert same_label(HUGE, HUGE, BOXES)
    assert not same_label([box(6, 5, 0, 10)], ZERO_WIDTH, BOXES)
    assert same_label([{"start": 0, "end": 1.7e308}], [{"start": 0, "end": 1.7e308}], SPANS)


BOX_WORKFLOW = """\
workflow: det
labels: {type: boxes}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 3}
on_quorum:
  - name: unanimous
    when: votes.unanimous
    do: accept
  - name: split
    do: {hold: "split"}
"""


def test_unanimous_zero_width_and_huge_boxes_become_final_through_the_cli(tmp_path):
    p = Project(tmp_path, BOX_WORKFLOW)
    for name in ("u1", "u2", "u3"):
        p.worker(name, "annotator")
    p.ingest([{"id": "Z"}, {"id": "H"}])
    for ref, label in (("Z", ZERO_WIDTH), ("H", HUGE)):
        for name in ("u1", "u2", "u3"):
            view = p.claim(name)
            assert view["external_id"] == ref
            p.submit(view["assignment"], name, "--value", json.dumps(label))
        t = p.show(ref)["task"]
        assert (t["status"], t["final_by"], t["final_label"]) == ("done", "consensus", label)
    exported = [json.loads(line) for line in p.run_ok("export").stdout.splitlines()]
    assert {row["id"]: row["label"] for row in exported} == {"Z": ZERO_WIDTH, "H": HUGE}


def test_a_gold_answer_equal_to_a_zero_width_gold_box_scores_as_right(tmp_path):
    p = Project(tmp_path, BOX_WORKFLOW.replace("overlap: 3", "overlap: 1") + "quality:\n  gold: {rate: 1.0}\n")
    p.worker("u1", "annotator")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "G1", "answer": ZERO_WIDTH}) + "\n")
    p.json("gold", "add", gold)
    view = p.claim("u1")
    assert view["external_id"] == "G1"
    p.submit(view["assignment"], "u1", "--value", json.dumps(ZERO_WIDTH))
    (row,) = [a for a in p.json("agreement")["annotators"] if a["worker"] == "u1"]
    assert (row["gold_answered"], row["gold_correct"]) == (1, 1)
