"""Command-line contracts found broken in round 14 (tester: cli), each checked with real ``labelyard``
subprocesses on real database files (``conftest.run``).

1. A full disk: one line naming the database and the disk, exit 1, not a traceback.
2. Another program's lock at open time is waited out like a writer's, and named as a lock.
3. ``LABELYARD_QUEUE_WAIT_S`` that is no sensible number of seconds is refused in one line.
4. ``plugins --db X`` says so when X cannot be opened, instead of listing the built-ins as if all were well.
5. ``apply`` is a lead's action, as ``hold`` is: a non-lead (or a name nobody has) cannot hold tasks with it.
7. ``export -o final.csv`` writes CSV (the name chooses the format), and a contradicting --format is refused.
8. A closed or full standard stream is one line naming it, not a traceback.
9. Consistency: ``show`` prints no ``None``, times in ``--json`` are ISO 8601, a priority is ASCII digits,
   Labelyard's signs have ASCII fallbacks on a Latin-1 stream, and printed commands can be pasted.
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

from conftest import LEAD, SMALL_WORKFLOW, labelyard_command


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


# -- 2. a lock held at open time ------------------------------------------------------------------

HOLDER = """\
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode=EXCLUSIVE")  # readers too are shut out, as by an `sqlite3` shell
conn.execute("BEGIN EXCLUSIVE")
conn.execute("UPDATE schema_version SET version = version")
print("locked", flush=True)
if sys.argv[2] == "stdin":
    sys.stdin.read()
else:
    time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def hold_lock(db: Path, until: str) -> subprocess.Popen:
    """Another program holding the database's lock: for ``until`` seconds, or (``stdin``) until its
    standard input closes."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), until], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_lock_held_past_sqlites_busy_wait_at_open_is_waited_out(run, write_workflow):
    project(run, write_workflow)
    run.ok("workers", "add", "ann", "--role", "annotator")
    # held longer than SQLite's 5 s busy handler, where the first read gave up ("check --db")
    holder = hold_lock(run.db, "8")
    try:
        proc = run("claim", "--as", "ann")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert proc.returncode == 3, proc.stderr  # it waited, opened, and found no work
    assert proc.stderr.strip() == "labelyard: no work for ann"


# `labelyard` that waits 0.1 s for a lock instead of SQLite's 5 s and Labelyard's 2 minutes.
IMPATIENT = """\
import sys
import router.store as store

store.BUSY_TIMEOUT_MS = 100
store.BUSY_GIVE_UP_S = 0.0
from router.cli import main

sys.argv[0] = "labelyard"
main()
"""


@pytest.mark.parametrize("args", [("status",), ("claim", "--as", "ann"), ("workers", "list")])
def test_a_lock_that_outlasts_the_wait_is_named_as_a_lock_not_a_wrong_path(run, write_workflow, tmp_path, args):
    project(run, write_workflow)
    run.ok("workers", "add", "ann", "--role", "annotator")
    script = tmp_path / "impatient.py"
    script.write_text(IMPATIENT, encoding="utf-8")
    run.command = [sys.executable, str(script)]
    holder = hold_lock(run.db, "stdin")
    try:
        proc = run(*args)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"labelyard: {run.db}: the database stayed locked by another process for 0 s (SQLite: database is locked); "
        "another program (an `sqlite3` shell, a sync or backup tool) may be holding it: run the command again "
        "once it lets go"]


# -- 3. LABELYARD_QUEUE_WAIT_S ----------------------------------------------------------------------

FLOCK_HOLDER = """\
import fcntl, sys
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("value", ["inf", "1e300", "99999999999", "abc", "-5", "nan", "0", "1_0", "\u0663"])
def test_a_queue_wait_that_is_no_sensible_number_of_seconds_is_refused_in_one_line(run, write_workflow, value):
    project(run, write_workflow)
    # a writer ahead in the queue: the wait is where a huge value overflowed the interval timer
    holder = subprocess.Popen([sys.executable, "-c", FLOCK_HOLDER, str(run.db) + ".lock"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = run("workers", "add", "a1", "--role", "annotator",
                   env={"LABELYARD_QUEUE_WAIT_S": value, "LABELYARD_WRITER_LOCK": "flock"})
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"labelyard: LABELYARD_QUEUE_WAIT_S={value!r}: give the seconds a writer waits for its turn, a number above 0 "
        "and at most 86400 (a day), such as 10 (the default when unset)"]
    assert "a1" not in run("workers", "list").stdout


@pytest.mark.parametrize("value", ["", " 2.5 ", "86400", ".5"])
def test_a_queue_wait_in_seconds_or_unset_is_taken(run, write_workflow, value):
    project(run, write_workflow)
    run.ok("workers", "add", "a1", "--role", "annotator", env={"LABELYARD_QUEUE_WAIT_S": value})


# -- 4. plugins --db X that cannot be opened -------------------------------------------------------

FUNCTIONS_PLUGIN = """\
from router import hookimpl


@hookimpl
def register_functions(register):
    register("double", lambda x: x * 2)
"""

WITH_PLUGIN = """\
workflow: w
plugins: [acme_fns]
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: all
    when: double(1) == 2
    do: {annotate: q}
  - name: rest
    do: {annotate: q}
"""


@pytest.fixture
def plugin_project(run, write_workflow, tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "acme_fns.py").write_text(FUNCTIONS_PLUGIN, encoding="utf-8")
    with_mods = {"PYTHONPATH": os.pathsep.join(filter(None, [str(mods), os.environ.get("PYTHONPATH")]))}
    run.ok("init")
    run.ok("apply", write_workflow(WITH_PLUGIN, "w.workflow.yaml"), env=with_mods)
    return with_mods


def test_plugins_with_the_right_database_loads_its_workflows_modules(run, plugin_project):
    assert "acme_fns" in run.ok("plugins", env=plugin_project).stdout
    proc = run("plugins")  # the module does not import here: the cron check catches it
    assert proc.returncode == 1 and "plugin acme_fns: ModuleNotFoundError" in proc.stderr, proc.stderr


def test_plugins_with_a_database_that_is_not_there_says_so(run, plugin_project, tmp_path):
    typo = tmp_path / "lab-typo.db"
    for args, env in [(("plugins", "--db", typo), None), (("plugins",), {"LABELYARD_DB": str(typo)}),
                      (("--db", typo, "plugins", "--json"), None)]:
        proc = run(*args, env=env)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert proc.stderr.strip().splitlines() == [
            f"labelyard: {typo}: no Labelyard database here; run `labelyard init` first (or pass --db)"]
        assert proc.stdout == ""
    assert not typo.exists()


def test_plugins_with_an_older_schema_says_so_as_run_does(run, plugin_project, tmp_path):
    import sqlite3

    old = tmp_path / "old.db"
    shutil.copyfile(run.db, old)
    with sqlite3.connect(old) as conn:
        conn.execute("UPDATE schema_version SET version = version - 1")
    conn.close()
    proc = run("plugins", "--db", old, env=plugin_project)
    ran = run("run", "--db", old, env=plugin_project)
    assert proc.returncode == ran.returncode == 1, (proc.stderr, ran.stderr)
    assert proc.stderr == ran.stderr and "older than this Labelyard" in proc.stderr


def test_plugins_without_a_database_lists_what_loads(run, tmp_path):
    proc = run("plugins", env={"LABELYARD_DB": None})  # no ./labelyard.db: no workflow, nothing wrong
    assert proc.returncode == 0, proc.stderr
    assert "jsonl" in proc.stdout


# -- 5. apply needs the lead role ------------------------------------------------------------------

def dropped_queue_project(run, write_workflow) -> Path:
    """The small workflow with task T1 open in `triage`, and a version without `triage`."""
    project(run, write_workflow)
    run.ok("workers", "add", "ann", "--role", "annotator")
    (run.folder / "t.jsonl").write_text(json.dumps({"id": "T1", "data": {}}) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    return write_workflow(SMALL_WORKFLOW.replace("triage", "inbox"), "next.workflow.yaml")


@pytest.mark.parametrize("who", ["nosuchperson", "ann"])
def test_apply_by_a_non_lead_is_refused_and_changes_nothing(run, write_workflow, who):
    after = dropped_queue_project(run, write_workflow)
    before = run.ok("show", "T1", "--json").stdout
    for env, args in [(None, ("--as", who)), ({"LABELYARD_WORKER": who}, ())]:
        proc = run("apply", after, "--hold-orphans", *args, env=env)
        assert proc.returncode == 1, proc.stderr
        hint = "set ann --role annotator --role lead" if who == "ann" else f"add {who} --role lead"
        assert proc.stderr == f"labelyard: {who} needs the lead role for this (`labelyard workers {hint}` by a lead)\n"
    assert run.json("status", "--json")["workflow"]["version"] == 1
    assert run.ok("show", "T1", "--json").stdout == before  # not held, no event


def test_apply_by_the_lead_init_made_holds_in_their_name(run, write_workflow):
    after = dropped_queue_project(run, write_workflow)  # `init` made LABELYARD_WORKER (lead-lucy) a lead
    assert "held 1 open task(s)" in run.ok("apply", after, "--hold-orphans").stdout
    events = run.json("show", "T1", "--json")["events"]
    assert (events[-1]["kind"], events[-1]["actor"]) == ("held", LEAD)
    run.ok("workers", "add", "boss", "--role", "lead")
    run.ok("apply", write_workflow(SMALL_WORKFLOW.replace("triage", "desk"), "third.workflow.yaml"), "--as", "boss")


# -- 7. export -o NAME chooses the format by the name --------------------------------------------

def final_label_project(run, write_workflow) -> None:
    """Task T1 with the final label `cat` (the model was confident)."""
    project(run, write_workflow)
    row = {"id": "T1", "data": {}, "prediction": {"label": "cat", "confidence": 0.95}}
    (run.folder / "t.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")


CSV_HEADER = "id,label,final_by,rule,final_at,category"


@pytest.mark.parametrize(("name", "csv_file"), [("final.csv", True), ("FINAL.CSV", True), ("final.jsonl", False),
                                                ("final.ndjson", False), ("final.json", False), ("final.txt", False),
                                                ("final", False)])
def test_export_without_format_writes_what_the_files_name_says(run, write_workflow, name, csv_file):
    final_label_project(run, write_workflow)
    proc = run.ok("export", "-o", name)
    assert proc.stderr == f"exported 1 tasks to {name}\n"
    first = (run.folder / name).read_text(encoding="utf-8").splitlines()[0]
    if csv_file:
        assert first == CSV_HEADER
    else:
        assert json.loads(first)["label"] == "cat"


def test_an_export_as_csv_by_its_name_can_be_spreadsheet_safe_and_standard_output_stays_json_lines(
        run, write_workflow):
    final_label_project(run, write_workflow)
    run.ok("export", "--spreadsheet-safe", "-o", "safe.csv")
    assert (run.folder / "safe.csv").read_text(encoding="utf-8").splitlines()[0] == CSV_HEADER
    assert json.loads(run.ok("export").stdout)["id"] == "T1"


@pytest.mark.parametrize(("fmt", "name", "message"), [
    ("jsonl", "final.csv", "a .csv file holds CSV, not JSON Lines; leave --format jsonl out (the name chooses csv)"),
    ("csv", "final.jsonl", "a .jsonl file holds JSON Lines, not CSV; leave --format csv out (the name chooses jsonl)"),
])
def test_export_refuses_a_format_its_files_name_contradicts(run, write_workflow, fmt, name, message):
    final_label_project(run, write_workflow)
    proc = run("export", "--format", fmt, "-o", name)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"labelyard: -o {name}: {message} or give the file another name\n"
    assert not (run.folder / name).exists()
    run.ok("export", "--format", fmt, "-o", f"final.{fmt}")  # agreeing: as before


# -- 8. closed and full standard streams -----------------------------------------------------------

def redirected(run, redirect: str, *args: str) -> subprocess.CompletedProcess:
    """``labelyard ARGS REDIRECT`` through ``sh`` (``>&-``, ``<&-``, ``> /dev/full``); standard error captured."""
    proc = subprocess.run(["sh", "-c", f'"$@" {redirect}', "sh", *run.command, *map(str, args)], env=run.env,
                          cwd=run.folder, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    return proc


def claim_project(run, write_workflow) -> None:
    """T1 open for the annotator ann; T2 done (the model was confident), for export."""
    project(run, write_workflow)
    run.ok("workers", "add", "ann", "--role", "annotator")
    rows = [{"id": "T1", "data": {}}, {"id": "T2", "data": {}, "prediction": {"label": "cat", "confidence": 0.95}}]
    (run.folder / "t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    run.ok("ingest", "t.jsonl")


STDIN_CLOSED = "labelyard: standard input is closed (`<&-`): `-` has nothing to read; name a file instead\n"


@pytest.mark.parametrize(("redirect", "args", "said"), [
    (">&-", ("export",), "labelyard: standard output is closed (`>&-`): nowhere to write the data; give -o FILE\n"),
    ("<&-", ("ingest", "-", "--format", "jsonl"), STDIN_CLOSED),
    ("<&-", ("gold", "add", "-"), STDIN_CLOSED),
])
def test_a_closed_standard_stream_the_command_needs_is_one_line(run, write_workflow, redirect, args, said):
    claim_project(run, write_workflow)
    proc = redirected(run, redirect, *args)
    assert (proc.returncode, proc.stderr) == (1, said)


def test_a_command_whose_output_nobody_reads_still_works(run, write_workflow):
    claim_project(run, write_workflow)
    assert redirected(run, ">&-", "status").returncode == 0
    assert redirected(run, ">&- 2>&-", "claim", "--as", "ann").returncode == 0  # as before: the slot is taken
    assert run.json("claim", "--as", "ann", "--resume", "--json")["external_id"] == "T1"


FULL = "labelyard: standard output: No space left on device\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("unbuffered", ["1", ""])
@pytest.mark.parametrize("args", [("--help",), ("status",), ("status", "--json"), ("export",), ("workers", "list")])
def test_a_full_standard_output_is_named(run, write_workflow, args, unbuffered):
    claim_project(run, write_workflow)
    run.env["PYTHONUNBUFFERED"] = unbuffered
    proc = redirected(run, "> /dev/full", *args)
    assert (proc.returncode, proc.stderr) == (1, FULL)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_claim_whose_output_is_lost_says_how_to_see_it_again(run, write_workflow):
    claim_project(run, write_workflow)
    proc = redirected(run, "> /dev/full", "claim", "--as", "ann")
    assert (proc.returncode, proc.stderr) == (1, "labelyard: standard output: No space left on device; the slot is "
                                                 "taken all the same: `labelyard claim --resume` shows it again\n")
    assert run.json("claim", "--as", "ann", "--resume", "--json")["external_id"] == "T1"


def test_a_demo_on_a_full_disk_names_the_file(run, small_disk):
    fill(small_disk)
    proc = run("demo", "--dir", small_disk / "d", "--tasks", "10", "--steps", "5")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"labelyard: {small_disk / 'd' / '.labelyard-demo'}: No space left on device\n"


# -- 9. consistency ----------------------------------------------------------------------------------

NOW_ISO = "2025-03-01T09:00:00+00:00"  # conftest's LABELYARD_NOW


def test_show_prints_no_python_none(run, write_workflow):
    claim_project(run, write_workflow)  # T2 done by the model, which has no name
    shown = run.ok("show", "T2").stdout
    assert "None" not in shown, shown
    assert shown.splitlines()[0] == "task 2 (T2) status=done priority=0"
    assert 'prediction: "cat" confidence=0.95\n' in shown
    assert run.ok("show", "T1").stdout.splitlines()[0] == "task 1 (T1) status=open stage=annotate queue=triage priority=0"


def test_show_and_rejects_json_give_iso_times_like_the_other_commands(run, write_workflow):
    claim_project(run, write_workflow)
    slot = run.json("claim", "--as", "ann", "--json")
    run.ok("submit", slot["assignment"], "--as", "ann", "--label", "dog")
    shown = run.json("show", "T1", "--json")
    task = shown["task"]
    assert [task[key] for key in ("created_at", "updated_at", "stage_at", "final_at")] == [NOW_ISO] * 4
    assert {a["created_at"] for a in shown["assignments"]} == {a["updated_at"] for a in shown["assignments"]} \
        == {NOW_ISO}
    assert {a["created_at"] for a in shown["annotations"]} == {NOW_ISO}
    assert {e["at"] for e in shown["events"]} == {NOW_ISO}
    assert run.json("explain", "T1", "--json")["events"][0]["at"] == NOW_ISO  # as explain gave them already
    (run.folder / "bad.jsonl").write_text("not json\n", encoding="utf-8")
    run.ok("ingest", "bad.jsonl")
    [reject] = run.json("rejects", "--json")
    assert reject["at"] == NOW_ISO


def test_release_of_one_assignment_names_the_task_as_the_bulk_forms_do(run, write_workflow):
    claim_project(run, write_workflow)
    slot = run.json("claim", "--as", "ann", "--json")
    released = run.json("release", "--assignment", slot["assignment"], "--json")
    assert (released["task"], released["external_id"]) == (1, "T1")


@pytest.mark.parametrize("typed", ["1_0", "\u0663", "\uff11"])
def test_a_priority_in_other_digits_is_a_usage_error(run, write_workflow, typed):
    claim_project(run, write_workflow)
    proc = run("priority", "T1", typed)
    assert proc.returncode == 2, proc.stderr
    assert f"the priority is a number in ASCII digits, without `_`, not {typed!r}" in proc.stderr
    assert run.json("show", "T1", "--json")["task"]["priority"] == 0
    run.ok("priority", "T1", "1e1")  # an exponent is ASCII too
    assert run.json("show", "T1", "--json")["task"]["priority"] == 10


def test_labelyards_signs_are_ascii_on_a_latin1_stream(run, write_workflow):
    claim_project(run, write_workflow)
    latin1 = {"PYTHONIOENCODING": "latin-1"}
    explained = run.ok("explain", "T1", env=latin1).stdout
    assert "on_create: rule `default` -> annotate triage" in explained and "\\u2192" not in explained
    agreement = run.ok("agreement", env=latin1).stdout
    assert "(excellent >= 0.8, alert < 0.6)" in agreement and "\\u2265" not in agreement
    usage = run("priority", "T1", "abc", env=latin1).stderr
    assert "(priority TASK... N)" in usage and "\\u2026" not in usage
    (run.folder / "cat.jsonl").write_text(json.dumps({"id": "C", "data": {"note": "\U0001f431"}}) + "\n",
                                          encoding="utf-8")
    run.ok("ingest", "cat.jsonl")
    assert '"note": "\\U0001f431"' in run.ok("show", "C", env=latin1).stdout  # the task's own text: escaped


def test_a_suggested_command_with_a_space_in_a_name_can_be_pasted(run, write_workflow):
    claim_project(run, write_workflow)
    proc = run("claim", "--as", "a b")
    assert proc.returncode == 1
    assert proc.stderr == "labelyard: no worker `a b`; add one with `labelyard workers add 'a b' --role annotator`\n"


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("bash") is None, reason="bytes in file names, bash")
def test_a_database_whose_name_is_not_utf8_is_named_one_way_and_its_hint_pastes(run, write_workflow, tmp_path):
    name = os.fsdecode(b"x\xe9.db")
    run.env.pop("LABELYARD_DB")
    init = subprocess.run([*run.command, "--db", name, "init"], cwd=tmp_path, env=run.env, capture_output=True)
    assert init.returncode == 0 and init.stdout.startswith(b"x\\xe9.db: applied m001"), init
    for args in (("apply", write_workflow(SMALL_WORKFLOW)),):
        assert subprocess.run([*run.command, "--db", name, *map(str, args)], cwd=tmp_path, env=run.env,
                              capture_output=True).returncode == 0
    (tmp_path / "bad.jsonl").write_text("not json\n", encoding="utf-8")
    ingest = subprocess.run([*run.command, "--db", name, "ingest", "bad.jsonl"], cwd=tmp_path, env=run.env,
                            capture_output=True)
    hint = ingest.stderr.decode("ascii").splitlines()[-1]
    assert hint == "rejected rows are kept with their reasons: labelyard rejects --db $'x\\xe9.db'"
    pasted = subprocess.run(["bash", "-c", hint.split(": ", 1)[1].replace("labelyard ", "\"$@\" ", 1) + " --json",
                             "bash", *run.command], cwd=tmp_path, env=run.env, capture_output=True, text=True)
    assert pasted.returncode == 0, pasted.stderr
    assert json.loads(pasted.stdout)[0]["raw"] == "not json"
    backup = subprocess.run([*run.command, "--db", name, "backup", "copy.db"], cwd=tmp_path, env=run.env,
                            capture_output=True)
    assert backup.stdout.startswith(b"backed up x\\xe9.db to copy.db"), backup
