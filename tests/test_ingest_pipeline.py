"""The two ingest arrangements (a writer thread, or a forked routing child) store exactly the same thing."""

from __future__ import annotations

import json

import pytest

from router.engine import Engine
from router.errors import LabelyardError
from router.ingest import read_file
from router.store import Store

WORKFLOW = (
    "workflow: p\nlabels: {type: choice, choices: [a, b]}\n"
    "queues: {q: {roles: [annotator]}, legal: {roles: [annotator], skills: [legal]}}\n"
    "on_create:\n"
    "  - name: sure\n    when: prediction.confidence >= 0.9\n    do: accept\n"
    "  - name: legal\n    when: task.category == \"legal\"\n    do: {annotate: legal, overlap: 2}\n"
    "  - name: rest\n    do: {annotate: q, overlap: 1, priority: 1 - prediction.confidence}\n"
)


def _rows(path, n: int) -> None:
    lines = []
    for i in range(n):
        if i % 97 == 13:
            lines.append("{not json")
            continue
        row = {"id": f"T{i % 1500}", "data": {"text": f"row {i}"}, "category": "legal" if i % 7 == 0 else "misc",
               "prediction": {"label": "a" if i % 2 else "b", "confidence": (i % 100) / 100}}
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _engine(path) -> Engine:
    store, _ = Store.init(str(path))
    engine = Engine(store)
    engine.apply(WORKFLOW, "p.workflow.yaml")
    return engine


def _contents(engine: Engine) -> tuple:
    tasks = engine.store.query(
        "SELECT id, external_id, category, data, status, stage, queue, needed, free_slots, priority, "
        "pred_label, pred_confidence, final_label, final_by, final_rule FROM tasks ORDER BY id")
    events = engine.store.query("SELECT task_id, kind, rule, action FROM events WHERE task_id IS NOT NULL ORDER BY id")
    rejects = engine.store.query("SELECT line, reason FROM rejects ORDER BY line")
    return [tuple(r) for r in tasks], [tuple(r) for r in events], [tuple(r) for r in rejects]


def test_forked_and_threaded_ingests_store_the_same_tasks_events_and_rejects(tmp_path):
    source = tmp_path / "rows.jsonl"
    _rows(source, 2400)  # 1,500 distinct ids, repeats counted as duplicates, some bad lines
    results = {}
    for fork in (False, True):
        engine = _engine(tmp_path / f"{fork}.db")
        lines = []
        report = engine.ingest(read_file(str(source), ("a", "b")), "rows.jsonl", progress=lines.append, fork=fork)
        results[fork] = (report.as_dict(), _contents(engine))
        counted = {r["rule"]: r["n"] for r in engine.store.query("SELECT rule, n FROM rule_counts WHERE section = 'on_create'")}
        assert counted == report.as_dict()["routed"]  # the dashboard's counters, kept by a trigger
        assert lines == sorted(lines) and lines[-1] == 2400
        engine.close()
    assert results[True] == results[False]
    report = results[True][0]
    good = [i for i in range(2400) if i % 97 != 13]
    distinct = len({i % 1500 for i in good})
    assert report["ingested"] == distinct and report["rejected"] == 2400 - len(good)
    assert report["duplicates"] == len(good) - distinct
    assert sum(report["routed"].values()) == distinct


def test_an_error_while_reading_in_the_child_reaches_the_caller(tmp_path):
    engine = _engine(tmp_path / "e.db")

    def failing_rows(exc):
        yield from read_file(str(_one_row(tmp_path)), ("a", "b"))
        raise exc

    with pytest.raises(LabelyardError, match="rows.jsonl: disk on fire"):
        engine.ingest(failing_rows(LabelyardError("rows.jsonl: disk on fire")), "rows.jsonl", fork=True)
    with pytest.raises(LabelyardError, match="the reading process failed: ValueError: bad bytes"):
        engine.ingest(failing_rows(ValueError("bad bytes")), "rows.jsonl", fork=True)
    # the row read before each failure was still in the unfinished batch: nothing was half-written
    assert engine.store.one("SELECT count(*) FROM tasks")[0] == 0
    engine.close()


def _one_row(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"id": "only", "data": {}}) + "\n", encoding="utf-8")
    return path


def test_a_batch_whose_ids_another_ingest_stored_meanwhile_keeps_only_the_new_rows(tmp_path):
    """The router skipped the ids stored when it read; the writer finds the ones stored since."""
    from router.ingest_pipeline import BatchWriter

    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"id": f"R{i}", "data": {"n": i}}) + "\n" for i in range(6)),
                      encoding="utf-8")
    engine = _engine(tmp_path / "c.db")
    batch = engine._route_batch(engine.workflow, engine.workflow_id,
                                list(read_file(str(source), ("a", "b"))), "rows.jsonl")
    assert len(batch.tasks) == 6
    # meanwhile another ingest stores R2 and R4
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": f"R{i}", "data": {"n": -i}}) + "\n" for i in (2, 4)), encoding="utf-8")
    assert engine.ingest(read_file(str(other), ("a", "b")), "other.jsonl").ingested == 2
    writer = BatchWriter(engine.store.path, "rows.jsonl")
    writer.write(batch)
    writer.close()
    assert (writer.report.ingested, writer.report.duplicates) == (4, 2)
    rows = engine.store.query("SELECT id, external_id, data FROM tasks ORDER BY id")
    assert [r["external_id"] for r in rows] == ["R2", "R4", "R0", "R1", "R3", "R5"]
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]  # consecutive: the undone rows left no gap
    assert json.loads(rows[0]["data"]) == {"n": -2}  # the first one stored wins
    created = engine.store.query("SELECT task_id FROM events WHERE kind = 'created' ORDER BY task_id")
    assert [r["task_id"] for r in created] == [1, 2, 3, 4, 5, 6]
    counted = engine.store.one("SELECT sum(n) FROM task_counts")[0]
    assert counted == 6  # the trigger-kept counters saw the undone rows leave
    engine.close()
