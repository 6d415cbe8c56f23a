"""``backup`` refuses the database's own files as DEST.

- ``backup DB-wal --force`` wrote the copy over the write-ahead log, which SQLite deletes when it
  closes the database; over ``DB.lock`` it swapped the inode running writers queue on. ``export``
  and the sinks refuse these files (``router.export.refuse_database_file``); now ``backup`` does too.

Real SQLite files and the real ``labelyard`` command (``run`` fixture).
"""

from __future__ import annotations

import os

import pytest

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
