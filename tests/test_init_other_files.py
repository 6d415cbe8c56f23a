"""`init` on a file that is not (yet) a Labelyard database: another program's SQLite file, a file
that is not SQLite, a folder; and what other commands say about such files.

Before: `init` added Labelyard's tables to another application's database (exit 0), a failed
`init` ("table tasks already exists") had switched the file to WAL all the same, and one on a
file that is not SQLite left a `FILE.lock` beside it. Real subprocesses, real files.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest


def app_database(path: Path, tables: list[str], *, wal: bool = False) -> bytes:
    """Another program's SQLite file with ``tables``; returns its bytes."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    for name in tables:
        conn.execute(f"CREATE TABLE {name} (x)")
        conn.execute(f"INSERT INTO {name} VALUES (1)")
    conn.commit()
    conn.close()
    return path.read_bytes()


def files_beside(path: Path) -> list[str]:
    """What lies in ``path``'s folder besides the file itself (a -wal, -shm, .lock…)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path)


def wal_mode(path: Path) -> bool:
    """Whether the file's header says WAL (bytes 18 and 19 are 2), read without opening it in SQLite."""
    return path.read_bytes()[18:20] == b"\x02\x02"


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("wal", [False, True])
def test_init_refuses_another_programs_database_and_changes_nothing(run, as_json, wal):
    app = run.folder / "app.sqlite"
    before = app_database(app, ["foo", "bar", "baz", "qux"], wal=wal)
    proc = run("--db", app, "init", *(["--json"] if as_json else []))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (f"labelyard: {app}: holds other tables (bar, baz, foo and 1 more), not a Labelyard "
                           "database; nothing changed: choose another --db path for the project\n")
    assert app.read_bytes() == before and wal_mode(app) == wal
    assert files_beside(app) == []  # no app.sqlite.lock, no -wal or -shm left behind


def test_a_failed_init_leaves_the_journal_mode_as_it_was(run):
    app = run.folder / "app.sqlite"
    before = app_database(app, ["tasks"])  # a name Labelyard's first migration creates too
    proc = run("--db", app, "init")
    assert proc.returncode == 1
    assert not wal_mode(app)  # it was switched to WAL before "table tasks already exists"
    assert app.read_bytes() == before and files_beside(app) == []
    assert "holds other tables (tasks), not a Labelyard database" in proc.stderr


def test_init_on_a_file_or_folder_that_is_no_database_leaves_no_lock_file(run):
    junk = run.folder / "notes.txt"
    junk.write_text("shopping list\n" * 200, encoding="utf-8")
    proc = run("--db", junk, "init")
    assert proc.returncode == 1
    assert proc.stderr == f"labelyard: {junk}: cannot initialise: file is not a database; nothing changed\n"
    assert junk.read_text(encoding="utf-8") == "shopping list\n" * 200 and files_beside(junk) == []
    folder = run.folder / "project"
    folder.mkdir()
    proc = run("--db", folder, "init")
    assert proc.returncode == 1
    assert proc.stderr == f"labelyard: {folder}: is a folder, not a database file; nothing changed\n"
    assert files_beside(folder) == []


def test_other_commands_send_a_foreign_database_elsewhere_and_an_empty_one_to_init(run):
    app = run.folder / "app.sqlite"
    app_database(app, ["foo"])
    for args in (("status",), ("workers", "list")):
        proc = run("--db", app, *args)
        assert proc.returncode == 1
        assert proc.stderr == (f"labelyard: {app}: holds other tables (foo), not a Labelyard database; choose "
                               "another --db path (`labelyard init` makes a new project there)\n")
    backup = run("--db", app, "backup", run.folder / "copy.db")
    assert backup.stderr == f"labelyard: {app}: holds other tables (foo), not a Labelyard database; nothing to back up\n"
    for name in ("empty.sqlite", "zero.db"):
        path = run.folder / name
        if name == "zero.db":
            path.touch()
        else:
            sqlite3.connect(path).execute("PRAGMA user_version=0").connection.close()
        proc = run("--db", path, "status")
        assert proc.returncode == 1 and proc.stderr.endswith("; run `labelyard init`\n"), proc.stderr


@pytest.mark.parametrize("kind", ["zero bytes", "SQLite without tables"])
def test_init_takes_an_empty_file(run, kind):
    path = run.folder / "new.db"
    if kind == "zero bytes":
        path.touch()
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE scratch (x)")
        conn.execute("DROP TABLE scratch")  # a real SQLite file (pages written), with no table left
        conn.commit()
        conn.close()
        assert os.path.getsize(path) > 0
    made = run.json("--db", path, "init", "--json")
    assert made["migrations_applied"] and wal_mode(path)
    assert run.json("--db", path, "status", "--json")["total"] == 0
    assert run.json("--db", path, "init", "--json")["migrations_applied"] == []  # again: harmless
