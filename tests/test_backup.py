"""``labelyard backup DEST``: a consistent copy while annotators keep claiming and submitting."""

from __future__ import annotations

import json
import sqlite3
import subprocess

from conftest import SMALL_WORKFLOW


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


def test_backup_destinations_that_cannot_be_used_are_clear_errors_and_leave_nothing(run, tmp_path):
    run.ok("init")
    cases = {"": "backup needs a file or a folder to write to", "newdir/": "newdir/: no such folder",
             "labelyard.db": "is the database itself", "/proc/x.db": "cannot write the backup"}
    for dest, message in cases.items():
        proc = run("backup", dest, "--force")
        assert proc.returncode == 1 and message in proc.stderr, (dest, proc.stderr)
    assert not list(tmp_path.glob("*labelyard-tmp*"))  # no stray copy of the project's data
    (tmp_path / "b").mkdir()
    first, second = (run.json("backup", "b", "--json")["backup"] for _ in range(2))  # the same second
    assert (first, second) == ("b/labelyard-20250301T090000Z.db", "b/labelyard-20250301T090000Z-2.db")
