"""The database schema itself: migrate an empty file and compare every table and column.

In the manner of llm's ``tests/test_migrate.py``: a migration that adds,
drops or retypes a column fails here until this file says so on purpose.
"""

from __future__ import annotations

import re
import sqlite3
import stat

from sqlite_utils import Database

from router import migrations, store

EXPECTED: dict[str, dict[str, type]] = {
    "schema_version": {"version": int},
    "workflows": {
        "id": int, "name": str, "version": int, "hash": str, "yaml": str, "spec": str, "filename": str,
        "applied_at": float, "applied_by": str, "active": int,
    },
    "workers": {
        "id": str, "roles": str, "skills": str, "capacity": int, "paused": int, "pause_reason": str,
        "flagged": int, "created_at": float, "submitted": int, "gold_answered": int, "gold_correct": int,
        "final_votes": int, "final_agreed": int,  # m010
    },
    "tasks": {
        "id": int, "external_id": str, "source": str, "category": str, "tags": str, "data": str, "status": str,
        "stage": str, "queue": str, "needed": int, "free_slots": int, "priority": float, "attempts": int,
        "round": int, "workflow_version": int, "pred_label": str, "pred_confidence": float, "pred_model": str,
        "pred_scores": str, "final_label": str, "final_by": str, "final_rule": str, "final_at": float,
        "reason": str, "is_gold": int, "created_at": float, "updated_at": float, "stage_at": float,
    },
    "assignments": {
        "id": int, "task_id": int, "worker": str, "stage": str, "queue": str, "round": int, "status": str,
        "note": str, "created_at": float, "updated_at": float,
    },
    "annotations": {
        "id": int, "assignment_id": int, "task_id": int, "worker": str, "stage": str, "round": int, "label": str,
        "verdict": str, "comment": str, "created_at": float, "agrees": int,  # m010
        "queue": str,  # m013
    },
    "events": {
        "id": int, "task_id": int, "kind": str, "rule": str, "action": str, "actor": str, "detail": str,
        "at": float,
    },
    "gold": {"task_id": int, "label": str},
    "cursors": {"name": str, "value": str, "updated_at": float},
    "rejects": {"id": int, "source": str, "line": int, "reason": str, "raw": str, "at": float, "row_key": str},
    # m003_plugins
    "sink_deliveries": {"sink": str, "task_id": int, "final_at": float, "delivered_at": float},
    "auto_reviews": {"task_id": int, "round": int, "reviewer": str, "verdict": str, "reason": str, "at": float},
    "outbox": {
        "id": int, "target": str, "event_id": int, "event": str, "body": str, "status": str, "attempts": int,
        "next_at": float, "last_error": str, "created_at": float, "delivered_at": float,
    },
    "plugin_runs": {
        "id": int, "pid": int, "started_at": float, "finished_at": float, "ok": int, "summary": str, "errors": str,
    },
    # m004_counters (kept by triggers)
    "task_counts": {"status": str, "queue": str, "stage": str, "claimable": int, "is_gold": int, "n": int},
    "rule_counts": {"section": str, "rule_key": str, "rule": str, "n": int, "last_at": float},
    "activity": {"hour": int, "kind": str, "actor": str, "n": int},
}


def test_schema_versions_agree():
    assert store.SCHEMA_VERSION == migrations.SCHEMA_VERSION


def test_migrations_are_numbered_in_order(tmp_path):
    db = Database(sqlite3.connect(tmp_path / "empty.db"))
    names = [m.name for m in migrations.migrations.pending(db)]
    assert names, "no migrations registered"
    numbers = [int(re.fullmatch(r"m(\d{3})_[a-z0-9_]+", name).group(1)) for name in names]
    assert numbers == list(range(1, len(names) + 1))
    assert len(names) == migrations.SCHEMA_VERSION


def test_migrating_an_empty_database_gives_the_expected_tables_and_columns(tmp_path):
    path = tmp_path / "empty.db"
    conn = sqlite3.connect(path, isolation_level=None)
    applied = migrations.migrate(conn)
    assert len(applied) == migrations.SCHEMA_VERSION
    assert migrations.migrate(conn) == []  # a second run applies nothing
    conn.close()

    db = Database(path)
    ours = {name for name in db.table_names() if not name.startswith("_sqlite_migrations")}
    assert ours == set(EXPECTED)
    for table, columns in EXPECTED.items():
        assert db.table(table).columns_dict == columns, table
    assert [r["version"] for r in db.query("SELECT version FROM schema_version")] == [migrations.SCHEMA_VERSION]
    recorded = [r["name"] for r in db.query("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert recorded == applied
    assert db.table("tasks").pks == ["id"]
    assert {fk.other_table for fk in db.table("assignments").foreign_keys} == {"tasks", "workers"}
    assert {fk.other_table for fk in db.table("annotations").foreign_keys} == {"assignments", "tasks"}
    assert "tasks_claimable" in {ix.name for ix in db.table("tasks").indexes}
    assert {"annotations_worker", "annotations_task"} <= {ix.name for ix in db.table("annotations").indexes}
    assert db.table("sink_deliveries").pks == ["sink", "task_id"]


def test_labelyard_init_builds_the_same_schema_in_wal_mode(run):
    result = run.json("init", "--json")
    assert result["migrations_applied"][0] == "m001_initial"
    assert len(result["migrations_applied"]) == migrations.SCHEMA_VERSION
    assert stat.S_IMODE(run.db.stat().st_mode) == 0o660
    db = Database(run.db)
    for table, columns in EXPECTED.items():
        assert db.table(table).columns_dict == columns, table
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == store.SCHEMA_VERSION
    assert db.execute("PRAGMA page_size").fetchone()[0] == store.PAGE_SIZE


def test_the_wal_backlog_read_from_the_wal_index_matches_sqlite(tmp_path):
    s, _ = store.Store.init(str(tmp_path / "w.db"))
    s.conn.execute("PRAGMA wal_autocheckpoint=0")
    s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backlog = store._WalBacklog(s.path)
    with s.transaction():
        s.add_rejects([("f.jsonl", n, "bad", "x" * 500, 0.0) for n in range(50)])
    _, frames, copied = s.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames > 0 and copied == frames
    assert backlog.frames() == 0
    with s.transaction():
        s.add_rejects([("g.jsonl", 1, "bad", None, 0.0)])
    assert 0 < backlog.frames() < frames
    backlog.close()
    s.close()


def test_writers_checkpoint_after_their_commit_once_the_wal_has_grown(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "CHECKPOINT_FRAMES", 20)
    s, _ = store.Store.init(str(tmp_path / "c.db"))
    s.conn.execute("PRAGMA wal_autocheckpoint=0")  # only Store's own checkpoint runs
    backlog = store._WalBacklog(s.path)
    highest = 0
    for n in range(200):
        with s.transaction():
            s.add_rejects([(f"f{n}.jsonl", 1, "bad", "x" * 1500, 0.0)])
        highest = max(highest, backlog.frames())
    assert highest < 20  # each commit adds a few frames; the checkpoint follows at once
    monkeypatch.setattr(store, "CHECKPOINT_FRAMES", 10**9)
    for n in range(30):
        with s.transaction():
            s.add_rejects([(f"g{n}.jsonl", 1, "bad", "x" * 1500, 0.0)])
    assert backlog.frames() >= 30  # and without it, nothing copies the WAL back
    backlog.close()
    s.close()
