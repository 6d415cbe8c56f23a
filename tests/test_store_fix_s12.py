"""The store's leftovers of the twelfth session, with real files and real processes.

- An `init` that failed once it had made the writer lock's file (a full disk while it created the
  tables) left the new database, its `-wal` and `-shm` and `DB.lock` behind: the user saw a
  `labelyard.db` that `status` called "not a Labelyard database".
"""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

FILE_LIMIT = 20_000  # bytes any file this process writes may reach: the new tables' WAL grows past it


def limited_files() -> None:
    """In the child: no file it writes grows past ``FILE_LIMIT`` (EFBIG, as a full disk fails a write;
    Python ignores SIGXFSZ, so the write fails instead of killing the process)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def init_on_a_full_disk(run, db: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([*run.command, "--db", str(db), "init"], capture_output=True, text=True, env=run.env,
                          cwd=run.folder, timeout=120, preexec_fn=limited_files)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def folder_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- a failed init leaves nothing it made ------------------------------------------------------
def test_an_init_that_fails_while_it_writes_a_new_database_removes_every_file_it_made(run):
    db = run.folder / "lab.db"
    proc = init_on_a_full_disk(run, db)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"labelyard: {db}: cannot initialise: "), proc.stderr
    assert proc.stderr.rstrip().endswith("; the files this init made are removed"), proc.stderr
    assert folder_files(run.folder) == []  # before: lab.db, lab.db-shm, lab.db-wal and lab.db.lock
    run.ok("--db", db, "init")  # once there is room, init makes the project as on the first day
    assert run.json("--db", db, "status", "--json")["total"] == 0


def test_an_init_that_fails_on_an_empty_file_keeps_the_file_and_leaves_no_lock(run):
    db = run.folder / "lab.db"
    db.write_bytes(b"")
    db.chmod(0o640)
    proc = init_on_a_full_disk(run, db)
    assert proc.returncode == 1
    assert "cannot initialise" in proc.stderr and "removed" not in proc.stderr  # the file was the user's
    assert folder_files(run.folder) == ["lab.db"]  # no lab.db.lock, -wal or -shm
    assert db.read_bytes() == b"" and db.stat().st_mode & 0o777 == 0o640



def test_an_init_that_made_the_project_behind_a_failed_one_keeps_it(run):
    """The failed init takes its files back under the writer lock, after the init queued behind it:
    that one made the project in the file, which stays, with its lock."""
    from test_writer_lock import Holder, wait_until_queued

    db = run.folder / "lab.db"
    holder = Holder(db, "holder")
    assert holder.line() == "holder locked"
    failing = subprocess.Popen([*run.command, "--db", str(db), "init"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=run.env, preexec_fn=limited_files)
    wait_until_queued(db, 2)  # it made lab.db, and waits for its turn
    second = subprocess.Popen([*run.command, "--db", str(db), "init"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=run.env)
    wait_until_queued(db, 3)
    holder.release()
    holder.finish()
    _, failed = failing.communicate(timeout=120)
    _, made = second.communicate(timeout=120)
    assert failing.returncode == 1 and "cannot initialise" in failed and "removed" not in failed, failed
    assert second.returncode == 0, made
    assert folder_files(run.folder) == ["lab.db", "lab.db.lock"]
    assert run.json("--db", db, "status", "--json")["total"] == 0
