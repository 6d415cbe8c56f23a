"""Consensus per label type (``router.consensus``) and its wiring into ``votes.*``.

Unit tests per label type, a simulation with annotators of known accuracy
(Dawid-Skene and accuracy-weighted voting beat plain majority), and engine
tests where ``quality.consensus`` and structured labels decide a task's final
label.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from router.consensus import (
    DEFAULT_ACCURACY,
    aggregate,
    dawid_skene_consensus,
    gold_weight,
    match_objects,
    span_overlap,
)
from router.engine import Engine
from router.errors import NothingToDo
from router.ingest import read_file
from router.quality import QualityError, log_odds_weight
from router.store import Store


def box(x, y, w, h, label=None, **extra):
    return {"x": x, "y": y, "width": w, "height": h, **({"label": label} if label else {}), **extra}


def span(start, end, label=None, **extra):
    return {"start": start, "end": end, **({"label": label} if label else {}), **extra}


# -- choice and text ---------------------------------------------------------------------------
def test_choice_majority_tie_and_unanimity():
    c = aggregate(["bug", "bug", "spam"])
    assert (c.label, c.count, c.top_count, c.tie, c.unanimous) == ("bug", 3, 2, False, False)
    assert c.agreement == pytest.approx(2 / 3)
    tie = aggregate(["bug", "spam"])
    assert (tie.label, tie.tie, tie.top_count, tie.agreement) == (None, True, 1, 0.5)
    same = aggregate(["bug"] * 3)
    assert (same.label, same.unanimous, same.agreement, same.top_count) == ("bug", True, 1.0, 3)
    empty = aggregate([])
    assert (empty.label, empty.count, empty.agreement, empty.tie, empty.unanimous) == (None, 0, None, False, False)


def test_text_is_an_exact_vote():
    c = aggregate(["hello world", "hello world", "Hello world"], "text")
    assert (c.label, c.top_count, c.unanimous) == ("hello world", 2, False)
    assert aggregate(["a b", "a  b"], "text").tie


def test_unknown_method_or_type_and_missing_workers_raise():
    with pytest.raises(QualityError):
        aggregate(["a"], method="plurality")
    with pytest.raises(QualityError):
        aggregate(["a"], "polygons")
    with pytest.raises(QualityError):
        aggregate(["a", "b"], method="weighted")
    with pytest.raises(QualityError):
        aggregate(["a", "b"], workers=["w1"], method="weighted")


def test_labels_that_do_not_fit_the_type_fall_back_to_an_exact_vote():
    # a workflow that changed its label type: old votes are still counted, by exact equality
    c = aggregate(["car", "car", [box(0, 0, 1, 1)]], "boxes")
    assert (c.label, c.top_count) == ("car", 2)
    assert aggregate([3, "three", 3], "number").label == 3


# -- multi_choice --------------------------------------------------------------------------------
def test_multi_choice_keeps_the_choices_a_strict_majority_chose():
    votes = [["billing", "bug"], ["bug"], ["bug", "billing", "spam"]]
    c = aggregate(votes, "multi_choice", choices=["billing", "bug", "feature", "spam"])
    assert c.label == ["billing", "bug"]  # spam: 1 of 3; in the workflow's choice order
    assert not c.tie and not c.unanimous
    assert c.top_count == 1  # only the first annotator chose exactly {billing, bug}
    # mean Jaccard of each vote with the consensus: 1, 1/2, 2/3
    assert c.agreement == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)


def test_multi_choice_split_choice_is_a_tie_and_empty_sets_agree():
    c = aggregate([["a", "b"], ["a"]], "multi_choice")
    assert (c.label, c.tie, c.detail["split"]) == (None, True, ["b"])
    nothing = aggregate([[], [], ["a"]], "multi_choice")
    assert (nothing.label, nothing.top_count, nothing.tie) == ([], 2, False)
    assert nothing.agreement == pytest.approx(2 / 3)
    same = aggregate([["b", "a"], ["a", "b"]], "multi_choice")
    assert (same.label, same.unanimous, same.agreement) == (["a", "b"], True, 1.0)


# -- boxes ---------------------------------------------------------------------------------------
def test_boxes_matched_by_iou_median_geometry_majority_class():
    a = [box(0, 0, 10, 10, "car"), box(50, 50, 10, 10, "person")]
    b = [box(1, 1, 10, 10, "car")]
    c = [box(0, 1, 10, 9, "person"), box(51, 50, 10, 10, "person"), box(100, 100, 5, 5, "car")]
    result = aggregate([a, b, c], "boxes")
    # the car drawn by 3 (class car 2:1), the person by 2 of 3 kept, the lone box dropped
    assert result.label == [box(0, 1, 10, 10, "car"), box(50.5, 50, 10, 10, "person")]
    assert not result.tie
    assert result.top_count == 1  # only `a` drew exactly the kept objects with their classes
    supports = sorted(o["support"] for o in result.detail["objects"])
    assert supports == [1, 2, 3]
    assert 0 < result.agreement < result.detail["mean_iou"] < 1


def test_boxes_agreement_is_mean_iou_over_annotator_pairs_missing_boxes_count_zero():
    same = [box(0, 0, 10, 10, "car")]
    shifted = [box(0, 0, 10, 5, "car")]  # IoU 0.5 with `same`
    c = aggregate([same, same, shifted], "boxes")
    assert c.label == same and c.top_count == 3 and not c.unanimous
    assert c.agreement == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert c.detail["mean_iou"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    # a box one annotator drew and two did not: three pairs at 0 for that object
    extra = aggregate([same, same + [box(40, 40, 5, 5, "car")], same], "boxes")
    assert extra.label == same
    assert extra.agreement == pytest.approx(3 / 6)
    assert extra.detail["mean_iou"] == 1.0
    assert extra.top_count == 2


def test_boxes_respect_the_iou_threshold():
    a, b = [box(0, 0, 10, 10)], [box(3, 0, 10, 10)]  # IoU 70/130 = 0.538
    c = [box(6, 0, 10, 10)]  # IoU with a: 40/160 = 0.25, with b: 0.538
    strict = aggregate([a, b, c], "boxes", iou=0.6)
    assert strict.label == [] and strict.top_count == 0 and strict.agreement == 0.0
    loose = aggregate([a, b, c], "boxes", iou=0.3)
    assert loose.label == [box(3, 0, 10, 10)]
    assert loose.top_count == 3
    default = aggregate([a, b, c], "boxes")  # 0.5: b joins a (or c), average linkage keeps c apart
    assert default.label == [box(1.5, 0, 10, 10)]


def test_boxes_ties_are_never_broken():
    drawn_by_half = aggregate([[box(0, 0, 10, 10)], []], "boxes")
    assert (drawn_by_half.label, drawn_by_half.tie) == (None, True)
    class_split = aggregate([[box(0, 0, 10, 10, "car")], [box(0, 0, 10, 10, "bus")], [box(0, 0, 10, 10)]], "boxes")
    assert (class_split.label, class_split.tie) == (None, True)


def test_boxes_one_annotator_nothing_drawn_and_extra_keys():
    one = aggregate([[box(5, 5, 2, 2, "car", occluded=True)]], "boxes")
    assert one.label == [box(5, 5, 2, 2, "car", occluded=True)] and one.agreement == 1.0
    nothing = aggregate([[], [], []], "boxes")
    assert (nothing.label, nothing.agreement, nothing.unanimous, nothing.top_count) == ([], 1.0, True, 3)
    kept = aggregate([[box(0, 0, 4, 4, note="x")], [box(0, 0, 4, 4, note="y")]], "boxes")
    assert kept.label == [box(0, 0, 4, 4)]  # a key the members disagree on is dropped


def test_box_matching_does_not_depend_on_annotator_order():
    votes = [
        [box(0, 0, 10, 10, "car"), box(20, 0, 10, 10, "car")],
        [box(1, 0, 10, 10, "car"), box(21, 1, 10, 10, "car"), box(60, 60, 3, 3, "person")],
        [box(0, 1, 10, 10, "car"), box(60, 61, 3, 3, "person")],
    ]
    expected = aggregate(votes, "boxes")
    for order in itertools.permutations(votes):
        result = aggregate(list(order), "boxes")
        assert result.label == expected.label
        assert result.agreement == pytest.approx(expected.agreement)


def test_match_objects_never_puts_two_boxes_of_one_annotator_together():
    voters = [0, 0, 1]
    similarity = [[1, 0.9, 0.8], [0.9, 1, 0.7], [0.8, 0.7, 1]]
    assert match_objects(voters, similarity, 0.5) == [[0, 2], [1]]


# -- spans ---------------------------------------------------------------------------------------
def test_spans_matched_by_overlap_with_median_ends():
    votes = [
        [span(0, 5, "PER", text="Alice"), span(10, 20, "ORG")],
        [span(1, 5, "PER", text="Alice"), span(30, 35, "LOC")],
        [span(0, 6, "PER", text="Alice"), span(11, 20, "ORG")],
    ]
    c = aggregate(votes, "spans")
    assert c.label == [span(0, 5, "PER", text="Alice"), span(10, 20, "ORG")]
    assert c.top_count == 2 and not c.tie  # the first and the last marked exactly the kept spans
    assert span_overlap((0, 10), (5, 15)) == pytest.approx(5 / 15)
    # even counts: the lower middle start and the upper middle end
    even = aggregate([[span(0, 10)], [span(2, 12)]], "spans")
    assert even.label == [span(0, 12)]


def test_spans_below_half_overlap_do_not_match():
    c = aggregate([[span(0, 10)], [span(6, 16)], [span(0, 10)]], "spans")  # 4/16 overlap with the others
    assert c.label == [span(0, 10)]
    assert c.top_count == 2
    assert aggregate([[span(5, 1)], [span(5, 1)]], "spans").label == [span(5, 1)]  # not spans: exact vote


# -- number --------------------------------------------------------------------------------------
def test_number_median_and_share_within_tolerance():
    c = aggregate([10, 11, 30], "number")
    assert c.label == 11 and isinstance(c.label, int)
    assert c.top_count == 1  # 5% of 11: only 11 itself
    ranged = aggregate([10, 11, 30], "number", low=0, high=100)  # 5% of the range: 5
    assert (ranged.label, ranged.top_count) == (11, 2)
    assert ranged.agreement == pytest.approx(2 / 3)
    assert ranged.detail["mean_abs_deviation"] == pytest.approx((1 + 0 + 19) / 3)
    even = aggregate([1.0, 2.0, 4.0, 5.0], "number")
    assert (even.label, even.tie) == (3.0, False)
    same = aggregate([7, 7], "number")
    assert (same.label, same.unanimous, same.agreement) == (7, True, 1.0)


# -- weighted and Dawid-Skene ---------------------------------------------------------------------
def test_gold_weight_uses_a_prior_centred_on_the_default_accuracy():
    assert gold_weight(0, 0, 4) == pytest.approx(log_odds_weight(DEFAULT_ACCURACY, 4))
    assert gold_weight(1, 1, 4) == pytest.approx(log_odds_weight((1 + 2 * DEFAULT_ACCURACY) / 3, 4))
    assert gold_weight(100, 100, 4) > gold_weight(10, 10, 4) > gold_weight(0, 0, 4) > gold_weight(10, 0, 4)


def test_weighted_vote_lets_an_accurate_worker_outvote_two_weak_ones():
    accuracy = {"expert": (30, 29), "weak1": (30, 12), "weak2": (30, 12)}
    c = aggregate(["bug", "spam", "spam"], workers=["expert", "weak1", "weak2"], method="weighted",
                  accuracy=accuracy, choices=["billing", "bug", "feature", "spam"])
    assert (c.label, c.method, c.top_count) == ("bug", "weighted", 1)
    assert c.agreement == pytest.approx(1 / 3)
    # no gold anywhere: every worker weighs the same, so it is a plain majority
    plain = aggregate(["bug", "spam", "spam"], workers=["x", "y", "z"], method="weighted")
    assert plain.label == "spam"
    # other label types ignore the method
    assert aggregate([3, 4, 5], "number", workers=["x", "y", "z"], method="weighted").method == "majority"


def test_dawid_skene_discounts_workers_who_always_say_the_same():
    rng = random.Random(3)
    history = []
    for t in range(60):
        truth = rng.choice("ab")
        history += [(t, "good", truth), (t, "spam1", "a"), (t, "spam2", "a"), (t, "good2", truth)]
    c = aggregate(["b", "a", "a"], workers=["good", "spam1", "spam2"], method="dawid_skene",
                  history=history, task=999)
    assert (c.label, c.method) == ("b", "dawid_skene")
    assert c.detail["posterior"]["b"] > 0.9
    assert aggregate(["b", "a", "a"]).label == "a"  # plain majority is fooled
    # the task's own rows in the history are replaced by the votes given
    again = aggregate(["b", "a", "a"], workers=["good", "spam1", "spam2"], method="dawid_skene",
                      history=lambda: history + [(999, "good", "a")], task=999)
    assert again.label == "b"


def simulate(seed: int, n_tasks: int, accuracies: tuple[float, ...], classes: str = "abc"):
    """Annotators of known accuracy: right with probability p, else a uniformly wrong label."""
    rng = random.Random(seed)
    workers = [f"w{i}" for i in range(len(accuracies))]
    truth, votes = {}, {}
    for t in range(n_tasks):
        truth[t] = rng.choice(classes)
        votes[t] = [(w, truth[t] if rng.random() < p else rng.choice([c for c in classes if c != truth[t]]))
                    for w, p in zip(workers, accuracies)]
    # each worker's record on 40 gold questions, drawn with the same accuracy
    gold = {w: (40, sum(rng.random() < p for _ in range(40))) for w, p in zip(workers, accuracies)}
    return truth, votes, gold


def test_dawid_skene_and_weighted_voting_beat_majority_on_simulated_annotators():
    truth, votes, gold = simulate(seed=11, n_tasks=300, accuracies=(0.9, 0.85, 0.5, 0.45, 0.4))

    def accuracy(method: str) -> float:
        if method == "dawid_skene":
            labels = {t: c.label for t, c in dawid_skene_consensus(votes).items()}
        else:
            labels = {t: aggregate([label for _, label in cast], workers=[w for w, _ in cast], method=method,
                                   accuracy=gold, choices="abc").label
                      for t, cast in votes.items()}
        return sum(labels[t] == truth[t] for t in truth) / len(truth)  # a tie (None) counts as wrong

    majority, weighted, ds = accuracy("majority"), accuracy("weighted"), accuracy("dawid_skene")
    assert majority < 0.75
    assert weighted >= majority + 0.1
    assert ds >= majority + 0.1

    # the per-task form (what the engine calls, with the other tasks as history) agrees with the batch fit
    batch = dawid_skene_consensus(votes)
    rows = [(t, w, label) for t, cast in votes.items() for w, label in cast]
    for t in range(0, 300, 60):
        single = aggregate([label for _, label in votes[t]], workers=[w for w, _ in votes[t]],
                           method="dawid_skene", history=rows, task=t)
        assert single.label == batch[t].label


# -- through the engine: votes.* come from the type-aware aggregator -------------------------------
def project(tmp_path: Path, workflow: str, tasks: list[dict], workers: dict[str, list[str]],
            gold: list[dict] | None = None) -> Engine:
    store, _ = Store.init(str(tmp_path / "labelyard.db"))
    engine = Engine(store)
    engine.apply(workflow, "t.workflow.yaml", actor="test")
    for name, roles in workers.items():
        engine.add_worker(name, roles, [], actor="test")
    if gold:
        from router.gold import add_gold

        path = tmp_path / "gold.jsonl"
        path.write_text("".join(json.dumps(g) + "\n" for g in gold))
        add_gold(engine, str(path), "test")
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    report = engine.ingest(read_file(str(path), engine.workflow.labels.choices), str(path))
    assert report.ingested == len(tasks)
    return engine


def work(engine: Engine, worker: str, answer) -> list[dict]:
    """Claim and submit until there is no work; ``answer(view)`` gives the label."""
    results = []
    while True:
        try:
            view = engine.claim(worker)
        except NothingToDo:
            return results
        results.append(engine.submit(view["assignment"], worker, label=answer(view)))


BOXES_WORKFLOW = """\
workflow: boxes
labels: {type: boxes, choices: [car, person], iou: 0.5}
queues:
  draw: {roles: [annotator]}
on_create:
  - do: {annotate: draw, overlap: 3}
"""


def test_engine_accepts_the_matched_median_boxes(tmp_path):
    engine = project(tmp_path, BOXES_WORKFLOW, [{"id": "img1", "data": {}}],
                     {"a": ["annotator"], "b": ["annotator"], "c": ["annotator"]})
    drawn = {
        "a": [box(0, 0, 10, 10, "car"), box(50, 50, 10, 10, "person")],
        "b": [box(1, 1, 10, 10, "car")],
        "c": [box(0, 1, 10, 9, "car"), box(51, 50, 10, 10, "person")],
    }
    for name, boxes in drawn.items():
        work(engine, name, lambda view, boxes=boxes: boxes)
    shown = engine.show("img1")
    assert shown["task"]["status"] == "done"
    assert shown["task"]["final_by"] == "consensus"
    assert shown["task"]["final_label"] == [box(0, 1, 10, 10, "car"), box(50.5, 50, 10, 10, "person")]
    final = [e for e in shown["events"] if e["kind"] == "final"]
    assert len(final) == 1
    assert final[0]["rule"] == "default: strict majority"
    assert final[0]["detail"]["facts"]["votes"]["top_count"] == 2  # `a` and `c` drew the kept objects
    engine.close()


WEIGHTED_WORKFLOW = """\
workflow: weighted
labels: {type: choice, choices: [a, b, c]}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 3}
on_quorum:
  - name: consensus
    when: votes.top != null
    do: accept
  - do: {hold: "no consensus"}
quality:
  consensus: weighted
  gold: {rate: 1.0}
"""


def test_engine_weighted_consensus_follows_gold_accuracy(tmp_path):
    gold = [{"id": f"g{i}", "data": {}, "answer": "a"} for i in range(4)]
    engine = project(tmp_path, WEIGHTED_WORKFLOW, [{"id": "t1", "data": {}}],
                     {"expert": ["annotator"], "weak1": ["annotator"], "weak2": ["annotator"]}, gold)
    # every claim is a gold one until a worker has seen all gold: the expert is right, the others wrong
    work(engine, "expert", lambda v: "a" if v["external_id"].startswith("g") else "c")
    work(engine, "weak1", lambda v: "b")
    work(engine, "weak2", lambda v: "b")
    task = engine.show("t1")["task"]
    assert (task["status"], task["final_label"], task["final_by"]) == ("done", "c", "consensus")
    engine.close()


DS_WORKFLOW = WEIGHTED_WORKFLOW.replace("consensus: weighted\n  gold: {rate: 1.0}", "consensus: dawid_skene")


def ingest(engine: Engine, tmp_path: Path, name: str, tasks: list[dict]) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    assert engine.ingest(read_file(str(path)), str(path)).ingested == len(tasks)


def test_engine_dawid_skene_learns_from_the_queues_recent_votes(tmp_path):
    rng = random.Random(5)
    engine = project(tmp_path, DS_WORKFLOW, [],
                     {name: ["annotator"] for name in ("good", "good2", "spam1", "spam2")})
    # history: two accurate annotators, and two who answer `a` whatever the ticket (one per phase)
    for phase, spammer in enumerate(("spam1", "spam2")):
        ingest(engine, tmp_path, spammer, [{"id": f"h{phase}-{i}", "data": {"truth": rng.choice("ab")}}
                                           for i in range(20)])
        for name in ("good", "good2", spammer):
            work(engine, name, lambda v, name=name: "a" if name.startswith("spam") else v["data"]["truth"])
    ingest(engine, tmp_path, "target", [{"id": "target", "data": {}}])
    work(engine, "good", lambda v: "b")
    work(engine, "spam1", lambda v: "a")
    work(engine, "spam2", lambda v: "a")
    target = engine.show("target")
    assert target["task"]["status"] == "done"
    assert target["task"]["final_label"] == "b"  # the majority said a
    final = [e for e in target["events"] if e["kind"] == "final"][0]
    assert final["detail"]["facts"]["votes"]["top_count"] == 1
    history = engine.store.recent_votes("q", 10_000)
    assert len(history) == 3 * 41
    assert history[0][0] == target["task"]["id"]  # newest first
    window = engine.store.recent_votes("q", 7)  # the tasks of the latest 7 votes, each with all its votes
    tasks = {task for task, _, _ in window}
    assert 1 < len(tasks) <= 7 and window == [vote for vote in history if vote[0] in tasks]
    engine.close()


def test_structured_votes_facts_without_a_spec_stay_exact(tmp_path):
    # automatic reviewers and sinks build votes.* without the workflow's label spec
    from router.context import votes_facts

    rows = [{"worker": w, "label": json.dumps(label), "queue": "q", "flagged": 0}
            for w, label in (("a", [box(0, 0, 1, 1)]), ("b", [box(0, 0, 1, 1)]))]
    facts = votes_facts(rows, {})
    assert (facts["top"], facts["unanimous"], facts["consensus"]) == ([box(0, 0, 1, 1)], True, "majority")


def test_queue_kappa_and_alpha_route_on_agreement(tmp_path):
    """`queue.kappa` / `queue.alpha` are the queue's agreement over its latest votes (router.quality)."""
    from router.agreement import agreement_of
    from router.engine import Engine
    from router.ingest import read_file
    from router.quality import fleiss_kappa
    from router.store import Store

    wf = tmp_path / "k.workflow.yaml"
    wf.write_text(
        "workflow: k\nlabels: {type: choice, choices: [a, b]}\n"
        "queues: {q: {roles: [annotator]}, senior: {roles: [senior]}}\n"
        "on_create:\n  - do: {annotate: q, overlap: 2}\n"
        "on_quorum:\n"
        "  - name: guidelines unclear\n    when: queue.kappa < 0.6\n    do: {review: senior}\n"
        "  - name: agreed\n    when: votes.unanimous\n    do: accept\n"
        "  - do: {hold: split}\n",
        encoding="utf-8",
    )
    store, _ = Store.init(str(tmp_path / "k.db"))
    engine = Engine(store)
    engine.apply(wf.read_text(encoding="utf-8"), str(wf))
    for w in ("w1", "w2"):
        engine.add_worker(w, ["annotator"], [])
    rows = tmp_path / "t.jsonl"
    rows.write_text("".join(json.dumps({"id": f"T{i}"}) + "\n" for i in range(6)), encoding="utf-8")
    engine.ingest(read_file(str(rows), ("a", "b")), str(rows))
    # w1 and w2 agree on the first three tasks and split on the next three
    plan = {"T0": ("a", "a"), "T1": ("b", "b"), "T2": ("a", "a"), "T3": ("a", "b"), "T4": ("b", "a"), "T5": ("a", "b")}
    decisions = {}
    for _ in range(6):
        first = engine.claim("w1")
        engine.submit(first["assignment"], "w1", label=plan[first["external_id"]][0])
        second = engine.claim("w2")
        assert second["external_id"] == first["external_id"]
        result = engine.submit(second["assignment"], "w2", label=plan[second["external_id"]][1])
        decisions[first["external_id"]] = result["decision"]["rule"]
    # the first quorums see agreeing tasks only (kappa null, then 1): the agreement rules decide
    assert decisions["T0"] == decisions["T1"] == decisions["T2"] == "agreed"
    # once splits drag the queue's kappa under 0.6, work goes to review until guidelines are clarified
    assert "guidelines unclear" in {decisions["T4"], decisions["T5"]}
    votes = [(t, w, plan[t][i]) for t in plan for i, w in enumerate(("w1", "w2"))]
    kappa, alpha = agreement_of(votes)
    assert kappa == round(fleiss_kappa([list(v) for v in plan.values()]), 12) and kappa < 0.6 and alpha is not None
    fresh = Engine.open(str(tmp_path / "k.db"))  # a new engine: no cached agreement
    facts = fresh._queue_facts("q", 0.0)
    assert facts["kappa"] == kappa and facts["alpha"] == alpha
    fresh.close()
    engine.close()
