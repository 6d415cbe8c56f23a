"""``queue.kappa`` / ``queue.alpha`` agree with ``labelyard agreement``; labels compare canonically; huge numbers.

Real ``labelyard`` subprocesses on real SQLite files (``lead_support.Project``),
plus the pure functions they rest on.
"""

from __future__ import annotations

import json
import math

import pytest

from lead_support import Project
from router.agreement import agreement_of
from router.consensus import aggregate, canonical
from router.context import votes_facts
from router.quality import fleiss_kappa, krippendorff_alpha

GATED = """\
workflow: qk
labels: {type: choice, choices: [a, b]}
queues:
  q1: {roles: [annotator]}
on_create:
  - do: {annotate: q1, overlap: 2}
on_quorum:
  - name: low kappa
    when: queue.kappa < 0.5
    do: {hold: "queue kappa low"}
  - name: rest
    do: {hold: "looked at"}
quality:
  gold: {rate: 1.0}
"""


def vote(p: Project, worker: str, label, expect: str | None = None) -> dict:
    view = p.claim(worker)
    if expect is not None:
        assert view["external_id"] == expect
    return p.submit(view["assignment"], worker, "--value", json.dumps(label))


def kappa_seen(p: Project, ref: str):
    (event,) = [e for e in p.show(ref)["events"] if e["detail"] and e["detail"].get("section") == "on_quorum"]
    return event["rule"], event["detail"]["facts"]["queue"]["kappa"]


def test_queue_kappa_leaves_gold_out_and_waits_for_two_tasks(tmp_path):
    p = Project(tmp_path, GATED)
    for name in ("u1", "u2"):
        p.worker(name, "annotator")
    (tmp_path / "gold.jsonl").write_text('{"id": "G1", "answer": "a"}\n{"id": "G2", "answer": "b"}\n')
    p.run_ok("gold", "add", tmp_path / "gold.jsonl")
    for name in ("u1", "u2"):  # both answer both gold questions right: agreement data it is not
        vote(p, name, "a", "G1")
        vote(p, name, "b", "G2")
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    vote(p, "u1", "a", "T1")
    vote(p, "u2", "b", "T1")
    assert kappa_seen(p, "T1") == ("rest", None)  # one task is no evidence: null, and `<` is false
    one = p.json("agreement")
    assert one["queues"]["q1"]["fleiss_kappa"] is None
    assert one["queues"]["q1"]["reasons"]["fleiss_kappa"] == "only one task has two votes yet"
    vote(p, "u1", "b", "T2")
    vote(p, "u2", "a", "T2")
    rule, kappa = kappa_seen(p, "T2")
    report = p.json("agreement")
    assert report["queues"]["q1"]["fleiss_kappa"] == kappa == pytest.approx(-1.0)
    assert rule == "low kappa" and report["overall"]["votes"] == 4


def test_agreement_of_is_the_reports_statistics_with_the_minimum_evidence_rule():
    assert agreement_of([(1, "u1", "a"), (1, "u2", "b")]) == (None, None)
    rows = [(1, "u1", "a"), (1, "u2", "b"), (2, "u1", "b"), (2, "u2", "a")]
    kappa, alpha = agreement_of(rows)
    assert kappa == fleiss_kappa([["a", "b"], ["b", "a"]])
    assert alpha == krippendorff_alpha([["a", "b"], ["b", "a"]])


def test_labels_that_mean_the_same_are_one_label():
    assert canonical(["y", "x", "x"]) == canonical(["x", "y"]) != canonical(["x"])
    assert canonical(4.0) == canonical(4) and json.dumps(canonical(4.0)) == "4"
    box_a = {"x": 0, "y": 0, "width": 10, "height": 10, "label": "car"}
    box_b = {"label": "person", "height": 10.0, "width": 10, "y": 50, "x": 50}
    assert canonical([box_a, box_b]) == canonical([dict(reversed(box_b.items())), box_a])
    assert canonical([box_a, box_a]) != canonical([box_a])  # a box drawn twice is two objects
    # consensus, votes facts and agreement all see it
    boxes = aggregate([[box_a, box_b], [box_b, box_a]], "boxes")
    assert boxes.unanimous and boxes.agreement == 1
    facts = votes_facts([{"worker": w, "label": json.dumps(v), "queue": "q", "flagged": 0}
                         for w, v in (("u1", ["x", "y"]), ("u2", ["y", "x"]))], {})
    assert facts["entropy"] == 0.0 and facts["unanimous"]
    rows = [(1, "u1", ["x", "y"]), (1, "u2", ["y", "x"]), (1, "u3", ["x", "y"]),
            (2, "u1", ["x"]), (2, "u2", ["x", "z"]), (2, "u3", ["z", "x"])]
    kappa, _ = agreement_of(rows)
    assert kappa == round(fleiss_kappa([["xy", "xy", "xy"], ["x", "xz", "xz"]]), 12)  # rounded for the bands


NUMBERS = """\
workflow: big
labels: {type: number}
queues:
  q1: {roles: [annotator]}
on_create:
  - do: {annotate: q1, overlap: 2}
on_quorum:
  - name: low alpha
    when: queue.alpha < 0.5
    do: {hold: "low alpha"}
  - name: rest
    do: accept
"""


def strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_huge_numbers_give_values_not_tracebacks_or_infinity(tmp_path):
    p = Project(tmp_path, NUMBERS)
    for name in ("u1", "u2"):
        p.worker(name, "annotator")
    p.ingest([{"id": f"T{i}"} for i in range(1, 4)])
    for ref, pair in (("T1", (1.5e308, 1.7e308)), ("T2", (1e200, -1e200)), ("T3", (1, 2))):
        vote(p, "u1", pair[0], ref)
        vote(p, "u2", pair[1], ref)  # the subprocess asserts no traceback: the vote is taken
    t1 = strict_json(p.run_ok("show", "T1", "--json").stdout)
    assert t1["task"]["final_label"] == pytest.approx(1.6e308)  # the median, not infinity
    strict_json(p.run_ok("explain", "T1", "--json").stdout)
    alpha = strict_json(p.run_ok("agreement", "--json").stdout)["overall"]["krippendorff_alpha"]
    expected = krippendorff_alpha([[1.5, 1e-108, 1e-308], [1.7, -1e-108, 2e-308]], "interval")  # / 1e308
    assert math.isfinite(alpha) and alpha == pytest.approx(expected, abs=1e-9)
    (decided,) = [e for e in p.show("T3")["events"] if e["kind"] in ("final", "held")]
    assert decided["detail"]["facts"]["queue"]["alpha"] == alpha  # read by the rule, the vote decided


def test_interval_alpha_is_scale_free_above_the_float_square_limit():
    small = [[1.0, 2.0, 0.0], [-1.0, 2.5, 1.0]]
    scale = 1e200
    big = [[v * scale for v in row] for row in small]
    assert krippendorff_alpha(big, "interval") == pytest.approx(krippendorff_alpha(small, "interval"), abs=1e-12)
    assert krippendorff_alpha(big, "ratio") == pytest.approx(krippendorff_alpha(small, "ratio"), abs=1e-12)
    assert aggregate([1.5e308, 1.7e308], "number").label == pytest.approx(1.6e308)
