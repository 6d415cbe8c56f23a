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


# -- 2: one to one is a maximum matching, not the best pair first ----------------------------------
REFERENCE = [span(0, 10), span(2, 14)]
RIGHT = [span(1, 11), span(0, 8)]  # [1,11]-[2,14] 0.69 and [0,8]-[0,10] 0.8; the best pair [1,11]-[0,10] 0.82


def test_a_valid_one_to_one_matching_is_found_where_the_best_pair_first_misses_it():
    assert same_label(RIGHT, REFERENCE, SPANS)
    assert same_label(REFERENCE, RIGHT, SPANS)
    assert not same_label(RIGHT, [span(0, 10), span(2, 14, "ORG")], SPANS)  # classes still count
    boxes = LabelSpec(type="boxes", iou=0.5)
    as_boxes = [[box(s["start"], 0, s["end"] - s["start"], 10) for s in label] for label in (RIGHT, REFERENCE)]
    assert same_label(*as_boxes, boxes)


def test_object_pairs_pair_every_object_when_a_matching_exists():
    from router.consensus import object_pairs

    pairs = object_pairs(RIGHT, REFERENCE, SPANS)
    assert sorted((m["start"], t["start"]) for m, t in pairs) == [(0, 0), (1, 2)]
    # a class confused is still paired by place, after the pairs of one class
    pairs = object_pairs([span(0, 10, "ORG"), span(50, 60)], [span(1, 10), span(50, 60)], SPANS)
    assert sorted((m["start"], m["label"], t["label"]) for m, t in pairs) == [(0, "ORG", "PER"), (50, "PER", "PER")]


def test_max_matching_augments_and_takes_the_best_partner_first():
    from router.matching import max_matching

    assert max_matching([[0, 1], [0]], 2) == [1, 0]
    assert max_matching([[0], [0], [0]], 1) == [0, None, None]
    assert max_matching([[1, 0], [1, 0]], 2) == [1, 0]
    assert max_matching([], 3) == []
    # a chain that needs a long augmenting path: i may take i or i+1; the greedy start takes i+1
    n = 3000
    chain = [[i + 1, i] if i + 1 < n else [i] for i in range(n)]
    assert max_matching(chain, n) == list(range(n))


GOLD_SPANS = """\
workflow: ner
labels: {type: spans, choices: [PER, ORG]}
queues:
  q: {roles: [annotator]}
quality:
  gold: {rate: 1.0}
on_create:
  - do: {annotate: q, overlap: 1}
on_quorum:
  - name: take
    do: accept
"""


def test_a_right_gold_answer_is_scored_right(tmp_path):
    p = Project(tmp_path, GOLD_SPANS)
    p.worker("u1", "annotator")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "G1", "answer": REFERENCE}) + "\n")
    p.json("gold", "add", gold)
    view = p.claim("u1")
    assert view["external_id"] == "G1"
    p.submit(view["assignment"], "u1", "--value", json.dumps(RIGHT))
    (row,) = [a for a in p.json("agreement")["annotators"] if a["worker"] == "u1"]
    assert (row["gold_answered"], row["gold_correct"]) == (1, 1)


def test_an_older_database_is_judged_again_by_m012(tmp_path):
    import sqlite3

    p = Project(tmp_path, GOLD_SPANS.replace("overlap: 1", "overlap: 3"))
    for name in ("w1", "w2", "w3"):
        p.worker(name, "annotator")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "G1", "answer": REFERENCE}) + "\n")
    p.json("gold", "add", gold)
    p.ingest([{"id": "T1"}])
    for task in ("G1", "T1"):
        for name, label in (("w1", REFERENCE), ("w2", REFERENCE), ("w3", RIGHT)):
            view = p.claim(name)
            assert view["external_id"] == task
            p.submit(view["assignment"], name, "--value", json.dumps(label))
    assert p.show("T1")["task"]["final_label"] == REFERENCE

    def stored():
        with sqlite3.connect(p.db) as conn:
            marks = dict(conn.execute("SELECT worker, agrees FROM annotations WHERE agrees IS NOT NULL"))
            sums = {w: row for w, *row in conn.execute(
                "SELECT id, final_votes, final_agreed, gold_answered, gold_correct FROM workers WHERE id LIKE 'w%'")}
            events = [json.loads(d) for (d,) in conn.execute("SELECT detail FROM events WHERE kind = 'gold_rescored'")]
        return marks, sums, events

    judged = stored()
    assert judged == ({"w1": 1, "w2": 1, "w3": 1},
                      {"w1": [1, 1, 1, 1], "w2": [1, 1, 1, 1], "w3": [1, 1, 1, 1]}, [])
    conn = sqlite3.connect(p.db, isolation_level=None)
    for statement in ("UPDATE annotations SET agrees = 0 WHERE worker = 'w3' AND agrees = 1",  # as it was judged
                      "UPDATE workers SET final_agreed = 0, gold_correct = 0 WHERE id = 'w3'",
                      "UPDATE schema_version SET version = 11",
                      "DELETE FROM _sqlite_migrations WHERE name = 'm012_one_to_one_matching'"):
        conn.execute(statement)
    conn.close()
    assert p.json("init")["migrations_applied"] == ["m012_one_to_one_matching"]
    marks, sums, events = stored()
    assert (marks, sums) == judged[:2]
    assert events == [{"worker": "w3", "gold_answered": 1, "gold_correct": 1,
                       "was": {"gold_answered": 1, "gold_correct": 0}, "migration": "m012_one_to_one_matching"}]


# -- 3: apply of another iou scores gold answers again, as it judges votes ---------------------------
GOLD_BOXES = """\
workflow: det
labels: {type: boxes, choices: [car], iou: 0.4}
queues:
  q: {roles: [annotator]}
quality:
  gold: {rate: 1.0}
on_create:
  - do: {annotate: q, overlap: 1}
on_quorum:
  - name: take
    do: accept
"""


def test_apply_with_another_iou_scores_gold_answers_again_in_its_transaction(tmp_path):
    import sqlite3

    p = Project(tmp_path, GOLD_BOXES)
    p.worker("u1", "annotator")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "G1", "answer": [box(0, 0, 10, 10)]}) + "\n")
    p.json("gold", "add", gold)
    view = p.claim("u1")
    assert view["external_id"] == "G1"
    p.submit(view["assignment"], "u1", "--value", json.dumps([box(0, 0, 10, 5)]))  # IoU 0.5

    def gold_of_u1():
        (row,) = [a for a in p.json("agreement")["annotators"] if a["worker"] == "u1"]
        return row["gold_answered"], row["gold_correct"]

    assert gold_of_u1() == (1, 1)
    (tmp_path / "v2.workflow.yaml").write_text(GOLD_BOXES.replace("iou: 0.4", "iou: 0.6"))
    p.run_ok("apply", tmp_path / "v2.workflow.yaml", hours=1)
    assert gold_of_u1() == (1, 0)
    with sqlite3.connect(p.db) as conn:
        applied = conn.execute("SELECT id FROM events WHERE kind = 'workflow_applied' ORDER BY id DESC").fetchone()[0]
        rescored = [(i, json.loads(d)) for i, d in conn.execute("SELECT id, detail FROM events WHERE kind = 'gold_rescored'")]
    assert [d for _, d in rescored] == [{"worker": "u1", "gold_answered": 1, "gold_correct": 0,
                                         "was": {"gold_answered": 1, "gold_correct": 1}, "version": 2}]
    assert rescored[0][0] > applied
    # back to 0.4: right again, without `gold add`
    (tmp_path / "v3.workflow.yaml").write_text(GOLD_BOXES.replace("iou: 0.4", "iou: 0.41"))
    p.run_ok("apply", tmp_path / "v3.workflow.yaml", hours=2)
    assert gold_of_u1() == (1, 1)


# -- 4: Label Studio: the empty label goes in and comes out; falsy classes are written ---------------
LS_WORKFLOW = """\
workflow: det
labels: {type: boxes}
queues:
  q: {roles: [annotator]}
on_create:
  - name: confident
    when: prediction.confidence >= 0.95
    do: accept
  - name: q
    do: {annotate: q, overlap: 2}
on_quorum:
  - name: take
    do: accept
sinks:
  - {plugin: labelstudio, path: out/ls.json}
"""


def _ls_project(run, tmp_path, workflow=LS_WORKFLOW):
    run.ok("init")
    (tmp_path / "wf.workflow.yaml").write_text(workflow, encoding="utf-8")
    run.ok("apply", "wf.workflow.yaml")
    return run


def test_an_empty_labelstudio_result_is_the_empty_label(run, tmp_path):
    project = _ls_project(run, tmp_path)
    export = [{"id": 1, "data": {"image": "a.jpg"}, "predictions": [{"score": 0.99, "result": []}]},
              {"id": 2, "data": {"image": "b.jpg"},
               "annotations": [{"id": 7, "completed_by": {"email": "ann@x"}, "result": []}]}]
    (tmp_path / "ls-export.json").write_text(json.dumps(export), encoding="utf-8")
    report = project.json("ingest", "labelstudio:ls-export.json", "--json")
    assert (report["ingested"], report["rejected"], report["prior_votes"]) == (2, 0, 1)
    first = project.json("show", "1", "--json")["task"]
    assert (first["status"], first["final_label"]) == ("done", [])
    votes = [(a["worker"], a["label"]) for a in project.json("show", "2", "--json")["annotations"]]
    assert votes == [("labelstudio:ann@x", [])]


def test_an_empty_multi_choice_from_labelstudio_is_a_vote(run, tmp_path):
    project = _ls_project(run, tmp_path, LS_WORKFLOW.replace("{type: boxes}", "{type: multi_choice, choices: [a, b]}"))
    export = [{"id": 1, "data": {}, "annotations": [
        {"id": 7, "completed_by": {"email": "ann@x"},
         "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": []}}]},
        {"id": 8, "completed_by": {"email": "bob@x"}, "result": []}]}]
    (tmp_path / "ls-export.json").write_text(json.dumps(export), encoding="utf-8")
    report = project.json("ingest", "labelstudio:ls-export.json", "--json")
    assert (report["rejected"], report["prior_votes"]) == (0, 2)
    assert project.json("show", "1", "--json")["task"]["final_label"] == []


def test_the_labelstudio_sink_writes_falsy_classes_and_the_empty_label_round_trips(run, tmp_path):
    project = _ls_project(run, tmp_path)
    falsy = [box(1, 1, 2, 2, 0), box(5, 5, 2, 2, ""), box(9, 9, 2, 2, False)]
    rows = [{"id": "E", "data": {}, "prediction": {"label": [], "confidence": 0.99}},
            {"id": "Z", "data": {"width": 100, "height": 100},  # boxes are pixels, written as percent of it
             "prediction": {"label": falsy, "confidence": 0.99}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    project.ok("ingest", "t.jsonl")
    project.ok("run")
    written = json.loads((tmp_path / "out" / "ls.json").read_text(encoding="utf-8"))
    results = {t["data"].get("id", n): t["annotations"][0]["result"] for n, t in enumerate(written)}
    assert sorted(len(r) for r in results.values()) == [0, 3]
    (filled,) = [r for r in results.values() if r]
    assert [r["value"]["rectanglelabels"] for r in filled] == [[0], [""], [False]]
    # read back by a project of its own: the same labels, as prior votes
    again = tmp_path / "again"
    again.mkdir()
    other = _ls_project(type(run)(again), again, LS_WORKFLOW.split("sinks:")[0])
    export = [{"id": n, "data": {}, "annotations": [{**t["annotations"][0], "completed_by": {"email": "x@y"}}]}
              for n, t in enumerate(written, 1)]
    (again / "ls.json").write_text(json.dumps(export), encoding="utf-8")
    report = other.json("ingest", "labelstudio:ls.json", "--json")
    assert (report["rejected"], report["prior_votes"]) == (0, 2)
    labels = [a["label"] for n in ("1", "2") for a in other.json("show", n, "--json")["annotations"]]
    assert sorted(labels, key=len) == [[], falsy]


# -- 5: prediction.entropy is never negative ---------------------------------------------------------
@pytest.mark.parametrize("scores, entropy", [
    ({"cat": 1.0, "dog": -0.2}, 0.0),  # was -0.40
    ({"cat": 0.5, "dog": -0.5}, 0.0),  # was null
    ({"cat": 0.5, "dog": 0.5, "cow": -3}, 1.0),
    ({"cat": -1, "dog": -2}, None),
    ({"cat": 0, "dog": 0}, None),
])
def test_prediction_entropy_counts_only_positive_scores(scores, entropy):
    from rules.context import score_facts

    assert score_facts(scores)["entropy"] == entropy


def test_a_negative_score_does_not_make_a_rule_read_a_negative_entropy(tmp_path):
    p = Project(tmp_path, """\
workflow: e
labels: {type: choice, choices: [cat, dog]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: negative
    when: prediction.entropy < 0
    do: {hold: "negative entropy"}
  - name: q
    do: {annotate: q}
""")
    p.ingest([{"id": "T1", "data": {}, "prediction": {"label": "cat", "scores": {"cat": 1.0, "dog": -0.2}}}])
    assert p.show("T1")["task"]["status"] == "open"


# -- 6: the median of numbers is exact, and its form never depends on the order ----------------------
def test_an_even_median_of_integers_is_exact():
    assert aggregate([10**20, 10**20 + 2], "number").label == 10**20 + 1
    odd = aggregate([2**53 + 1, 2**53 + 4], "number").label  # 2**53 + 2.5: no integer, the nearest float
    assert isinstance(odd, float) and odd == float(2**53 + 2)
    assert aggregate([1e308, 1.7e308], "number").label == 1.35e308
    assert aggregate([1, 2], "number").label == 1.5


def test_equal_votes_of_two_forms_give_one_form_whatever_the_order():
    for values in ([1, 1.0, 1], [1.0, 1, 1.0], [1, 1.0], [2, 1.0, 1, 3]):
        forms = {repr(aggregate(list(order), "number").label) for order in itertools.permutations(values)}
        assert len(forms) == 1, (values, forms)
    assert repr(aggregate([1.0, 1, 1.0], "number").label) == "1"  # an integer before a float equal to it
    spans = {json.dumps(aggregate(list(order), "spans").label)
             for order in itertools.permutations([[span(1, 5.0)], [span(1.0, 5)], [span(1, 5)]])}
    assert len(spans) == 1


def test_the_exported_median_of_two_huge_integers_is_exact(tmp_path):
    p = Project(tmp_path, """\
workflow: n
labels: {type: number}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 2}
on_quorum:
  - name: take
    do: accept
""")
    for name in ("a1", "a2"):
        p.worker(name, "annotator")
    p.ingest([{"id": "BIG", "data": {}}])
    for name, value in (("a1", "100000000000000000000"), ("a2", "100000000000000000002")):
        view = p.claim(name)
        p.submit(view["assignment"], name, "--value", value)
    (row,) = p.run_ok("export").stdout.splitlines()
    assert '"label": 100000000000000000001' in row


# -- 7: messages tell a number from the text spelling it; CSV rejects name the CSV column -------------
CHOICES = """\
workflow: g
labels: {type: choice, choices: ["1", cat]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: q
    do: {annotate: q}
"""


def test_a_label_of_another_kind_is_shown_as_json_with_its_kind(tmp_path):
    p = Project(tmp_path, CHOICES)
    p.worker("u1", "annotator")
    p.ingest([{"id": "T1", "data": {}}])
    view = p.claim("u1")
    refused = p.run("submit", view["assignment"], "--as", "u1", "--value", "1")
    assert refused.returncode != 0
    assert 'label 1 (a number) is not one of "1", "cat"' in refused.stderr
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "G1", "data": {}, "answer": 1}) + "\n")
    assert p.json("gold", "add", gold)["rejected"] == 1
    (reject,) = p.json("rejects")
    assert reject["reason"] == '`answer`: label 1 (a number) is not one of "1", "cat"'
    # text is shown as before: the kinds are the same
    assert LabelSpec(type="choice", choices=("1", "cat")).problem("dog") == 'label "dog" is not one of 1, cat'
    assert LabelSpec(type="boxes", choices=("1",)).problem([box(0, 0, 1, 1, 1)]) == '1 (a number) is not one of "1"'


@pytest.mark.parametrize("how", ["file", "plugin"])
def test_csv_rejects_name_the_prediction_label_column(tmp_path, how):
    p = Project(tmp_path, CHOICES.replace('type: choice, choices: ["1", cat]', "type: number, min: 0, max: 5"))
    (tmp_path / "n.csv").write_text("id,prediction_label\nA,9\nB,x\n", encoding="utf-8")
    p.run_ok("ingest", "n.csv" if how == "file" else "csv:n.csv")
    assert sorted((r["line"], r["reason"]) for r in p.json("rejects")) == [
        (2, "`prediction_label`: label 9 is outside 0..5"), (3, '`prediction_label` "x" is not a finite number')]
    q = Project(tmp_path / "choice", CHOICES)
    (tmp_path / "choice" / "c.csv").write_text("id,prediction_label\nA,dog\n", encoding="utf-8")
    q.run_ok("ingest", "c.csv" if how == "file" else "csv:c.csv")
    assert [r["reason"] for r in q.json("rejects")] == ['`prediction_label` "dog" is not one of 1, cat']


# -- 8: gold add reads a .json array as ingest does; --json names a stream's source -------------------
PRETTY = '[\n  {"id": "G1", "data": {}, "answer": "1"},\n  {"id": "G2", "data": {}, "answer": "cat"}\n]\n'


def test_gold_add_reads_a_pretty_printed_json_array(tmp_path):
    p = Project(tmp_path, CHOICES)
    (tmp_path / "gold.json").write_text(PRETTY, encoding="utf-8")
    assert p.json("gold", "add", tmp_path / "gold.json") == {
        "added": 2, "updated": 0, "unchanged": 0, "rejected": 0, "source": str(tmp_path / "gold.json")}
    # a bad element is rejected at the line where it starts, with the array's text; the rest goes in
    (tmp_path / "more.json").write_text(
        '[\n  {"id": "G3", "data": {}, "answer": "dog"},\n  {"id": "G4", "data": {"x": 1e400},\n'
        '   "answer": "cat"},\n  {"id": "G5", "data": {}, "answer": "cat"}\n]\n', encoding="utf-8")
    assert p.json("gold", "add", tmp_path / "more.json")["added"] == 1
    found = sorted((r["line"], r["reason"]) for r in p.json("rejects"))
    assert found == [(2, '`answer`: label "dog" is not one of 1, cat'),
                     (3, "the number `1e400` at line 3, column 30 is not finite, which JSON cannot carry")]


def test_gold_add_from_standard_input_reads_an_array_and_names_its_source(tmp_path):
    p = Project(tmp_path, CHOICES)
    report = p.json("gold", "add", "-", input=PRETTY)
    assert (report["added"], report["rejected"]) == (2, 0)
    assert report["source"].startswith("<stdin ")
    report = p.json("gold", "add", "-", input='{"id": "G9", "answer": "dog"}\n')
    assert report["rejected"] == 1
    assert [r["source"] for r in p.json("rejects")] == [report["source"]]


# -- 10: the confusion table shows labels that print alike as different names, aligned ---------------
def test_text_labels_that_print_alike_are_told_apart_and_aligned(tmp_path):
    import unicodedata

    from rich.cells import cell_len

    nfc, nfd = unicodedata.normalize("NFC", "Ångström"), unicodedata.normalize("NFD", "Ångström")
    p = Project(tmp_path, """\
workflow: c
labels: {type: text}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 2}
on_quorum:
  - name: take the first
    do: {accept: {label: "votes.labels[0]"}}
""")
    for name in ("u1", "u2"):
        p.worker(name, "annotator")
    plan = {"T1": ("cat", "cat "), "T2": (nfc, nfd), "T3": ("   ", "cat"), "T4": ("猫", "猫")}
    p.ingest([{"id": ref} for ref in plan])
    for ref, pair in plan.items():
        for name, label in zip(("u1", "u2"), pair):
            view = p.claim(name)
            p.submit(view["assignment"], name, "--value", json.dumps(label))
    report = p.json("agreement")
    escaped = '"A\\u030angstro\\u0308m"'
    assert sorted(report["confusion"]) == sorted(['"   "', '"cat "', "cat", escaped, nfc, "猫"])
    for name in report["confusion"]:  # a name that parses as JSON is that text
        if name.startswith('"'):
            assert json.loads(name) in ("   ", "cat ", nfd)
    out = p.run_ok("agreement").stdout
    lines = out[out.index("confusion"):].splitlines()
    names = sorted(report["confusion"], key=len, reverse=True)
    rows = [next(n for n in names if line.startswith(n + " ")) for line in lines[2:]]
    assert sorted(rows) == sorted(report["confusion"])  # each a row of its own, by its name
    widths = {cell_len(line) for line in lines[1:]}
    assert len(widths) == 1, lines  # every row as wide on a terminal as the header
