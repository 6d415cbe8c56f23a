"""A box or span class that is a list or an object is that JSON value, never the text that spells it.

``canonical`` gave lists and objects as their canonical JSON text, a plain ``str`` equal to a text
class of the same spelling: consensus (``top_count``), gold scoring and ``worker.agreement`` took the
class ``["car"]`` and the text ``"[\\"car\\"]"`` for one class while ``votes.unanimous``,
``votes.entropy``, kappa and the confusion table kept them apart. Likewise a class ``["a", "b"]``
was the class ``["b", "a"]`` to consensus (a list of text compared as a set) but not to
``unanimous``.
"""

from __future__ import annotations

import json
import sqlite3

from lead_support import Project
from router.agreement import agreement_of
from router.consensus import aggregate, canonical, same_class, same_label
from rules.workflow import LabelSpec

BOXES = LabelSpec(type="boxes", iou=0.5)
SPANS = LabelSpec(type="spans")
SPELT = '["car"]'  # the text that spells the list ["car"] as canonical JSON


def box(cls):
    return [{"x": 0, "y": 0, "width": 10, "height": 10, "label": cls}]


def span(cls):
    return [{"start": 0, "end": 5, "label": cls}]


def test_a_list_or_object_is_never_the_text_spelling_it():
    from router.consensus import JsonStructure

    assert canonical(["car"]) != canonical(SPELT)
    assert canonical({"a": 1}) != canonical('{"a": 1}')
    assert canonical(["y", "x", "x"]) == canonical(["x", "y"]) == JsonStructure('["x", "y"]')
    assert str(canonical({"b": 1, "a": 2.0})) == '{"a": 2, "b": 1}'
    assert not same_class(["car"], SPELT) and not same_class({"a": 1}, '{"a": 1}')
    assert same_class({"b": 1, "a": 2.0}, {"a": 2, "b": 1})  # key order and 2.0 are no difference


def test_box_and_span_consensus_keeps_a_list_class_apart_from_its_spelling():
    for vote in (aggregate([box(SPELT), box(["car"])], "boxes"), aggregate([span(SPELT), span(["car"])], "spans")):
        assert vote.tie and vote.label is None and vote.top_count == 0 and not vote.unanimous
    c = aggregate([box(["car"]), box(["car"]), box(SPELT)], "boxes")
    assert c.label == box(["car"]) and c.top_count == 2 and not c.unanimous
    same = aggregate([box({"k": 1.0, "j": 2}), box({"j": 2, "k": 1})], "boxes")
    assert same.unanimous and same.top_count == 2


def test_a_list_class_keeps_its_order_in_every_comparison():
    """``["a", "b"]`` and ``["b", "a"]`` are two JSON values: unanimous said so, top_count did not."""
    c = aggregate([box(["a", "b"]), box(["b", "a"])], "boxes")
    assert not c.unanimous and c.tie and c.top_count == 0
    assert not same_label(box(["a", "b"]), box(["b", "a"]), BOXES)
    assert same_label(box(["a", "b"]), box(["a", "b"]), BOXES)


def test_gold_and_agreement_judge_a_list_class_as_kappa_does():
    for spec, make in ((BOXES, box), (SPANS, span)):
        assert not same_label(make(SPELT), make(["car"]), spec)
        assert same_label(make(["car"]), make(["car"]), spec)
    assert not same_label(SPELT, ["car"])  # labels that fit no type: by canonical form too
    rows = [("t1", "a", box(SPELT)), ("t1", "b", box(["car"])), ("t2", "a", box("x")), ("t2", "b", box("x"))]
    kappa, _ = agreement_of(rows)
    assert kappa is not None and kappa < 1


WORKFLOW = """\
workflow: bx
labels: {type: boxes}
queues:
  q: {roles: [annotator]}
on_create: [{name: all, do: {annotate: q, overlap: 2}}]
on_quorum:
  - name: ok
    when: votes.top_count == 2
    do: accept
  - name: split
    do: {hold: "split"}
"""


def _facts(project, task):
    (event,) = [e for e in project.show(task)["events"] if e["kind"] in ("final", "held")]
    return event["kind"], event["detail"]["facts"]["votes"]


def test_through_the_cli_the_votes_facts_agree_with_each_other(tmp_path):
    """The tester's steps: one annotator draws the class as text, the other as a list."""
    p = Project(tmp_path, WORKFLOW)
    for name in ("w1", "w2"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1", "data": {}}, {"id": "T2", "data": {}}])
    for task, classes in (("T1", (SPELT, ["car"])), ("T2", (["car"], ["car"]))):
        for name, cls in zip(("w1", "w2"), classes):
            view = p.claim(name)
            assert view["external_id"] == task
            p.submit(view["assignment"], name, "--value", json.dumps(box(cls)))
    kind, votes = _facts(p, "T1")
    assert (kind, votes["top_count"], votes["unanimous"], votes["tie"], votes["entropy"]) == ("held", 0, False,
                                                                                              True, 1.0)
    kind, votes = _facts(p, "T2")
    assert (kind, votes["top_count"], votes["unanimous"], votes["entropy"]) == ("final", 2, True, 0.0)
    report = p.json("agreement")
    assert {a["worker"]: (a["decided"], a["matched"]) for a in report["annotators"]} == {"w1": (1, 1),
                                                                                        "w2": (1, 1)}
    assert report["confusion"] == {SPELT: {SPELT: 2}}  # the list's name: T2's final class, both votes


def test_a_gold_list_class_is_not_answered_by_the_text_spelling_it(tmp_path):
    p = Project(tmp_path, WORKFLOW.replace("overlap: 2", "overlap: 1") + "quality:\n  gold: {rate: 1.0}\n")
    p.worker("u1", "annotator")
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"id": ref, "answer": box(cls)}) + "\n"
                            for ref, cls in (("G1", ["car"]), ("G2", ["car"]))))
    p.json("gold", "add", gold)
    for answer in (SPELT, ["car"]):  # G1 answered with the text: wrong; G2 with the list: right
        view = p.claim("u1")
        p.submit(view["assignment"], "u1", "--value", json.dumps(box(answer)))
    (row,) = [a for a in p.json("agreement")["annotators"] if a["worker"] == "u1"]
    assert (row["gold_answered"], row["gold_correct"]) == (2, 1)


def test_an_older_database_is_judged_again_by_the_migration(tmp_path):
    """Marks and gold counters an older Labelyard stored (the text taken for the list it spells)
    are judged again by ``labelyard init``; a gold counter it mends gets a ``gold_rescored`` event."""
    p = Project(tmp_path, WORKFLOW.replace("overlap: 2", "overlap: 3").replace("== 2", ">= 2")
                + "quality:\n  gold: {rate: 1.0}\n")
    for name in ("w1", "w2", "w3"):
        p.worker(name, "annotator")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "G1", "answer": box(["car"])}) + "\n")
    p.json("gold", "add", gold)
    p.ingest([{"id": "T1", "data": {}}])
    for task in ("G1", "T1"):
        for name, cls in (("w1", ["car"]), ("w2", ["car"]), ("w3", SPELT)):
            view = p.claim(name)
            assert view["external_id"] == task
            p.submit(view["assignment"], name, "--value", json.dumps(box(cls)))
    assert p.show("T1")["task"]["final_label"] == box(["car"])

    def stored():
        with sqlite3.connect(p.db) as conn:
            marks = dict(conn.execute("SELECT worker, agrees FROM annotations WHERE agrees IS NOT NULL"))
            sums = {w: row for w, *row in conn.execute(
                "SELECT id, final_votes, final_agreed, gold_answered, gold_correct FROM workers WHERE id LIKE 'w%'")}
            events = [json.loads(d) for (d,) in conn.execute("SELECT detail FROM events WHERE kind = 'gold_rescored'")]
        return marks, sums, events

    judged = stored()
    assert judged == ({"w1": 1, "w2": 1, "w3": 0},
                      {"w1": [1, 1, 1, 1], "w2": [1, 1, 1, 1], "w3": [1, 0, 1, 0]}, [])
    conn = sqlite3.connect(p.db, isolation_level=None)
    for statement in ("UPDATE annotations SET agrees = 1 WHERE worker = 'w3' AND agrees = 0",  # as it was judged
                      "UPDATE workers SET final_agreed = 1, gold_correct = 1 WHERE id = 'w3'",
                      "UPDATE schema_version SET version = 10",
                      "DELETE FROM _sqlite_migrations WHERE name = 'm011_json_value_classes'"):
        conn.execute(statement)
    conn.close()
    assert "run `labelyard init` to migrate" in p.run("status").stderr
    assert p.json("init")["migrations_applied"] == ["m011_json_value_classes"]
    marks, sums, events = stored()
    assert (marks, sums) == judged[:2]
    assert events == [{"worker": "w3", "gold_answered": 1, "gold_correct": 0,
                       "was": {"gold_answered": 1, "gold_correct": 1}, "migration": "m011_json_value_classes"}]
