"""Gold scoring: answers judged as consensus judges votes, re-scored when a gold answer changes,
and an ingested row never hides behind a gold question's id."""

from __future__ import annotations

import json

import pytest

from lead_support import Project, engine_at
from router.consensus import same_label
from rules.workflow import LabelSpec


def gold_project(tmp_path, labels: str, on_worker: str = "") -> Project:
    p = Project(tmp_path, f"""\
workflow: g
labels: {labels}
queues:
  q1: {{roles: [annotator]}}
on_create:
  - do: {{annotate: q1, overlap: 1}}
on_quorum:
  - do: accept
{on_worker}quality:
  gold: {{rate: 1.0}}
""")
    p.worker("u1", "annotator")
    return p


def add_gold(p: Project, rows: list[dict], name: str = "gold.jsonl") -> dict:
    path = p.folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p.json("gold", "add", path)


def answer(p: Project, label, ref: str, **kw) -> dict:
    view = p.claim("u1", **kw)
    assert view["external_id"] == ref
    return p.submit(view["assignment"], "u1", "--value", json.dumps(label), **kw)


def accuracy(p: Project) -> tuple[int, float | None]:
    (row,) = [a for a in p.json("agreement")["annotators"] if a["worker"] == "u1"]
    return row["gold_answered"], row["gold_accuracy"]


BOX = {"x": 10, "y": 10, "width": 20, "height": 20, "label": "car"}


def test_same_label_compares_as_the_label_type_does():
    multi, number = LabelSpec(type="multi_choice", choices=("x", "y")), LabelSpec(type="number")
    boxes, spans = LabelSpec(type="boxes", iou=0.5), LabelSpec(type="spans")
    assert same_label(["y", "x"], ["x", "y"], multi) and not same_label(["x"], ["x", "y"], multi)
    assert same_label(4.0, 4, number) and not same_label(4.5, 4, number)
    shifted = {"label": "car", "height": 20.5, "width": 20, "y": 10, "x": 10}  # IoU 0.976, keys reordered
    other = {"x": 60, "y": 60, "width": 5, "height": 5, "label": "person"}
    assert same_label([other, shifted], [BOX, other], boxes)
    assert not same_label([{**shifted, "label": "bus"}, other], [BOX, other], boxes)  # wrong class
    assert not same_label([shifted], [BOX, other], boxes)  # a missed object
    assert not same_label([{**BOX, "x": 25}], [BOX], boxes)  # IoU 0.33
    assert same_label([{"start": 0, "end": 9}], [{"start": 0, "end": 10}], spans)
    assert not same_label([{"start": 0, "end": 4}], [{"start": 0, "end": 10}], spans)
    assert same_label("a", "a") and not same_label("a", "A")


@pytest.mark.parametrize("labels, gold, given", [
    ("{type: multi_choice, choices: [x, y, z]}", ["x", "y"], ["y", "x"]),
    ("{type: number}", 4, 4.0),
    ("{type: boxes}", [BOX], [{"label": "car", "height": 20.5, "width": 20, "y": 10, "x": 10}]),
])
def test_a_right_answer_in_another_form_scores_as_right(tmp_path, labels, gold, given):
    p = gold_project(tmp_path, labels)
    add_gold(p, [{"id": "G1", "answer": gold}])
    answer(p, given, "G1")
    assert accuracy(p) == (1, 1.0)
    engine = engine_at(p.db, pytest.MonkeyPatch(), 0)
    assert engine.store.gold_accuracy(["u1"]) == {"u1": (1, 1)}  # what worker.gold_* and weighting read
    engine.close()


FAILING_GOLD = """\
on_worker:
  - name: failing gold
    when: worker.gold_count >= 3 and worker.gold_accuracy < 0.7
    do: {pause: worker, reason: "gold accuracy below 70%"}
"""


def test_a_corrected_gold_answer_rescores_the_workers_who_answered_it(tmp_path):
    p = gold_project(tmp_path, "{type: choice, choices: [a, b]}", FAILING_GOLD)
    add_gold(p, [{"id": f"G{i}", "answer": "a"} for i in (1, 2, 3)])
    answer(p, "b", "G1", hours=1)
    answer(p, "b", "G2", hours=2)
    assert accuracy(p) == (2, 0.0)
    # the lead finds G1 and G2 were wrong: "b" is right
    assert add_gold(p, [{"id": "G1", "answer": "b"}, {"id": "G2", "answer": "b"}], "fix.jsonl") == \
        {"added": 0, "updated": 2, "unchanged": 0, "rejected": 0,
        "source": str(p.folder / "fix.jsonl")}
    assert accuracy(p) == (2, 1.0)
    engine = engine_at(p.db, pytest.MonkeyPatch(), 3)
    rows = engine.store.query("SELECT actor, detail FROM events WHERE kind = 'gold_rescored'")
    engine.close()
    assert [(r["actor"], json.loads(r["detail"])) for r in rows] == [
        ("lena", {"worker": "u1", "gold_answered": 2, "gold_correct": 2,
                  "was": {"gold_answered": 2, "gold_correct": 0}})]
    answer(p, "a", "G3", hours=3)  # 3/3 now: the rule reads the re-scored counters, no pause
    worker = {w["id"]: w for w in p.json("workers", "list")}["u1"]
    assert not worker["paused"] and accuracy(p) == (3, 1.0)
    # adding the same file again changes nothing, and says nothing
    add_gold(p, [{"id": "G1", "answer": "b"}], "fix.jsonl")
    engine = engine_at(p.db, pytest.MonkeyPatch(), 4)
    assert engine.store.one("SELECT count(*) FROM events WHERE kind = 'gold_rescored'")[0] == 1
    engine.close()


def test_an_ingested_row_with_a_gold_questions_id_is_quarantined(tmp_path):
    p = gold_project(tmp_path, "{type: choice, choices: [a, b]}")
    add_gold(p, [{"id": "G3", "answer": "a"}])
    p.ingest([{"id": "T1"}])
    report = p.ingest([{"id": "T1"}, {"id": "G3"}, {"id": "T2"}], "more.jsonl")
    assert (report["ingested"], report["duplicates"], report["rejected"]) == (1, 1, 1)
    (reject,) = p.json("rejects")
    assert (reject["line"], reject["reason"]) == (2, "id G3 is a gold question")
    assert p.show("G3")["task"]["is_gold"]
