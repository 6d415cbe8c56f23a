"""``labelyard backup DEST``: a consistent copy while annotators keep claiming and submitting."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import signal
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SMALL_WORKFLOW, Runner
from process_support import HANG_GUARD_S

from router.errors import LabelyardError
from router.store import Store


def test_backup_while_annotators_work_is_a_whole_consistent_database(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(SMALL_WORKFLOW))
    run.ok("workers", "add", "ann", "--role", "annotator")
    rows = [{"id": f"T{i}", "data": {}, "prediction": {"label": "cat", "confidence": 0.6}} for i in range(300)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.ok("ingest", "t.jsonl")
    loop = ("for i in $(seq 40); do out=$(\"$0\" claim --as ann --json) || break; "
            "a=$(printf '%s' \"$out\" | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"assignment\"])'); "
            "\"$0\" submit \"$a\" --as ann --label cat >/dev/null; done")
    worker = subprocess.Popen(["sh", "-c", loop, run.command[0]], env=run.env, cwd=tmp_path)
    try:
        copies = [tmp_path / f"copy-{i}.db" for i in range(3)]
        for copy in copies:
            run.ok("backup", copy)
    finally:
        worker.wait(timeout=300)
    for copy in copies:
        conn = sqlite3.connect(copy)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tasks = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
        submitted = conn.execute("SELECT count(*) FROM assignments WHERE status = 'submitted'").fetchone()[0]
        annotations = conn.execute("SELECT count(*) FROM annotations").fetchone()[0]
        conn.close()
        assert tasks == 300 and submitted == annotations  # nothing half-done in a copy
    assert run.json("status", "--db", str(copies[-1]), "--json")["total"] == 300  # a working project


def test_backup_refuses_to_overwrite_and_names_a_file_in_a_folder(run, tmp_path):
    run.ok("init")
    (tmp_path / "keep.db").write_text("precious")
    refused = run("backup", "keep.db")
    assert refused.returncode == 1 and "exists: pass --force" in refused.stderr
    assert (tmp_path / "keep.db").read_text() == "precious"
    run.ok("backup", "keep.db", "--force")
    assert sqlite3.connect(tmp_path / "keep.db").execute("PRAGMA quick_check").fetchone()[0] == "ok"
    (tmp_path / "backups").mkdir()
    made = run.json("backup", "backups", "--json")["backup"]
    assert made == "backups/labelyard-20250301T090000Z.db"  # named by LABELYARD_NOW, in UTC
    assert sqlite3.connect(tmp_path / made).execute("PRAGMA quick_check").fetchone()[0] == "ok"
    missing = run("backup", "nowhere/x.db")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_a_dest_ending_with_a_slash_is_a_folder_made_when_missing(run, tmp_path):
    """docs/cron.md's `labelyard backup --db labelyard.db backups/` works before backups/ exists."""
    run.ok("init")
    made = run.json("backup", "--db", "labelyard.db", "backups/", "--json")["backup"]
    assert made == "backups/labelyard-20250301T090000Z.db"
    assert sqlite3.connect(tmp_path / made).execute("PRAGMA quick_check").fetchone()[0] == "ok"
    again = run.json("backup", "backups/", "--json")["backup"]  # the folder now exists: a second dated name
    assert again == "backups/labelyard-20250301T090000Z-2.db"
    # only the folder itself is made, not its parents (a typo stays an error)
    deep = run("backup", "nowhere/backups/")
    assert deep.returncode == 1 and f"nowhere/backups/: folder {tmp_path / 'nowhere'} does not exist" in deep.stderr
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "plain").write_text("a file")
    taken = run("backup", "plain/")
    assert taken.returncode == 1 and "plain/: exists and is not a folder" in taken.stderr
    assert (tmp_path / "plain").read_text() == "a file"
    # no database: an error, and no empty folder left behind
    nodb = run("backup", "--db", "missing.db", "empty/")
    assert nodb.returncode == 1 and "labelyard init" in nodb.stderr
    assert not (tmp_path / "empty").exists()
    # without the slash a missing name is still a file
    assert run.json("backup", "single", "--json")["backup"] == "single"
    assert (tmp_path / "single").is_file()


def test_backup_destinations_that_cannot_be_used_are_clear_errors_and_leave_nothing(run, tmp_path):
    run.ok("init")
    cases = {"": "backup needs a file or a folder to write to",
             "nowhere/newdir/": f"nowhere/newdir/: folder {tmp_path / 'nowhere'} does not exist",
             "labelyard.db": "is the database itself", "/proc/x.db": "cannot write the backup"}
    for dest, message in cases.items():
        proc = run("backup", dest, "--force")
        assert proc.returncode == 1 and message in proc.stderr, (dest, proc.stderr)
    assert not list(tmp_path.glob("*labelyard-*tmp*"))  # no stray copy of the project's data
    (tmp_path / "b").mkdir()
    first, second = (run.json("backup", "b", "--json")["backup"] for _ in range(2))  # the same second
    assert (first, second) == ("b/labelyard-20250301T090000Z.db", "b/labelyard-20250301T090000Z-2.db")


# -- real processes stopped and killed in the middle of a copy -------------------------------------
# A backup is stopped (SIGSTOP) once its temp file holds data, so it is known to be mid-copy; the
# only sleeps are short pauses in loops that poll a real process's progress.
STAMP = "labelyard-20250301T090000Z"
BIG_TASKS = 20_000
POLL_S = 0.001
ATTEMPTS = 30  # a backup that ends before the test sees its temp file is simply started again


@pytest.fixture(scope="module")
def big_db(tmp_path_factory) -> Path:
    """A ~10 MB project database (20,000 tasks with 200 characters of data), made once."""
    folder = tmp_path_factory.mktemp("big")
    run = Runner(folder)
    run.ok("init")
    (folder / "pets.workflow.yaml").write_text(SMALL_WORKFLOW, encoding="utf-8")
    run.ok("apply", "pets.workflow.yaml")
    rows = ({"id": f"T{i}", "data": {"text": "x" * 200}} for i in range(BIG_TASKS))
    (folder / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    return run.db


@pytest.fixture
def big(run, big_db) -> Path:
    """``run``'s project with ``big_db``'s data, and an empty folder ``bk`` for backups."""
    source, target = sqlite3.connect(big_db), sqlite3.connect(run.db)
    source.backup(target)
    source.close(), target.close()
    (run.folder / "bk").mkdir()
    return run.folder / "bk"


def temps(folder: Path) -> list[Path]:
    """Backup temp files in ``folder`` (``.labelyard-backup-tmp``, earlier ``.labelyard-tmp``) and their SQLite files."""
    return sorted(p for p in folder.iterdir() if re.search(r"\.labelyard-(backup-)?tmp", p.name))


def tasks_in(path: Path) -> int:
    """Tasks in a backup copy, after checking the whole file."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        conn.close()


def start_backup(run, dest: str) -> subprocess.Popen:
    """``labelyard backup DEST --json`` in the background, under the usual umask 022."""
    return subprocess.Popen([*run.command, "backup", dest, "--json"], env=run.env,
                            cwd=run.folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            umask=0o022)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    """Let ``proc`` go on (if stopped) and wait for it: (exit code, stdout, stderr)."""
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def copy_has_begun(proc: subprocess.Popen, folder: Path) -> bool:
    """Wait until a temp file in ``folder`` holds data (True) or ``proc`` has ended (False)."""
    while proc.poll() is None:
        for path in temps(folder):
            with contextlib.suppress(FileNotFoundError):
                if path.name.endswith("-tmp") and path.stat().st_size:
                    return True
        time.sleep(POLL_S)
    return False


def stop(proc: subprocess.Popen) -> bool:
    """SIGSTOP ``proc`` and wait until it is stopped (True), or has ended first (False)."""
    os.kill(proc.pid, signal.SIGSTOP)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        return True
    proc.returncode = os.waitstatus_to_exitcode(status)
    return False


def backup_stopped_mid_copy(run, dest: str, folder: Path) -> subprocess.Popen:
    """A ``labelyard backup DEST`` stopped while its copy is in ``folder``'s temp file."""
    for _ in range(ATTEMPTS):
        proc = start_backup(run, dest)
        if copy_has_begun(proc, folder) and stop(proc) and temps(folder):
            return proc
        finish(proc)  # it ended before it was stopped: again, from an empty folder
        for path in folder.iterdir():
            path.unlink()
    pytest.fail(f"no backup was caught mid-copy in {ATTEMPTS} attempts")


def test_a_backup_killed_mid_copy_leaves_no_readable_copy_and_the_next_backup_removes_it(run, big):
    """kill -9 skipped the cleanup: a full copy was left, 0644, that no later backup removed."""
    proc = backup_stopped_mid_copy(run, "bk", big)
    try:
        left = temps(big)
        assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in left} == {"0o660"}, left  # never world-readable
    finally:
        proc.kill()
        proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == -signal.SIGKILL
    later = {"LABELYARD_NOW": "2025-03-01T09:05:00Z"}  # a later backup gets a new dated name
    made = run.json("backup", "bk", "--json", env=later)["backup"]
    assert made == "bk/labelyard-20250301T090500Z.db" and tasks_in(run.folder / made) == BIG_TASKS
    assert temps(big) == []


def test_a_backup_in_progress_keeps_its_temp_file_and_each_backup_gets_its_own_name(run, big):
    """Two backups in one second picked one name and shared one temp file; one failed or replaced the other."""
    first = backup_stopped_mid_copy(run, "bk", big)
    try:
        in_progress = [p for p in temps(big) if p.name.endswith("-tmp")]
        second = run.json("backup", "bk", "--json")["backup"]
        assert all(p.exists() for p in in_progress)  # not taken for a killed backup's leftover
    finally:
        code, out, err = finish(first)
    assert code == 0, err
    made = {json.loads(out)["backup"], second}
    assert made == {f"bk/{STAMP}.db", f"bk/{STAMP}-2.db"}
    assert [tasks_in(run.folder / name) for name in made] == [BIG_TASKS, BIG_TASKS]
    assert temps(big) == []


def test_backups_started_together_into_one_folder_all_succeed_under_their_own_names(run, big):
    procs = [start_backup(run, "bk") for _ in range(3)]
    results = [finish(proc) for proc in procs]
    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    made = sorted(json.loads(out)["backup"] for _, out, _ in results)
    assert made == [f"bk/{STAMP}-2.db", f"bk/{STAMP}-3.db", f"bk/{STAMP}.db"]
    assert [tasks_in(run.folder / name) for name in made] == [BIG_TASKS] * 3
    assert sorted(p.name for p in big.iterdir()) == sorted(name.removeprefix("bk/") for name in made)


def test_a_file_made_at_dest_during_the_copy_is_not_replaced_without_force(run, big):
    """The final step was os.replace: a DEST that appeared while copying was silently replaced."""
    dest = big / "nightly.db"
    proc = backup_stopped_mid_copy(run, "bk/nightly.db", big)
    dest.write_text("precious")
    code, _, err = finish(proc)
    assert code == 1 and "nightly.db exists: pass --force to replace it" in err
    assert dest.read_text() == "precious" and temps(big) == []


def test_a_failed_copy_removes_its_temp_file_with_sqlites_files(run, big):
    """A copy that failed midway (here: over the file size limit) left its -journal behind."""
    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))

    for dest in (big, big / "x.db"):
        proc = subprocess.run([*run.command, "backup", str(dest)], env=run.env, cwd=run.folder, text=True,
                              capture_output=True, preexec_fn=small_files, timeout=HANG_GUARD_S)
        assert proc.returncode == 1 and "cannot write the backup" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert list(big.iterdir()) == []


def test_without_hard_links_a_backup_still_never_replaces_a_file(tmp_path, monkeypatch):
    """On a filesystem without hard links the copy is renamed with RENAME_NOREPLACE instead."""
    def no_hard_links(src: str, dst: str, **_: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", dst)

    store, _ = Store.init(str(tmp_path / "labelyard.db"))
    (tmp_path / "bk").mkdir()
    (tmp_path / "bk" / "x.db").write_text("precious")
    monkeypatch.setattr(os, "link", no_hard_links)
    try:
        made, size = store.backup_to(str(tmp_path / "bk" / "x.db"), numbered=True)
        with pytest.raises(LabelyardError, match="exists: pass --force"):
            store.backup_to(str(tmp_path / "bk" / "x.db"))
    finally:
        store.close()
    assert made == str(tmp_path / "bk" / "x-2.db") and size == os.path.getsize(made)
    assert (tmp_path / "bk" / "x.db").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "bk").iterdir()) == ["x-2.db", "x.db"]


def test_leftovers_of_earlier_versions_go_and_a_sinks_temp_file_stays(run, big):
    """Earlier versions left DEST.labelyard-tmp (and SQLite's files) on kill -9; sinks use that suffix too."""
    old = "labelyard-20250228T180000Z.db.labelyard-tmp"
    for name in (old, old + "-journal", old + "-wal", "labelyard-20250228T180000Z-2.db.labelyard-tmp-shm"):
        (big / name).write_bytes(b"a copy of the project's data")
    (big / "export.json.labelyard-tmp").write_text("a sink writing its file")
    made = run.json("backup", "bk", "--json")["backup"]
    assert sorted(p.name for p in big.iterdir()) == ["export.json.labelyard-tmp", made.removeprefix("bk/")]
