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
    _rows(source, 2400)  # 1,500 distinct ids, repeats (other data: counted as changed), some bad lines
    results = {}
    for fork in (False, True):
        engine = _engine(tmp_path / f"{fork}.db")
        lines = []
        report = engine.ingest(read_file(str(source), ("a", "b")), "rows.jsonl", progress=lines.append, fork=fork)
        results[fork] = (report.as_dict(), _contents(engine))
        counted = {r["rule"]: r["n"] for r in engine.store.query("SELECT rule, n FROM rule_counts WHERE section = 'on_create'")}
        assert counted == report.as_dict()["routed"]  # the dashboard's counters, counted per batch
        assert lines == sorted(lines) and lines[-1] == 2400
        engine.close()
    assert results[True] == results[False]
    report = results[True][0]
    good = [i for i in range(2400) if i % 97 != 13]
    distinct = len({i % 1500 for i in good})
    assert report["ingested"] == distinct and report["rejected"] == 2400 - len(good)
    assert (report["duplicates"], report["changed"]) == (0, len(good) - distinct)
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
    # their data differs from the batch's: changed rows (the stored tasks kept), not duplicates
    assert (writer.report.ingested, writer.report.duplicates, writer.report.changed) == (4, 0, 2)
    rows = engine.store.query("SELECT id, external_id, data FROM tasks ORDER BY id")
    assert [r["external_id"] for r in rows] == ["R2", "R4", "R0", "R1", "R3", "R5"]
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]  # consecutive: the undone rows left no gap
    assert json.loads(rows[0]["data"]) == {"n": -2}  # the first one stored wins
    created = engine.store.query("SELECT task_id FROM events WHERE kind = 'created' ORDER BY task_id")
    assert [r["task_id"] for r in created] == [1, 2, 3, 4, 5, 6]
    counted = engine.store.one("SELECT sum(n) FROM task_counts")[0]
    assert counted == 6  # the counters saw the undone rows leave
    engine.close()


RECOUNT = {
    "task_counts": (
        "SELECT status, coalesce(queue, ''), coalesce(stage, ''), status = 'open' AND free_slots > 0, is_gold, "
        "count(*) FROM tasks GROUP BY 1, 2, 3, 4, 5",
        "SELECT status, queue, stage, claimable, is_gold, n FROM task_counts WHERE n != 0"),
    "rule_counts": (
        "SELECT CASE WHEN kind = 'created' THEN 'on_create' ELSE coalesce(json_extract(detail, '$.section'), '') END, "
        "rule, count(*), max(at) FROM events WHERE rule IS NOT NULL GROUP BY 1, 2",
        "SELECT section, rule, n, last_at FROM rule_counts"),
    "activity": (
        "SELECT CAST(at / 3600 AS INTEGER), kind, CASE WHEN kind = 'submitted' THEN coalesce(actor, '') ELSE '' END, "
        "count(*) FROM events WHERE kind IN ('created', 'submitted', 'final') GROUP BY 1, 2, 3",
        "SELECT hour, kind, actor, n FROM activity"),
}


def test_dashboard_counters_equal_a_recount_after_ingests_a_clash_gold_and_work(tmp_path, monkeypatch):
    """New tasks and ``created`` events are counted per batch by the store, everything else by
    triggers: after all kinds of writes the counters equal counting the tables from scratch."""
    from router.errors import NothingToDo
    from router.gold import add_gold
    from router.ingest_pipeline import BatchWriter

    engine = _engine(tmp_path / "n.db")
    source = tmp_path / "rows.jsonl"
    _rows(source, 600)
    monkeypatch.setenv("LABELYARD_NOW", "1800000000")
    engine.ingest(read_file(str(source), ("a", "b")), "rows.jsonl", fork=True)
    # a batch that clashes with rows stored meanwhile (its undone rows must leave no count)
    clash = tmp_path / "clash.jsonl"
    clash.write_text("".join(json.dumps({"id": f"C{i}", "data": {}}) + "\n" for i in range(5)), encoding="utf-8")
    batch = engine._route_batch(engine.workflow, engine.workflow_id, list(read_file(str(clash), ("a", "b"))), "c")
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"id": "C3", "data": {}}) + "\n", encoding="utf-8")
    engine.ingest(read_file(str(first), ("a", "b")), "first.jsonl")
    writer = BatchWriter(engine.store.path, "c")
    writer.write(batch)
    writer.close()
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "G1", "data": {}, "answer": "a"}) + "\n", encoding="utf-8")
    assert add_gold(engine, str(gold), "lead").added == 1
    monkeypatch.setenv("LABELYARD_NOW", str(1800000000 + 7200))  # work lands in a later hour
    engine.add_worker("w1", ["annotator"], ["legal"])
    engine.add_worker("w2", ["annotator"], ["legal"])
    for _ in range(40):
        for worker in ("w1", "w2"):
            try:
                slot = engine.claim(worker)
            except NothingToDo:
                continue
            engine.submit(slot["assignment"], worker, label="a")
    for table, (recount, stored) in RECOUNT.items():
        expected = sorted(tuple(r) for r in engine.store.query(recount))
        assert sorted(tuple(r) for r in engine.store.query(stored)) == expected, table
    kept = {table: sorted(tuple(r) for r in engine.store.query(stored)) for table, (_, stored) in RECOUNT.items()}
    engine.store.recount_counters()  # the rebuild for databases loaded around the store agrees
    assert kept == {table: sorted(tuple(r) for r in engine.store.query(stored)) for table, (_, stored) in RECOUNT.items()}
    assert {r[1] for r in engine.store.query(RECOUNT["activity"][1])} == {"created", "submitted", "final"}
    engine.close()


def _big_batch(engine: Engine, tmp_path, n: int):
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps({"id": f"B{i}", "data": {"n": i}}) + "\n" for i in range(n)),
                      encoding="utf-8")
    return engine._route_batch(engine.workflow, engine.workflow_id, list(read_file(str(source), ("a", "b"))), "big")


@pytest.mark.parametrize("others_write", [False, True])
def test_the_writer_commits_a_batch_whole_alone_and_in_short_transactions_while_others_write(tmp_path, others_write):
    """Until its first commit shows whether anyone else writes, and whenever someone does,
    the writer commits ``INGEST_SHARED_ROWS`` at a time; alone, the rest of a batch at once."""
    import sqlite3

    from router import ingest_pipeline
    from router.ingest_pipeline import BatchWriter

    engine = _engine(tmp_path / "s.db")
    batch = _big_batch(engine, tmp_path, 1200)
    writer = BatchWriter(engine.store.path, "big")
    other = sqlite3.connect(engine.store.path, isolation_level=None)
    sizes = []
    write_part = writer._write

    def recording(part):
        write_part(part)
        sizes.append(len(part.tasks))
        if others_write:  # an annotator's commit lands between two of ours
            other.execute("INSERT INTO cursors (name, value, updated_at) VALUES (?, '0', 0)", (f"x{len(sizes)}",))

    writer._write = recording
    writer.write(batch)
    writer.close()
    other.close()
    assert ingest_pipeline.INGEST_SHARED_ROWS == 500
    assert sizes == ([500, 500, 200] if others_write else [500, 700])
    assert writer.report.ingested == 1200
    stored = engine.store.query("SELECT id, external_id FROM tasks ORDER BY id")
    assert [r["external_id"] for r in stored] == [f"B{i}" for i in range(1200)]
    engine.close()



def test_a_database_counted_by_m006_triggers_keeps_right_counts_after_m007(tmp_path):
    """Rows counted by the old per-row triggers, then new ones counted per batch: one total."""
    import sqlite3

    from sqlite_utils import Database

    from router import migrations

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrations.apply(Database(conn), stop_before="m007_new_tasks_counted_per_batch")
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 6
    # As an older Labelyard wrote them: its triggers count each task and created event.
    conn.executemany(
        "INSERT INTO tasks (external_id, status, stage, queue, needed, free_slots, created_at, updated_at, stage_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 1800000000, 1800000000, 1800000000)",
        [(f"O{i}", "open", "annotate", "q", 1, 1) if i % 3 else (f"O{i}", "done", None, None, 0, 0) for i in range(30)])
    conn.executemany("INSERT INTO events (task_id, kind, rule, action, actor, at) "
                     "VALUES (?, 'created', 'old rule', 'annotate', 'labelyard', 1800000000)",
                     [(i,) for i in range(1, 31)])
    assert conn.execute("SELECT sum(n) FROM task_counts").fetchone()[0] == 30
    conn.close()
    store, _ = Store.init(str(path))  # migrates through m007 to the newest
    assert store.one("SELECT version FROM schema_version")[0] == migrations.SCHEMA_VERSION
    engine = Engine(store)
    engine.apply(WORKFLOW, "p.workflow.yaml")
    source = tmp_path / "rows.jsonl"
    _rows(source, 300)
    assert engine.ingest(read_file(str(source), ("a", "b")), "rows.jsonl", fork=True).ingested > 0
    for table, (recount, stored) in RECOUNT.items():
        expected = sorted(tuple(r) for r in engine.store.query(recount))
        assert sorted(tuple(r) for r in engine.store.query(stored)) == expected, table
    assert engine.store.one("SELECT sum(n) FROM task_counts")[0] == engine.store.one("SELECT count(*) FROM tasks")[0]
    assert engine.store.one("SELECT n FROM rule_counts WHERE rule = 'old rule'")[0] == 30
    engine.close()
