"""Fixes of the twelfth session: gold add and the version active in its transaction, the label
fields a stored version shows, ingest's messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_races_fix_s11 import NOW, V1, apply_v2, once_after


@pytest.fixture
def project(tmp_path: Path, monkeypatch):
    """A database file with the races' V1 applied (choices a, b; queues triage, legal, senior)."""
    from router.engine import Engine
    from router.store import Store

    monkeypatch.setenv("LABELYARD_NOW", NOW)
    store, _ = Store.init(str(tmp_path / "lab.db"))
    engine = Engine(store)
    engine.apply(V1, "v1.workflow.yaml", actor="lead")
    yield engine
    engine.close()


def test_gold_add_checks_its_rows_by_the_version_applied_before_its_transaction(project, monkeypatch, tmp_path):
    """`gold add` checked its rows by v1, loaded before it read the file; v2 (choices a, c; no
    queue `legal`), applied by another process before its transaction, did not check them: it
    stored answer `b` and a question in `legal`, refused answer `c`, and marked them version 1."""
    from router.gold import add_gold

    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "G1", "data": {}, "answer": "b"}\n'
                    '{"id": "G2", "data": {}, "answer": "c"}\n'
                    '{"id": "G3", "data": {}, "answer": "a", "queue": "legal"}\n'
                    'not json\n')
    # v2 lands once the rows are read and checked, as the transaction is opened
    once_after(project.store, "transaction", monkeypatch, lambda: apply_v2(project))
    report = add_gold(project, str(gold), "lead")
    assert (report.added, report.rejected) == (1, 3)
    store = project.store
    assert [tuple(r) for r in store.query("SELECT external_id, workflow_version, queue FROM tasks")] == [
        ("G2", store.active_workflow_id(), "triage")]
    reasons = [tuple(r) for r in store.query("SELECT line, reason FROM rejects ORDER BY id")]
    assert [line for line, _ in reasons] == [1, 3, 4]  # in the file's order
    assert reasons[:2] == [(1, '`answer`: label "b" is not one of a, c'),
                           (3, '`queue` "legal" is not a queue of workflow g')]


def test_gold_add_updates_an_answer_by_the_version_applied_before_its_transaction(project, monkeypatch, tmp_path):
    """An answer changed to one only v2 accepts is an update, not a reject, when v2 was applied
    while the file was read."""
    from router.gold import add_gold

    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "G1", "data": {}, "answer": "a"}\n')
    add_gold(project, str(gold), "lead")
    gold.write_text('{"id": "G1", "data": {}, "answer": "c"}\n')
    once_after(project.store, "transaction", monkeypatch, lambda: apply_v2(project))
    report = add_gold(project, str(gold), "lead")
    assert (report.updated, report.rejected) == (1, 0)
    assert project.store.gold_label(project.store.task("ext:G1")["id"]) == "c"


# -- 2: a version stored before validation refused keys with no effect on its labels ----------------
TEXT_WORKFLOW = """\
workflow: notes
labels: {type: text}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 1}
on_quorum:
  - name: take
    do: accept
"""


def _stored_with(db: Path, **keys) -> None:
    """The active version's stored JSON given ``labels`` keys, as `apply` stored them before it refused them."""
    import json
    import sqlite3

    with sqlite3.connect(db) as conn:
        (spec,) = conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()
        spec = json.loads(spec)
        spec["labels"].update(keys)
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()


def test_a_text_version_stored_with_choices_shows_and_checks_none(tmp_path):
    """A text version stored with `choices` showed them in `claim` (and the TUI's work and workflow
    screens), and ingest refused a text prediction outside them."""
    from lead_support import Project
    from router.queries import Queries

    p = Project(tmp_path, TEXT_WORKFLOW)
    _stored_with(p.db, choices=["yes", "no"], min=0, max=1, iou=0.9)
    p.worker("al", "annotator")
    report = p.ingest([{"id": "T1", "prediction": {"label": "maybe", "confidence": 0.5}}])
    assert (report["ingested"], report["rejected"]) == (1, 0)
    view = p.claim("al")
    assert (view["label_type"], view["choices"]) == ("text", [])
    assert "choices:" not in p.run_ok("claim", "--as", "al", "--resume").stdout
    p.submit(view["assignment"], "al", "--label", "a free note")
    assert p.show("T1")["task"]["final_label"] == "a free note"
    queries = Queries.open(str(p.db))
    try:
        assert queries.workflow_info()["choices"] == []  # the TUI's workflow screen
    finally:
        queries.close()


@pytest.mark.parametrize("labels, expected", [
    ({"type": "text", "choices": ["a"], "min": 0, "max": 1, "iou": 0.9}, ("text", (), None, None, 0.5)),
    ({"type": "choice", "choices": ["a"], "min": 0, "iou": 0.9}, ("choice", ("a",), None, None, 0.5)),
    ({"type": "number", "choices": ["a"], "min": 0, "max": 1}, ("number", (), 0, 1, 0.5)),
    ({"type": "spans", "choices": ["a"], "iou": 0.9}, ("spans", ("a",), None, None, 0.5)),
    ({"type": "boxes", "choices": ["a"], "iou": 0.9}, ("boxes", ("a",), None, None, 0.9)),
])
def test_a_stored_labels_section_keeps_only_the_keys_its_type_reads(labels, expected):
    from rules.workflow import LabelSpec

    spec = LabelSpec.from_spec(labels)
    assert (spec.type, spec.choices, spec.min, spec.max, spec.iou) == expected


# -- 3: the rejects messages, each on its own line ----------------------------------------------------
def test_status_prints_each_message_on_one_line_however_narrow_the_terminal(tmp_path):
    """rich fits its lines to the terminal's width even when standard output is a pipe: in a
    narrow terminal `status | grep rejected` gave "rejected input rows: 2 " and "(labelyard
    rejects)" on a line of its own. (The glued "…(labelyard rejects)rejected rows are kept…" seen
    once was not reproduced: ingest's and gold add's messages end with their newline.)"""
    from lead_support import Project

    p = Project(tmp_path, TEXT_WORKFLOW)
    (tmp_path / "bad.jsonl").write_text('{"id": "T1"}\nnot json\n{"data": {}}\n')
    ingest = p.run("ingest", tmp_path / "bad.jsonl")
    assert ingest.stdout.startswith("ingested 1, duplicates 0, rejected 2\n")
    assert ingest.stderr == f"rejected rows are kept with their reasons: labelyard rejects --db {p.db}\n"
    p.env["COLUMNS"] = "30"
    lines = p.run_ok("status").stdout.splitlines()
    assert lines[:2] == ["workflow: notes v1", "tasks: open 1, done 0, held 0, invalid 0  (total 1)"]
    assert lines[-1] == "rejected input rows: 2 (labelyard rejects)"
