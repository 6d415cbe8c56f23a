"""The database's own files: no sink writes into them, a damaged file is named, lock files are shared.

Real subprocesses on a real database file (see ``conftest.run``).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
from pathlib import Path

from router import writer_lock
from router.writer_lock import WriterLock

WORKFLOW = """\
workflow: r
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
"""


def confident(*ids: str) -> str:
    return "".join(json.dumps({"id": i, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"
                   for i in ids)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def store_sinks(db: Path, sinks: list[dict]) -> None:
    """Put ``sinks`` in the stored active workflow, as an older Labelyard (without the check) applied it."""
    with sqlite3.connect(db) as conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec["sinks"] = sinks
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()


# -- sinks ------------------------------------------------------------------------------------
def test_apply_refuses_a_sink_whose_path_is_one_of_the_database_files(run, tmp_path):
    run.ok("init")
    (tmp_path / "out").mkdir()
    (tmp_path / "final.jsonl").symlink_to("labelyard.db")
    db = tmp_path / "labelyard.db"
    cases = {"labelyard.db": "the database itself", "out/../labelyard.db-wal": "the database's write-ahead log",
             "final.jsonl": "the database itself", str(db) + ".run-lock": "the database's run lock"}
    for path, what in cases.items():
        workflow = write(tmp_path / "r.workflow.yaml", WORKFLOW + f"sinks: [{{plugin: jsonl, path: '{path}'}}]\n")
        proc = run("apply", workflow.name)
        assert proc.returncode == 1, (path, proc.stderr)
        assert proc.stderr == (f"r.workflow.yaml:7:31: sinks entry 1 (`jsonl`): `path: {path}` is {what} ({db}): "
                               "the sink would overwrite it; give the sink a file of its own\n")
    assert run.json("status", "--json")["workflow"] is None  # nothing applied
    run.ok("apply", write(tmp_path / "r.workflow.yaml", WORKFLOW + "sinks: [{plugin: jsonl, path: out/final.jsonl}]\n"))


def test_run_fails_a_stored_sink_into_the_database_alone_and_the_database_stays_whole(run, tmp_path):
    run.ok("init")
    run.ok("apply", write(tmp_path / "r.workflow.yaml", WORKFLOW))
    store_sinks(run.db, [{"plugin": "jsonl", "path": "labelyard.db"}, {"plugin": "jsonl", "path": "final.jsonl"}])
    for batch, ids in enumerate((("t1",), ("t2", "t3"))):  # twice: the second run used to cut the file back
        run.ok("ingest", write(tmp_path / f"in{batch}.jsonl", confident(*ids)))
        proc = run("run", cwd=tmp_path / ".." if batch else tmp_path)  # relative to the database's folder
        assert proc.returncode == 4, proc.stderr
        assert proc.stderr == ("labelyard run: jsonl (jsonl:labelyard.db): sinks failed: `path: labelyard.db` is the "
                               f"database itself ({run.db}): the sink would overwrite it; give the sink a file of "
                               "its own\n")
    assert integrity(run.db) == "ok"
    delivered = [json.loads(x)["id"] for x in (tmp_path / "final.jsonl").read_text(encoding="utf-8").splitlines()]
    assert delivered == ["t1", "t2", "t3"]  # the other sink ran
    assert run.json("status", "--json")["total"] == 3


# -- a damaged database -----------------------------------------------------------------------
def damage(db: Path) -> None:
    """Overwrite the root page of every table and index but ``schema_version`` (which opening reads)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [r for (r,) in conn.execute("SELECT rootpage FROM sqlite_master "
                                            "WHERE rootpage > 0 AND name != 'schema_version'")]
    finally:
        conn.close()
    with open(db, "r+b") as handle:
        for root in roots:
            handle.seek((root - 1) * page)
            handle.write(b"\xff" * page)


def test_a_damaged_database_is_named_with_what_to_do_instead_of_a_traceback(run, tmp_path):
    run.ok("init")
    run.ok("apply", write(tmp_path / "r.workflow.yaml", WORKFLOW))
    run.ok("workers", "add", "ann", "--role", "annotator")
    run.ok("ingest", write(tmp_path / "in.jsonl", confident("t1") + json.dumps({"id": "u1", "data": {}}) + "\n"))
    damage(run.db)
    for args in (("status",), ("show", "t1"), ("claim", "--as", "ann"), ("export",), ("--db", "labelyard.db", "run")):
        proc = run(*args)  # the fixture also checks that no traceback was printed
        assert proc.returncode == 1, (args, proc.stderr)
        name = "labelyard.db" if args[0] == "--db" else str(run.db)
        assert proc.stderr.startswith(f"labelyard: {name}: the database file is damaged (database disk image is "
                                      "malformed); stop writing to it and restore the latest copy `labelyard "
                                      "backup` made"), (args, proc.stderr)


# -- lock files -------------------------------------------------------------------------------
def test_lock_files_are_shared_with_the_group_whatever_the_umask(run, tmp_path):
    old = os.umask(0o022)
    try:
        run.ok("init")
        run.ok("apply", write(tmp_path / "r.workflow.yaml", WORKFLOW))
        run.ok("run")
    finally:
        os.umask(old)
    for name in ("labelyard.db", "labelyard.db.lock", "labelyard.db.run-lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o660, name


def test_a_writer_lock_that_cannot_be_opened_is_said_once_and_writes_go_on(run, tmp_path):
    run.ok("init")
    run.ok("apply", write(tmp_path / "r.workflow.yaml", WORKFLOW))
    (tmp_path / "labelyard.db.lock").unlink()
    (tmp_path / "labelyard.db.lock").mkdir()  # cannot be opened as a file, whoever runs the test
    warning = (f"labelyard: warning: {run.db}.lock: cannot open the writer lock (Is a directory); writing without "
               "it, so writers are not queued (SQLite still keeps each write whole)\n")
    assert run.ok("status").stderr == ""  # a reader writes nothing: nothing to say
    assert run.ok("workers", "add", "ann", "--role", "annotator").stderr == warning
    proc = run("run")  # several write transactions, one warning
    assert proc.returncode == 0 and proc.stderr == warning
    assert [w["id"] for w in run.json("workers", "list", "--json")] == ["ann", "lead-lucy"]


def test_a_run_lock_that_cannot_be_opened_stops_the_run_with_its_name(run, tmp_path):
    run.ok("init")
    run.ok("apply", write(tmp_path / "r.workflow.yaml", WORKFLOW))
    (tmp_path / "labelyard.db.run-lock").mkdir()
    proc = run("run")
    assert proc.returncode == 1
    assert proc.stderr == f"labelyard: {run.db}.run-lock: cannot open the run lock (Is a directory); nothing done\n"


def test_a_lock_file_without_permission_warns_with_the_fix_and_read_only_file_systems_stay_quiet(
        tmp_path, monkeypatch, capsys):
    def refuse(code: int):
        def open_lock_file(path: str) -> int:
            raise OSError(code, os.strerror(code), path)
        return open_lock_file

    db = str(tmp_path / "x.db")
    monkeypatch.delenv("LABELYARD_WRITER_LOCK", raising=False)
    monkeypatch.delenv("LABELYARD_NO_WRITER_LOCK", raising=False)
    monkeypatch.setattr(writer_lock, "_WARNED", set())
    monkeypatch.setattr(writer_lock, "open_lock_file", refuse(errno.EACCES))
    said = (f"labelyard: warning: {db}.lock: cannot open the writer lock (Permission denied); writing without it, "
            "so writers are not queued (SQLite still keeps each write whole). ")
    lock = WriterLock(db)  # no lock file, and none can be made: the folder is the matter
    with lock:
        pass
    assert capsys.readouterr().err == said + (
        "This user cannot create it beside the database: make the database's folder writable by its group "
        "(chmod g+w), as SQLite's -wal and -shm files need too\n")
    Path(db + ".lock").touch()  # another user's lock file
    lock = WriterLock(db)
    for _ in range(2):
        with lock:
            pass
    assert capsys.readouterr().err == said + (
        f"Everyone who writes the database must be able to open it: chmod 660 {db}.lock (and chgrp it to the "
        "database's group)\n")
    monkeypatch.setattr(writer_lock, "open_lock_file", refuse(errno.EROFS))
    with WriterLock(db):
        pass
    assert capsys.readouterr().err == ""
