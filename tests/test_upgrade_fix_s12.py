"""Twelfth session's upgrade fixes: what an older Labelyard left (a database, a demo folder) is taken
up as it should be, and a damaged database is named before init migrates it or backup copies it.

Older databases are faked from a new one, as the other migration tests do: a recorded migration's
row is renamed (or forgotten) and what it made undone, then the real ``labelyard init`` runs on the
file (``lead_support.Project``); nothing depends on the git history.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from lead_support import Project
from router import migrations
from sqlite_utils import Database


def _execute(db, *statements: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


# -- 1: a migration renamed after it shipped counts as applied under its older name -----------------
# Every name a migration was released under (git log -p router/migrations.py | grep '^[-+]def m0'):
# keep this list as it is, and add to it; a name here may never stop meaning its migration.
EVER_RELEASED = [
    "m001_initial", "m002_worker_indexes", "m003_plugins", "m004_counters", "m005_worker_counters",
    "m006_rule_counts_without_json", "m007_new_tasks_counted_per_batch", "m008_plugin_reject_keys",
    "m010_rule_counts_by_identity", "m009_rule_counts_by_identity",  # renamed in b5b370e
    "m009_final_vote_marks", "m010_final_vote_marks",  # renamed in d89f44d
    "m011_json_value_classes", "m012_one_to_one_matching",
    "m013_vote_queue_index", "m013_read_path_indexes",  # grew and renamed in 2090f84
]


def test_a_database_made_with_m013s_earlier_name_is_migrated_and_gets_the_index_it_lacked(tmp_path):
    """Made at 51a781e: m013 recorded as `m013_vote_queue_index`, with the queue column and its index
    but not the `workflow_applied` one. `init` said "duplicate column name: queue" for ever."""
    p = Project(tmp_path)
    p.worker("ann", "annotator")
    p.ingest([{"id": "T1"}])
    p.submit(p.claim("ann")["assignment"], "ann", "--label", "cat")
    _execute(p.db, "DROP INDEX events_workflow_applied",
             "UPDATE _sqlite_migrations SET name = 'm013_vote_queue_index' WHERE name = 'm013_read_path_indexes'")
    result = p.json("init")
    assert result["migrations_applied"] == ["m013_read_path_indexes"]
    conn = sqlite3.connect(p.db)
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT id FROM events WHERE kind = 'workflow_applied' ORDER BY id")
    assert "events_workflow_applied" in " ".join(row[3] for row in plan)
    assert "annotations_queue_votes" in {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert conn.execute("SELECT worker, queue FROM annotations").fetchall() == [("ann", "triage")]
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(migrations.SCHEMA_VERSION,)]
    conn.close()
    assert p.json("init")["migrations_applied"] == []  # and stays migrated
    assert p.run("status").returncode == 0


def test_the_rule_counts_migration_recorded_under_its_first_name_is_not_run_again(tmp_path):
    """Made at 6493621: the rule counts' migration recorded as `m010_rule_counts_by_identity`. `init`
    ran it again as m009 (the table made again from the events)."""
    p = Project(tmp_path)
    _execute(p.db, "UPDATE _sqlite_migrations SET name = 'm010_rule_counts_by_identity' "
                   "WHERE name = 'm009_rule_counts_by_identity'")
    assert p.json("init")["migrations_applied"] == []


def test_every_name_a_migration_was_released_under_still_counts_as_it(tmp_path):
    """A guard: renaming a migration, or adding one without listing it in RELEASED, fails here."""
    registered = [m.name for m in migrations.migrations._migrations]
    assert set(EVER_RELEASED) <= set(migrations.RELEASED), "a released name is no longer known"
    assert set(registered) <= set(migrations.RELEASED), "list a new migration's name in migrations.RELEASED"
    for name in registered:
        assert migrations.RELEASED[name] == name
    assert set(migrations.RELEASED.values()) <= set(registered), "RELEASED names a migration that is gone"
    assert migrations.EARLIER_FORMS <= set(migrations.RELEASED)

    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrations.migrate(conn)
    first_names = {}
    for old, new in migrations.RELEASED.items():
        if old not in migrations.EARLIER_FORMS:
            first_names.setdefault(new, old)  # the first name it had: the oldest databases hold that one
    for new, old in first_names.items():
        conn.execute("UPDATE _sqlite_migrations SET name = ? WHERE name = ?", [old, new])
    assert sorted(first_names.values()) != sorted(registered)  # some were renamed: the check checks something
    assert migrations.migrations.pending(Database(conn)) == []
    conn.close()


# -- 2: gold counters scored by raw JSON before same_label are scored again ---------------------------
MULTI = """\
workflow: mc
labels: {type: multi_choice, choices: [a, b, c]}
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


def test_gold_answers_scored_by_json_text_before_schema_8_are_scored_by_the_label_type(tmp_path):
    """Made at 6c58c98 (schema 5): ann's ["a","b"] against the gold ["b","a"] was scored wrong by
    JSON equality, and no migration scored it again; bob's identical answer, given later, is right."""
    p = Project(tmp_path, MULTI)
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "G1", "data": {"text": "one"}, "answer": ["b", "a"]}\n')
    p.json("gold", "add", gold)
    for name in ("ann", "bob"):
        p.worker(name, "annotator")
        view = p.claim(name)
        assert view["external_id"] == "G1"
        p.submit(view["assignment"], name, "--value", '["a", "b"]')
    _execute(p.db, "UPDATE workers SET gold_correct = 0 WHERE id = 'ann'",  # as `a.label = g.label` scored it
             "UPDATE schema_version SET version = 13",
             "DELETE FROM _sqlite_migrations WHERE name = 'm015_gold_scored_by_labels'")
    assert p.json("init")["migrations_applied"] == ["m015_gold_scored_by_labels"]
    scores = {a["worker"]: (a["gold_answered"], a["gold_correct"]) for a in p.json("agreement")["annotators"]}
    assert scores == {"ann": (1, 1), "bob": (1, 1)}
    conn = sqlite3.connect(p.db)
    events = [json.loads(d) for (d,) in conn.execute("SELECT detail FROM events WHERE kind = 'gold_rescored'")]
    conn.close()
    assert events == [{"worker": "ann", "gold_answered": 1, "gold_correct": 1,
                       "was": {"gold_answered": 1, "gold_correct": 0}, "migration": "m015_gold_scored_by_labels"}]


# -- 3: init checks a database before migrating it; backup names a damaged database, not its copy -----
def _damage_an_events_page(db) -> None:
    """Write over the cells of one page of the ``events`` table (a leaf in its middle, found by
    ``dbstat``; its root page where SQLite has no ``dbstat``), as a failing disk would."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    try:
        pages = [n for (n,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY pageno")]
    except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
        pages = [n for (n,) in conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'")]
    conn.close()
    page = pages[len(pages) // 2]
    with open(db, "r+b") as handle:
        handle.seek(size * (page - 1) + 8)
        handle.write(b"\xff\x07" * 200)


def _damaged_project(tmp_path) -> Project:
    p = Project(tmp_path)
    p.ingest([{"id": f"T{i}", "data": {"text": "x" * 50}} for i in range(300)])
    return p


def test_init_refuses_to_migrate_a_damaged_database_and_changes_nothing(tmp_path):
    """`init` migrated it, rebuilding tables and counters from the damaged rows, and said nothing."""
    p = _damaged_project(tmp_path)
    newest = migrations.migrations._migrations[-1].name
    _execute(p.db, f"DELETE FROM _sqlite_migrations WHERE name = '{newest}'")  # one migration pending
    _damage_an_events_page(p.db)
    before = p.db.read_bytes()
    proc = p.run("init")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"labelyard: {p.db}: the database file is damaged (quick_check: On tree page ")
    assert proc.stderr.endswith("); nothing was migrated; stop writing to it and restore the latest copy "
                                f"`labelyard backup` made (keep the damaged file: `sqlite3 {p.db} .recover` "
                                "may salvage it)\n")
    assert proc.stderr.count("\n") == 1  # one line, however many problems the check found
    assert p.db.read_bytes() == before
    conn = sqlite3.connect(p.db)
    assert newest not in {name for (name,) in conn.execute("SELECT name FROM _sqlite_migrations")}
    conn.close()


def test_backup_of_a_damaged_database_says_the_database_is_damaged_not_the_copy(tmp_path):
    """It said "bk.db: the copy failed its check (…17 lines…); nothing was written"."""
    p = _damaged_project(tmp_path)
    _damage_an_events_page(p.db)
    proc = p.run("backup", tmp_path / "bk.db")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"labelyard: {p.db}: the database file is damaged (quick_check: On tree page ")
    assert "); no backup was written; stop writing to it and restore the latest copy" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir() if "bk" in path.name or "backup-tmp" in path.name) == []


# -- 4: demo rebuilds a folder a demo made before it marked its folders -------------------------------
SMALL_DEMO = ("--tasks", "12", "--steps", "8")
OLD_DEMO_FILES = ("labelyard.db", "ticket-triage.workflow.yaml", "tickets.jsonl", "workflow.schema.json")


def _old_demo_folder(folder, *more: str):
    folder.mkdir()
    for name in OLD_DEMO_FILES + more:
        (folder / name).write_text(f"an older demo's {name}\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("beside", [(), ("labelyard.db.lock",)])
def test_demo_rebuilds_a_folder_an_older_demo_made_without_its_marker(run, tmp_path, beside):
    """A demo before 44ed456 wrote no `.labelyard-demo`: its folder was refused as "not a folder the
    demo made", though the README says the demo rebuilds a folder an earlier demo made. Such a folder
    is faked from a new demo's: no marker, its database back at schema 7 (the marker's first)."""
    folder = tmp_path / "old-demo"
    run.json("demo", "--dir", folder, "--tasks", "3", "--steps", "4", "--json")
    (folder / ".labelyard-demo").unlink()
    _execute(folder / "labelyard.db", "UPDATE schema_version SET version = 7")
    for name in ("labelyard.db.lock",):
        if name not in beside and (folder / name).exists():
            (folder / name).unlink()
    result = run.json("demo", "--dir", folder, *SMALL_DEMO, "--json")
    assert result["status"]["total"] == 12
    assert (folder / ".labelyard-demo").is_file()
    assert (folder / "tickets.jsonl").read_text(encoding="utf-8").startswith('{"id": "T-00001"')


def test_demo_still_refuses_a_folder_with_the_demos_files_and_one_of_its_own(run, tmp_path):
    folder = _old_demo_folder(tmp_path / "mine", "notes.txt")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    proc = run("demo", "--dir", folder, *SMALL_DEMO)
    assert proc.returncode == 1 and f"{folder}: not a folder the demo made (it holds labelyard.db, " in proc.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    folder = tmp_path / "partial"  # a database with a workflow and tickets of the same names, no schema file
    folder.mkdir()
    for name in OLD_DEMO_FILES[:3]:
        (folder / name).write_text("mine\n", encoding="utf-8")
    assert run("demo", "--dir", folder, *SMALL_DEMO).returncode == 1
