"""Eleventh session's label fixes: consensus whatever the vote order, one-to-one matching, and the rest.

Pure tests of ``router.consensus`` where the bug is in the arithmetic; the CLI on a real
database (``lead_support.Project``) where a user sees it.
"""

from __future__ import annotations

import itertools
import json
import random

import pytest

from lead_support import Project
from router.consensus import aggregate, same_label
from rules.workflow import LabelSpec

SPANS = LabelSpec(type="spans")


def box(x, y, w, h, label="car"):
    return {"x": x, "y": y, "width": w, "height": h, "label": label}


def span(start, end, label="PER"):
    return {"start": start, "end": end, "label": label}


# -- 1: consensus of boxes and spans does not depend on the order of the votes ----------------------
TIED_BOXES = [[box(3, 2, 5, 4)], [box(0, 2, 5, 4)], [box(1, 2, 6, 4)]]  # the third: IoU 4/7 with both
TIED_SPANS = [[span(3, 8)], [span(0, 5)], [span(1, 7)]]


@pytest.mark.parametrize("votes, kind", [(TIED_BOXES, "boxes"), (TIED_SPANS, "spans")])
def test_equally_good_pairs_give_one_consensus_whatever_order_the_votes_came_in(votes, kind):
    results = {json.dumps([aggregate(list(order), kind).label, aggregate(list(order), kind).top_count])
               for order in itertools.permutations(votes)}
    assert len(results) == 1, results


def test_the_order_of_one_annotators_own_objects_changes_nothing():
    a = [box(5, 0, 3, 4), box(6, 0, 3, 4)]
    c = [box(1, 0, 7, 4), box(4, 0, 5, 4)]
    first = aggregate([a, [], c], "boxes")
    again = aggregate([a[::-1], [], c[::-1]], "boxes")
    assert first.label is not None
    assert (first.label, first.top_count, first.tie) == (again.label, again.top_count, again.tie)


def _random_votes(rng: random.Random, kind: str) -> list[list[dict]]:
    votes = []
    for _ in range(rng.randint(2, 5)):
        if kind == "boxes":
            votes.append([box(rng.randint(0, 6), rng.randint(0, 3), rng.randint(3, 7), 4, rng.choice("ab"))
                          for _ in range(rng.randint(0, 3))])
        else:
            votes.append([span(s, s + rng.randint(2, 7), rng.choice("ab"))
                          for s in (rng.randint(0, 8) for _ in range(rng.randint(0, 3)))])
    return votes


@pytest.mark.parametrize("kind", ["boxes", "spans"])
def test_random_votes_shuffled_give_the_same_consensus(kind):
    rng = random.Random(11)
    for _ in range(300):
        votes = _random_votes(rng, kind)
        expected = aggregate(votes, kind)
        for _ in range(4):
            shuffled = [rng.sample(v, len(v)) for v in rng.sample(votes, len(votes))]
            got = aggregate(shuffled, kind)
            assert (got.label, got.top_count, got.tie, got.unanimous) == (
                expected.label, expected.top_count, expected.tie, expected.unanimous), votes
            assert got.agreement == pytest.approx(expected.agreement)


@pytest.mark.parametrize("kind", ["boxes", "spans"])
def test_top_count_is_the_votes_same_label_says_give_the_consensus(kind):
    spec = LabelSpec(type=kind, iou=0.5)
    rng = random.Random(5)
    seen = 0
    for votes in [TIED_SPANS if kind == "spans" else TIED_BOXES] + [_random_votes(rng, kind) for _ in range(300)]:
        c = aggregate(votes, kind)
        if c.label is None:
            continue
        seen += 1
        assert c.top_count == sum(same_label(v, c.label, spec) for v in votes), votes
    assert seen > 50
    spans = aggregate(TIED_SPANS, "spans")
    assert spans.top_count == 3 == sum(same_label(v, spans.label, SPANS) for v in TIED_SPANS)


BOX_WORKFLOW = """\
workflow: det
labels: {type: boxes, choices: [car]}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 3}
on_quorum:
  - name: take
    do: accept
"""


def _final_after(tmp_path, order):
    p = Project(tmp_path, BOX_WORKFLOW)
    for name in ("a1", "a2", "a3"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T"}])
    votes = dict(zip(("a1", "a2", "a3"), TIED_BOXES))
    for name in order:
        view = p.claim(name)
        p.submit(view["assignment"], name, "--value", json.dumps(votes[name]))
    (row,) = [json.loads(line) for line in p.run_ok("export").stdout.splitlines()]
    return row["label"]


def test_the_exported_box_is_the_same_whoever_submitted_first(tmp_path):
    first = _final_after(tmp_path / "one", ("a1", "a2", "a3"))
    second = _final_after(tmp_path / "two", ("a2", "a1", "a3"))
    assert first == second and len(first) == 1
