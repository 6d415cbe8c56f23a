"""Command-line contracts found broken in round 14 (tester: cli), each checked with real ``labelyard``
subprocesses on real database files (``conftest.run``).

1. A full disk: one line naming the database and the disk, exit 1, not a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import SMALL_WORKFLOW, labelyard_command


def tickets(path: Path, count: int, first: int = 0) -> Path:
    lines = (json.dumps({"id": f"T{i}", "data": {"text": "x" * 200}, "prediction": {"label": "cat",
                                                                                    "confidence": 0.7}})
             for i in range(first, first + count))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def project(run, write_workflow) -> None:
    run.ok("init")
    run.ok("apply", write_workflow(SMALL_WORKFLOW))


# -- 1. a full disk ----------------------------------------------------------------------------

# `labelyard` whose every connection may not grow the database file past the pages it has when
# opened: SQLite's own SQLITE_FULL ("database or disk is full"), as on a full disk, without one.
NO_ROOM = """\
import sys
import router.store as store

_connect = store.Store.connect.__func__


def no_room(cls, path):
    conn = _connect(cls, path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={max(pages, 1)}")
    return conn


store.Store.connect = classmethod(no_room)
from router.cli import main

sys.argv[0] = "labelyard"
main()
"""


def test_a_write_that_finds_no_room_is_one_line_naming_the_database_and_disk(run, write_workflow, tmp_path):
    project(run, write_workflow)
    script = tmp_path / "no_room.py"
    script.write_text(NO_ROOM, encoding="utf-8")
    tickets(tmp_path / "t.jsonl", 500)
    run.command = [sys.executable, str(script)]
    proc = run("ingest", "t.jsonl")  # the fixture fails on a traceback
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"labelyard: {run.db}: SQLite found no room to write (database or disk is full)")
    assert f"the disk holding {tmp_path}" in lines[0] and "rolled back" in lines[0]
    run.command = labelyard_command()
    status = run.json("status", "--json")  # the project works on, nothing half-written
    assert status["total"] == 0, status


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    return proc.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB tmpfs, where mounting one works here (root, a system that lets it), else skipped."""
    folder = tmp_path / "disk"
    if not _mount_tmpfs(folder, "400k"):
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 1024)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_full_disk_is_named_by_writes_and_by_opening(run, write_workflow, small_disk):
    run.db = small_disk / "lab.db"
    run.env["LABELYARD_DB"] = str(run.db)
    project(run, write_workflow)
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import sqlite3, sys
        conn = sqlite3.connect({str(run.db)!r})
        conn.execute("select 1 from tasks").fetchall()
        print("open", flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"  # the -wal and -shm stay while someone reads
        fill(small_disk)
        proc = run("workers", "add", "a1", "--role", "annotator")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"labelyard: {run.db}: the disk holding {small_disk} is full (0 KiB free; SQLite: database or disk is "
            "full); free some space there and run the command again (the write that failed was rolled back)"]
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
    (small_disk / "filler").unlink()
    run.ok("status")  # the last connection closes: its -wal and -shm go
    assert not (small_disk / "lab.db-shm").exists()
    fill(small_disk)
    proc = run("status")  # nobody has it open: SQLite cannot make its -shm ("disk I/O error")
    assert proc.returncode == 1, proc.stderr
    assert "is full" in proc.stderr and "nothing was written" in proc.stderr and "--db" not in proc.stderr
    (small_disk / "filler").unlink()
    run.ok("workers", "add", "a1", "--role", "annotator")
