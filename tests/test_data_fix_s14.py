"""Data in and out (s14): restore, backups over live files, JSON that stays JSON, changed rows, tags, rejects.

- F5: copying a backup back (``cp``, or ``backup --force`` onto the project's path) let SQLite replay a
  ``-wal`` a killed process left over the copy: damaged pages, or the restore silently undone.
  ``labelyard restore BACKUP`` writes the copy into the database through SQLite's backup API, and
  ``backup`` refuses a DEST with SQLite's files beside it.

Real SQLite files and the real ``labelyard`` command (``run`` fixture); a killed ingest is a real
process killed with SIGKILL once the database shows its rows (a poll, no sleep).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlite_utils import Database

from conftest import LEAD
from router import migrations

WORKFLOW = """\
workflow: b
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: default
    do: {annotate: q, overlap: 1}
on_quorum:
  - name: any
    do: accept
"""

HANG_GUARD_S = 120  # only so that a stuck process fails the test instead of hanging it


def rows(prefix: str, n: int) -> str:
    return "".join(json.dumps({"id": f"{prefix}{i}", "data": {"n": i}}) + "\n" for i in range(1, n + 1))


def project(run, tmp_path):
    run.ok("init")
    (tmp_path / "wf.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("apply", "wf.yaml")


def query(path, sql: str, params=()) -> list:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(path, prefix: str = "") -> int:
    return query(path, "SELECT count(*) FROM tasks WHERE external_id LIKE ?", (prefix + "%",))[0][0]


def kill_an_ingest_mid_stream(run, prefix: str, n: int) -> None:
    """Start `ingest -` from a pipe, feed it ``n`` rows, wait until they are committed, SIGKILL it:
    its WAL frames stay in DB-wal, never checkpointed."""
    env = dict(run.env)
    proc = subprocess.Popen([*run.command, "ingest", "-", "--format", "jsonl"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=env,
                            cwd=run.folder)
    try:
        proc.stdin.write(rows(prefix, n))
        proc.stdin.flush()
        deadline = time.monotonic() + HANG_GUARD_S
        while count(run.db, prefix) < n:  # committed (each poll's connection closed: no lock left)
            assert time.monotonic() < deadline, "the stream ingest never committed its rows"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=HANG_GUARD_S)
        proc.stdin.close()


# -- F5: restore -----------------------------------------------------------------------------------

def test_restore_after_an_ingest_was_killed_puts_the_backups_rows_back_and_the_file_passes_its_check(
        run, tmp_path):
    """The finding's reproduction: a backup, more rows, an ingest killed with its rows in DB-wal,
    then the restore."""
    project(run, tmp_path)
    (tmp_path / "t.jsonl").write_text(rows("K", 2000), encoding="utf-8")
    run.ok("ingest", "-q", "t.jsonl")
    run.ok("backup", "b0.db")
    (tmp_path / "more.jsonl").write_text(rows("M", 3000), encoding="utf-8")
    run.ok("ingest", "-q", "more.jsonl")
    kill_an_ingest_mid_stream(run, "S", 3000)
    wal = tmp_path / "labelyard.db-wal"
    assert wal.exists() and wal.stat().st_size > 0  # what the killed ingest left: the case `cp` got wrong

    out = run.ok("restore", "b0.db").stdout
    assert out == f"restored {run.db} from b0.db (schema {migrations.SCHEMA_VERSION})\n"
    assert query(run.db, "PRAGMA integrity_check") == [("ok",)]
    assert count(run.db) == count(run.db, "K") == 2000
    assert query(run.db, "SELECT count(*) FROM tasks") == query(tmp_path / "b0.db", "SELECT count(*) FROM tasks")
    status = run.json("status", "--json")
    assert sum(status["tasks"].values()) == 2000
    again = run.json("ingest", "t.jsonl", "--json")  # every K row is there: all duplicates
    assert (again["ingested"], again["duplicates"]) == (0, 2000)
    assert query(run.db, "PRAGMA journal_mode") == [("wal",)]
    run.ok("backup", "b1.db")  # the database passes backup's check too


def test_restore_records_who_restored_what_and_is_a_leads_action(run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "t.jsonl").write_text(rows("K", 3), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    run.ok("backup", "b0.db")
    run.ok("workers", "add", "ann", "--role", "annotator")
    refused = run("restore", "b0.db", "--as", "ann")
    assert refused.returncode == 1
    assert refused.stderr == ("labelyard: ann needs the lead role for this "
                              "(`labelyard workers set ann --role annotator --role lead` by a lead)\n")
    assert query(run.db, "SELECT count(*) FROM workers WHERE id = 'ann'") == [(1,)]  # nothing changed
    result = run.json("restore", "b0.db", "--json")
    assert result == {"restored": str(run.db), "from": "b0.db", "schema": migrations.SCHEMA_VERSION,
                      "migrations": []}
    assert query(run.db, "SELECT count(*) FROM workers WHERE id = 'ann'") == [(0,)]  # as the backup had it
    kind, actor, detail = query(run.db, "SELECT kind, actor, detail FROM events ORDER BY id DESC LIMIT 1")[0]
    assert (kind, actor) == ("restored", LEAD)
    assert json.loads(detail) == {"from": str(tmp_path / "b0.db"), "schema": migrations.SCHEMA_VERSION,
                                  "migrations": []}
    assert not (tmp_path / "b0.db.lock").exists()  # reading the copy leaves nothing beside it
    assert query(tmp_path / "b0.db", "SELECT count(*) FROM events WHERE kind = 'restored'") == [(0,)]


def test_restore_refuses_while_another_process_has_the_database_open(run, tmp_path):
    project(run, tmp_path)
    run.ok("backup", "b0.db")
    (tmp_path / "t.jsonl").write_text(rows("K", 3), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n"
                               "c.execute('SELECT count(*) FROM tasks').fetchone()\nprint('ready', flush=True)\n"
                               "sys.stdin.read()", str(run.db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        proc = run("restore", "b0.db")
        assert proc.returncode == 1
        assert proc.stderr == (f"labelyard: {run.db}: another process has the database open (process {holder.pid}): "
                               "stop every labelyard process that uses it (tui, work, claim loops, run and tick from "
                               "cron), then restore again; nothing changed\n")
        assert count(run.db, "K") == 3
    finally:
        holder.stdin.close()
        holder.wait(timeout=HANG_GUARD_S)
    run.ok("restore", "b0.db")
    assert count(run.db, "K") == 0


def older_copy(path) -> int:
    """A database as a Labelyard before ``m008`` left it, with a task; returns its schema version."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size=4096")  # not the 2048 of a new project: a WAL file keeps its own
    migrations.migrations.apply(Database(conn), stop_before="m008_plugin_reject_keys")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("INSERT INTO tasks (external_id, status, created_at, updated_at, stage_at) "
                 "VALUES ('OLD-1', 'held', 1, 1, 1)")
    version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    conn.close()
    return version


def test_restore_of_a_copy_an_older_labelyard_made_migrates_it_as_init_does(run, tmp_path):
    project(run, tmp_path)
    version = older_copy(tmp_path / "old.db")
    assert version < migrations.SCHEMA_VERSION
    result = run.json("restore", "old.db", "--json")
    assert result["schema"] == version
    assert result["migrations"] == migrations.pending(sqlite3.connect(tmp_path / "old.db"))
    assert result["migrations"][-1].startswith(f"m{migrations.SCHEMA_VERSION:03d}_")
    assert query(run.db, "SELECT version FROM schema_version") == [(migrations.SCHEMA_VERSION,)]
    assert query(run.db, "SELECT external_id FROM tasks") == [("OLD-1",)]
    assert query(run.db, "PRAGMA page_size") == [(4096,)]
    assert query(run.db, "PRAGMA journal_mode") == [("wal",)]
    assert query(run.db, "PRAGMA integrity_check") == [("ok",)]
    assert json.loads(query(run.db, "SELECT detail FROM events WHERE kind = 'restored'")[0][0])["schema"] == version
    run.ok("status")  # no `init` needed


def test_restore_refuses_what_is_not_a_sound_labelyard_copy_and_changes_nothing(run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "t.jsonl").write_text(rows("K", 3), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    (tmp_path / "text.db").write_text("hello\n")
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    run.ok("backup", "newer.db")
    conn = sqlite3.connect(tmp_path / "newer.db")
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    expected = {
        "missing.db": "labelyard: missing.db: cannot read the copy: No such file or directory; nothing changed\n",
        "text.db": "labelyard: text.db: not an SQLite database file (not a copy `labelyard backup` made); "
                   "nothing changed\n",
        "other.db": "labelyard: other.db: holds other tables (notes), not a Labelyard database; nothing to restore; "
                    "nothing changed\n",
        "newer.db": f"labelyard: newer.db: database schema 99 is newer than this Labelyard "
                    f"({migrations.SCHEMA_VERSION}); upgrade labelyard\n",
        "labelyard.db-wal": f"labelyard: labelyard.db-wal is the database's write-ahead log ({run.db}): name a copy "
                            "`labelyard backup` made\n",
    }
    for copy, message in expected.items():
        proc = run("restore", copy)
        assert (proc.returncode, proc.stderr) == (1, message), copy
    assert count(run.db, "K") == 3


def test_restore_refuses_a_damaged_copy(run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "t.jsonl").write_text(rows("K", 2000), encoding="utf-8")
    run.ok("ingest", "-q", "t.jsonl")
    run.ok("backup", "b0.db")
    copy = tmp_path / "b0.db"
    size = copy.stat().st_size
    with open(copy, "r+b") as handle:  # garbage over a page in the middle of the tasks' b-tree
        handle.seek(size // 2 // 2048 * 2048)
        handle.write(b"\xff" * 2048)
    proc = run("restore", "b0.db")
    assert proc.returncode == 1
    assert proc.stderr.startswith("labelyard: b0.db: the copy is damaged (")  # quick_check's finding, or SQLite's error
    assert proc.stderr.endswith("); nothing changed: restore an older copy\n")
    assert count(run.db, "K") == 2000


def test_restore_makes_a_missing_database_from_the_copy(run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "t.jsonl").write_text(rows("K", 3), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    run.ok("backup", "b0.db")
    (tmp_path / "elsewhere").mkdir()
    new = tmp_path / "elsewhere" / "lab.db"
    run.ok("restore", "b0.db", "--db", new)
    assert count(new, "K") == 3
    assert oct(new.stat().st_mode & 0o777) == oct(0o660)
    assert query(new, "PRAGMA integrity_check") == [("ok",)]


# -- F5: backup --force DEST where a database's -wal is -----------------------------------------------

def test_backup_refuses_a_dest_with_a_wal_beside_it_and_names_restore(run, tmp_path):
    """`labelyard --db b0.db backup --force lab.db` with lab.db-wal beside it: the copy was put over the
    file and SQLite applied the stale WAL over it."""
    project(run, tmp_path)
    (tmp_path / "t.jsonl").write_text(rows("K", 20), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    run.ok("backup", "b0.db")
    (tmp_path / "more.jsonl").write_text(rows("M", 30), encoding="utf-8")
    run.ok("ingest", "more.jsonl")
    kill_an_ingest_mid_stream(run, "S", 30)
    before = (tmp_path / "labelyard.db").read_bytes()
    proc = run("--db", "b0.db", "backup", "--force", run.db)
    assert proc.returncode == 1
    assert proc.stderr == (f"labelyard: {run.db}: labelyard.db-wal and labelyard.db-shm are beside it (a database "
                           "there is open, or a process that used it was killed): SQLite would apply them over the "
                           "copy; nothing was written. To put this copy back as that project's database: "
                           f"`labelyard restore b0.db --db {run.db}`\n")
    assert (tmp_path / "labelyard.db").read_bytes() == before
    assert not [name for name in os.listdir(tmp_path) if "backup-tmp" in name]
    assert count(run.db, "S") == 30
    # a numbered copy in a folder takes the next name instead of one with a -wal beside it
    (tmp_path / "bk").mkdir()
    stamp = "labelyard-20250301T090000Z"
    (tmp_path / "bk" / f"{stamp}.db-wal").write_bytes(b"")
    made = run.json("backup", "bk", "--json")["backup"]
    assert os.path.basename(made) == f"{stamp}-2.db"


# -- F4: backup --force onto a symlink ----------------------------------------------------------------

def test_backup_force_onto_a_symlink_replaces_the_file_it_names_and_keeps_the_link(run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "t.jsonl").write_text(rows("K", 3), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    (tmp_path / "offsite").mkdir()
    target = tmp_path / "offsite" / "lab.db"
    target.write_text("old\n")
    (tmp_path / "latest.db").symlink_to(target)
    out = run.ok("backup", "--force", "latest.db").stdout
    assert out.startswith(f"backed up {run.db} to latest.db -> {target} (")
    assert os.readlink(tmp_path / "latest.db") == str(target)
    assert count(target, "K") == 3
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".ly-")]  # the copy was made beside it
    # a link to a file not there yet is followed too (no --force needed: nothing is replaced)
    (tmp_path / "dangling.db").symlink_to(tmp_path / "offsite" / "new.db")
    assert run.json("backup", "dangling.db", "--json")["backup"] == "dangling.db"
    assert count(tmp_path / "offsite" / "new.db", "K") == 3
    assert os.path.islink(tmp_path / "dangling.db")
    refused = run("backup", "latest.db")  # an existing target still needs --force
    assert (refused.returncode, refused.stderr) == (1, "labelyard: latest.db exists: pass --force to replace it\n")


# -- F3: NaN and Infinity an early Labelyard stored stay out of JSON ------------------------------------

NUMBERS = """\
workflow: n
labels: {type: number}
queues:
  q: {roles: [annotator]}
on_create:
  - name: auto
    when: prediction.confidence >= 0.5
    do: accept
  - name: default
    do: {annotate: q, overlap: 1}
on_quorum:
  - name: any
    do: accept
"""


def strict_json(text: str):
    """JSON as the standard has it: NaN, Infinity and -Infinity are refused."""
    def refuse(word):
        raise ValueError(f"not JSON: {word}")
    return json.loads(text, parse_constant=refuse)


def project_with_non_finite_values(run, tmp_path) -> None:
    """Final labels and data holding NaN and infinities, as an early Labelyard stored them (written here
    with SQL: today's ingest and submit refuse them)."""
    run.ok("init")
    (tmp_path / "n.yaml").write_text(NUMBERS, encoding="utf-8")
    run.ok("apply", "n.yaml")
    (tmp_path / "p.jsonl").write_text("".join(
        json.dumps({"id": f"P{i}", "data": {"x": i}, "prediction": {"label": i, "confidence": 0.9}}) + "\n"
        for i in range(1, 5)) + json.dumps({"id": "OPEN", "data": {"x": 0}}) + "\n", encoding="utf-8")
    run.ok("ingest", "p.jsonl")
    conn = sqlite3.connect(run.db)
    conn.execute("UPDATE tasks SET final_label = 'NaN', pred_label = 'NaN' WHERE external_id = 'P1'")
    conn.execute("UPDATE tasks SET final_label = 'Infinity' WHERE external_id = 'P2'")
    conn.execute("""UPDATE tasks SET data = '{"t":-Infinity,"ok":[1,NaN]}' WHERE external_id = 'P3'""")
    conn.execute("""UPDATE tasks SET data = '{"t":NaN}' WHERE external_id = 'OPEN'""")
    conn.commit()
    conn.close()


WARNING = ("warning: NaN or Infinity, which JSON cannot carry, written as null{cells}: {where} "
           "(an early Labelyard stored them; ingest and submit refuse them now)\n")


def test_export_writes_nan_and_infinity_as_null_and_says_which_tasks_held_them(run, tmp_path):
    project_with_non_finite_values(run, tmp_path)
    proc = run.ok("export")
    exported = {row["id"]: row for row in map(strict_json, proc.stdout.splitlines())}
    assert exported["P1"]["label"] is None and exported["P2"]["label"] is None
    assert exported["P3"]["data"] == {"t": None, "ok": [1, None]} and exported["P3"]["label"] == 3
    assert exported["P4"] == {**exported["P4"], "label": 4, "data": {"x": 4}}
    assert proc.stderr == WARNING.format(cells="", where="task P1 (label, prediction.label); task P2 (label); "
                                                         "task P3 (data.t, data.ok[1])")
    run.ok("export", "-o", "out.jsonl")
    for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines():
        strict_json(line)

    csv_proc = run.ok("export", "--format", "csv")
    lines = csv_proc.stdout.splitlines()
    assert lines[1].startswith("P1,,") and lines[2].startswith("P2,,") and lines[3].startswith("P3,3,")
    assert "NaN" not in csv_proc.stdout and "Infinity" not in csv_proc.stdout
    assert csv_proc.stderr == WARNING.format(cells=" (in CSV: an empty cell, or null inside a label written as JSON)",
                                             where="task P1 (label); task P2 (label)")


def test_json_outputs_write_nan_and_infinity_as_null_naming_the_task_and_field(run, tmp_path):
    project_with_non_finite_values(run, tmp_path)
    proc = run.ok("show", "P1", "--json")
    shown = strict_json(proc.stdout)
    assert shown["task"]["final_label"] is None and shown["prediction"]["label"] is None
    assert proc.stderr == WARNING.format(cells="", where="task P1 (task.pred_label, task.final_label, "
                                                         "prediction.label)")
    run.ok("workers", "add", "ann", "--role", "annotator")
    claim = run("claim", "--as", "ann", "--json")
    assert claim.returncode == 0, claim.stderr
    claimed = strict_json(claim.stdout)
    assert (claimed["external_id"], claimed["data"]) == ("OPEN", {"t": None})
    assert claim.stderr == WARNING.format(cells="", where="task OPEN (data.t)")
    plain = run.ok("show", "P2")  # text for people: as stored
    assert "Infinity" in plain.stdout and plain.stderr == ""


# -- F1: a row whose id is stored with other content is counted apart, not as a duplicate ---------------

def changed_warning(lines: str, n: int = 1) -> str:
    rows = "1 row gives" if n == 1 else f"{n} rows give"
    return (f"warning: {rows} an id already stored with other content ({'line' if n == 1 else 'lines'} {lines}): the "
            "stored task was kept, as ingest never changes a task; to add such a row as a task of its own, give it a "
            "new id\n")


def test_a_row_repeating_an_id_with_other_data_in_the_same_file_is_counted_as_changed(run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "dup.jsonl").write_text('{"id":"D","data":{"t":"1"}}\n{"id":"D","data":{"t":"2"}}\n'
                                        '{"id":"D","data":{"t":"1"}}\n', encoding="utf-8")
    proc = run.ok("ingest", "dup.jsonl")
    assert proc.stdout.splitlines()[0] == "ingested 1, duplicates 1, changed 1, rejected 0"
    assert proc.stderr == changed_warning("2")
    assert run.json("show", "D", "--json")["task"]["data"] == {"t": "1"}  # the first row's task, kept


def test_ingesting_a_known_id_with_new_content_keeps_the_task_and_says_so(run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "f.jsonl").write_text('{"id":"A","data":{"t":"old","u":1},"tags":["x"]}\n{"id":"B","data":{}}\n',
                                      encoding="utf-8")
    run.ok("ingest", "f.jsonl")
    # the same rows, keys in another order: duplicates, as before
    (tmp_path / "f.jsonl").write_text('{"tags":["x"],"data":{"u":1,"t":"old"},"id":"A"}\n{"id":"B","data":{}}\n',
                                      encoding="utf-8")
    same = run("ingest", "f.jsonl", "--json")
    assert json.loads(same.stdout)["duplicates"] == 2 and "changed" not in json.loads(same.stdout)
    assert same.stderr == ""
    (tmp_path / "f.jsonl").write_text('{"id":"B","data":{}}\n{"id":"A","data":{"t":"NEW","u":1},"tags":["x"]}\n'
                                      '{"id":"C","data":{},"category":"z"}\n', encoding="utf-8")
    proc = run("ingest", "f.jsonl", "--json")
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert (report["ingested"], report["duplicates"], report["changed"], report["rejected"]) == (1, 1, 1, 0)
    assert proc.stderr == changed_warning("2")
    assert run.json("show", "A", "--json")["task"]["data"] == {"t": "old", "u": 1}
    # other tags, category or prediction are other content too
    (tmp_path / "g.jsonl").write_text('{"id":"A","data":{"t":"old","u":1}}\n'
                                      '{"id":"B","data":{},"category":"k"}\n'
                                      '{"id":"C","data":{},"category":"z","prediction":{"label":"a"}}\n',
                                      encoding="utf-8")
    report = run.json("ingest", "g.jsonl", "--json")
    assert (report["duplicates"], report["changed"]) == (0, 3)


def test_a_changed_row_in_a_later_batch_of_the_same_file_is_counted_as_changed(run, tmp_path):
    """The first row's batch may or may not be stored when the router reads the last one's ids (the
    writer then finds the clash): either way the row is counted as changed, at its line."""
    project(run, tmp_path)
    body = rows("K", 20000) + json.dumps({"id": "K1", "data": {"n": "other"}}) + "\n"
    (tmp_path / "big.jsonl").write_text(body, encoding="utf-8")
    proc = run("ingest", "big.jsonl", "--json")
    report = json.loads(proc.stdout)
    assert (report["ingested"], report["duplicates"], report["changed"]) == (20000, 0, 1)
    assert proc.stderr == changed_warning("20001")


def test_the_writer_counts_a_row_stored_meanwhile_with_other_content_as_changed(run, tmp_path):
    """A batch routed before another ingest stored its ids (two ingests at once): the writer finds them
    under its lock and compares too."""
    from router.engine import Engine
    from router.ingest import TaskInput
    from router.ingest_pipeline import BatchWriter

    project(run, tmp_path)
    engine = Engine.open(str(run.db))
    try:
        batch = engine._route_batch(engine.workflow, engine.workflow_id,
                                    [TaskInput(external_id=name, data={"t": 1}, line=n)
                                     for n, name in enumerate(("A", "B", "C"), 1)], "mine")
    finally:
        engine.close()
    (tmp_path / "other.jsonl").write_text('{"id":"A","data":{"t":1}}\n{"id":"B","data":{"t":2}}\n',
                                          encoding="utf-8")
    run.ok("ingest", "other.jsonl")  # stored meanwhile: A as the batch has it, B with other data
    writer = BatchWriter(str(run.db), "mine")
    try:
        writer.write(batch)
    finally:
        writer.close()
    report = writer.report
    assert (report.ingested, report.duplicates, report.changed, report.changed_lines) == (1, 1, 1, [2])
    assert query(run.db, "SELECT data FROM tasks WHERE external_id = 'B'") == [('{"t":2}',)]


# -- F2: a JSON Lines export carries tags and the prediction, so export -> ingest elsewhere keeps them ----

def test_export_then_ingest_elsewhere_keeps_tags_and_prediction(run, tmp_path):
    project_with_non_finite_values(run, tmp_path)  # numbers accepted from the prediction
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"id": "T", "data": {"x": 9}, "category": "c", "tags": ["x", "y"],
                    "prediction": {"label": 7, "confidence": 0.75, "model": "m1", "scores": {"7": 0.75}}}) + "\n",
        encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    exported = {row["id"]: row for row in map(json.loads, run.ok("export").stdout.splitlines())}
    assert exported["T"]["tags"] == ["x", "y"]
    assert exported["T"]["prediction"] == {"label": 7, "confidence": 0.75, "model": "m1", "scores": {"7": 0.75}}
    assert exported["P4"]["prediction"] == {"label": 4, "confidence": 0.9, "model": None, "scores": None}
    assert exported["P4"]["tags"] == []
    run.ok("export", "-o", "final.jsonl")
    other = tmp_path / "other.db"
    run.ok("--db", other, "init")
    run.ok("--db", other, "apply", "n.yaml")
    report = run.json("--db", other, "ingest", "final.jsonl", "--json")
    assert report["ingested"] == len(exported)
    for ref in ("T", "P4"):
        here, there = run.json("show", ref, "--json"), run.json("--db", other, "show", ref, "--json")
        assert (there["task"]["tags"], there["prediction"]) == (here["task"]["tags"], here["prediction"])
        assert there["task"]["category"] == here["task"]["category"]


# -- F6: a file read through a symlinked folder is the same source as by its real path -----------------

def test_rejects_of_a_file_read_through_a_link_go_when_the_fixed_file_is_read_by_its_real_path(run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "cur").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "in.jsonl").write_text('{"id":"L1","data":{}}\nbad\n', encoding="utf-8")
    report = run.json("ingest", "cur/in.jsonl", "--json")
    real = str(tmp_path / "real" / "in.jsonl")
    assert (report["rejected"], report["source"]) == (1, real)  # kept under the real path, as lock names are
    listed = run.ok("rejects", "--source", "cur/in.jsonl").stdout  # found by the link's name too
    assert listed == f"{real}:2: invalid JSON at column 1: Expecting value\n"
    (tmp_path / "real" / "in.jsonl").write_text('{"id":"L1","data":{}}\n{"id":"L2","data":{}}\n', encoding="utf-8")
    run.ok("ingest", str(tmp_path / "real" / "in.jsonl"))
    assert run.ok("rejects").stdout == ""
    assert run.json("status", "--json")["rejects"] == 0


def test_rejects_an_earlier_labelyard_kept_under_a_links_path_go_when_the_file_is_read_through_it_again(
        run, tmp_path):
    project(run, tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "cur").symlink_to(tmp_path / "real")
    linked = str(tmp_path / "cur" / "in.jsonl")
    conn = sqlite3.connect(run.db)  # as an earlier version kept them: under the absolute path, link unresolved
    conn.execute("INSERT INTO rejects (source, line, reason, raw, at, row_key) VALUES (?, 2, 'invalid JSON', 'bad', "
                 "1, '')", (linked,))
    conn.commit()
    conn.close()
    assert run.ok("rejects", "--source", "cur/in.jsonl").stdout == f"{linked}:2: invalid JSON\n"
    (tmp_path / "real" / "in.jsonl").write_text('{"id":"L1","data":{}}\n{"id":"L2","data":{}}\n', encoding="utf-8")
    run.ok("ingest", "cur/in.jsonl")
    assert run.ok("rejects").stdout == ""
