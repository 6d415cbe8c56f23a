"""``backup`` refuses the database's own files as DEST, and copies a database an older Labelyard made.

- ``backup DB-wal --force`` wrote the copy over the write-ahead log, which SQLite deletes when it
  closes the database; over ``DB.lock`` it swapped the inode running writers queue on. ``export``
  and the sinks refuse these files (``router.export.refuse_database_file``); now ``backup`` does too.
- ``backup`` refused a database that needs migrating, so the copy to keep before ``init`` rewrites
  the schema could not be made with it. It now copies it as it is (read-only, nothing migrated),
  and still refuses a newer schema and a file that is not a Labelyard database.

Real SQLite files and the real ``labelyard`` command (``run`` fixture).
"""

from __future__ import annotations

import os
import sqlite3

import pytest
from sqlite_utils import Database

from router import migrations

SIDE_FILES = {"labelyard.db-wal": "the database's write-ahead log",
              "labelyard.db-shm": "the database's shared-memory index",
              "labelyard.db-journal": "the database's rollback journal",
              "labelyard.db.lock": "the database's writer lock",
              "labelyard.db.run-lock": "the database's run lock",
              "labelyard.db": "the database itself"}


def state(path) -> tuple[int, int, int] | None:
    """A file's inode, size and change time, or ``None`` when there is none: what a backup over it changes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@pytest.mark.parametrize("dest", sorted(SIDE_FILES))
def test_backup_refuses_the_database_files_even_with_force(run, tmp_path, dest):
    run.ok("init")
    before = state(tmp_path / dest)
    proc = run("backup", dest, "--force")
    assert proc.returncode == 1
    db = os.path.realpath(run.db)
    assert proc.stderr == f"labelyard: {dest} is {SIDE_FILES[dest]} ({db}): back it up somewhere else\n"
    assert state(tmp_path / dest) == before
    run.ok("status")  # the database is as it was


def test_backup_sees_through_links_to_the_writer_lock_and_refuses_before_asking_for_force(run, tmp_path):
    run.ok("init")
    lock = tmp_path / "labelyard.db.lock"
    before = state(lock)
    (tmp_path / "bk").mkdir()
    (tmp_path / "bk" / "lock-link").symlink_to(lock)
    os.link(lock, tmp_path / "bk" / "hard")
    for dest in ("bk/lock-link", "bk/hard", "labelyard.db.lock"):
        proc = run("backup", dest)  # no --force: the refusal, not "pass --force"
        assert proc.returncode == 1 and "is the database's writer lock" in proc.stderr, (dest, proc.stderr)
        assert "--force" not in proc.stderr
    assert state(lock) == before


def older_database(path) -> int:
    """A database as a Labelyard before ``m008`` left it, with a task; returns its schema version."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrations.apply(Database(conn), stop_before="m008_plugin_reject_keys")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("INSERT INTO tasks (external_id, status, created_at, updated_at, stage_at) "
                 "VALUES ('OLD-1', 'held', 1, 1, 1)")
    version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    conn.close()
    return version


def schema_and_rows(path) -> tuple[int, list, list]:
    conn = sqlite3.connect(path)
    try:
        return (conn.execute("SELECT version FROM schema_version").fetchone()[0],
                conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall(),
                conn.execute("SELECT external_id, status FROM tasks").fetchall())
    finally:
        conn.close()


def test_backup_copies_a_database_an_older_labelyard_made_as_it_is(run, tmp_path):
    version = older_database(run.db)
    assert version < migrations.SCHEMA_VERSION
    refused = run("status")
    assert refused.returncode == 1
    assert "database schema is older than this Labelyard; run `labelyard init` to migrate " \
           "(`labelyard backup DEST` first keeps a copy as it is now)" in refused.stderr
    before = schema_and_rows(run.db)
    copy = run.json("backup", "before-init.db", "--json")["backup"]
    assert copy == "before-init.db"
    assert schema_and_rows(tmp_path / copy) == before  # the copy: the old schema, the old rows
    assert schema_and_rows(run.db) == before  # the database: not migrated by the backup
    assert before[0] == version
    run.ok("init")  # then the migration, and the copy stays as it was
    assert schema_and_rows(run.db)[0] == migrations.SCHEMA_VERSION
    assert schema_and_rows(tmp_path / copy) == before


def test_backup_still_refuses_a_newer_schema_and_a_file_that_is_not_labelyards(run, tmp_path):
    run.ok("init")
    conn = sqlite3.connect(run.db)
    conn.execute("UPDATE schema_version SET version = ?", (migrations.SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    newer = run("backup", "x.db")
    assert newer.returncode == 1
    assert newer.stderr.strip().endswith(
        f"database schema {migrations.SCHEMA_VERSION + 1} is newer than this Labelyard "
        f"({migrations.SCHEMA_VERSION}); upgrade labelyard")
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    proc = run("backup", "--db", other, "y.db")
    assert proc.returncode == 1
    assert proc.stderr == f"labelyard: {other}: holds other tables (notes), not a Labelyard database; " \
                          "nothing to back up\n"
    (tmp_path / "text.db").write_text("hello\n")
    proc = run("backup", "--db", "text.db", "z.db")
    assert proc.returncode == 1 and "text.db: cannot open it as a database" in proc.stderr
    assert not any((tmp_path / name).exists() for name in ("x.db", "y.db", "z.db"))
