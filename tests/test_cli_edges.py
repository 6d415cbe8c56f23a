"""The command line at its edges: what a user can type or do around a command that used to end in a
traceback, a wrong exit status or lost data.

Real ``labelyard`` subprocesses on real database files (``conftest.run``): numbers past SQLite's
range, arguments that are not UTF-8, an empty ``--db``, a read-only database, ``demo --dir`` naming
a folder that is not the demo's, printed commands with spaces in their paths, and standard output
closed by its reader.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL_WORKFLOW

HUGE = "99999999999999999999"  # past SQLite's 64-bit integers


def project(run, write_workflow) -> None:
    """An initialised project with the small workflow, an annotator `ann` and task T1 open."""
    run.ok("init")
    run.ok("apply", write_workflow(SMALL_WORKFLOW))
    run.ok("workers", "add", "ann", "--role", "annotator")
    (run.folder / "t.jsonl").write_text(json.dumps({"id": "T1", "data": {}}) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")


# -- numbers past SQLite's range -----------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("submit", HUGE, "--label", "cat", "--as", "ann"),
    ("release", "--assignment", HUGE),
    ("release", "--assignment", HUGE, "--dry-run"),
    ("rejects", "--limit", HUGE),
    ("submit", "0", "--label", "cat", "--as", "ann"),
    ("release", "--assignment", "-1"),
    ("rejects", "--limit", "-1"),
])
def test_ids_and_limits_out_of_range_are_usage_errors(run, write_workflow, args):
    project(run, write_workflow)
    proc = run(*args)  # the fixture fails on a traceback
    assert proc.returncode == 2, proc.stderr
    assert "is not in the range" in proc.stderr


def test_ids_and_limits_at_sqlites_bounds_still_work(run, write_workflow):
    project(run, write_workflow)
    top = str(2**63 - 1)
    proc = run("submit", top, "--label", "cat", "--as", "ann")
    assert proc.returncode == 1 and f"no assignment {top}" in proc.stderr, proc.stderr
    proc = run("release", "--assignment", top)
    assert proc.returncode == 1 and top in proc.stderr, proc.stderr
    assert run.ok("rejects", "--limit", top).stdout == ""
    assert run.json("rejects", "--limit", "0", "--json") == []


# -- an empty --db ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("status", "--db", ""), ("--db", "", "status"), ("init", "--db", ""),
                                  ("--db", "", "workers", "list"), ("claim", "--db", "", "--as", "ann")])
def test_an_empty_db_option_is_refused_not_replaced_by_the_default(run, write_workflow, tmp_path, args):
    project(run, write_workflow)  # LABELYARD_DB names this project: `--db ""` used to fall back to it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run(*args, cwd=elsewhere)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "labelyard: --db is empty: name the database file, or leave --db out for " \
                          "$LABELYARD_DB or ./labelyard.db\n"
    assert proc.stdout == "" and list(elsewhere.iterdir()) == []
    assert run.json("claim", "--as", "ann", "--json")["external_id"] == "T1"  # nothing was claimed


def test_an_empty_labelyard_db_is_unset(run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run.ok("init", env={"LABELYARD_DB": ""}, cwd=elsewhere)
    assert (elsewhere / "labelyard.db").is_file()
    assert run.json("status", "--json", env={"LABELYARD_DB": ""}, cwd=elsewhere)["total"] == 0


# -- arguments that are not UTF-8 ------------------------------------------------------------

ZOE = "Zo\udceb"  # what Python makes of the bytes `Zo\xeb` (Latin-1 ë) in argv or the environment


@pytest.mark.parametrize("args, env, named", [
    (("show", ZOE), {}, "argument TASK"),
    (("workers", "add", ZOE, "--role", "annotator"), {}, "argument NAME"),
    (("workers", "add", "zoe", "--role", "annotator", "--skill", ZOE), {}, "option --skill"),
    (("claim", "--as", ZOE), {}, "option --as"),
    (("claim",), {"LABELYARD_WORKER": ZOE}, "LABELYARD_WORKER"),
    (("hold", "T1", "--reason", ZOE), {}, "option --reason"),
    (("hold", "--where", f'task.external_id == "{ZOE}"'), {}, "option --where"),
    (("priority", ZOE, "3"), {}, "argument ARGS"),
    (("explain", ZOE), {}, "argument TASK"),
])
def test_text_arguments_that_are_not_utf8_are_refused_in_one_line(run, write_workflow, args, env, named):
    project(run, write_workflow)
    proc = run(*args, env=env)  # was a UnicodeEncodeError traceback
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"labelyard: {named} '") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Zo\\xeb" in proc.stderr and "' is not valid UTF-8; " in proc.stderr
    assert run.json("status", "--json")["tasks"]["open"] == 1  # nothing changed


def test_a_file_whose_name_is_not_utf8_is_ingested_and_its_rejects_found_by_that_name(run, write_workflow, tmp_path):
    project(run, write_workflow)
    name = "caf\udce9.jsonl"
    (tmp_path / name).write_text(json.dumps({"id": "T2", "data": {}}) + "\nnot json\n", encoding="utf-8")
    proc = run.ok("ingest", name)
    assert proc.stdout.startswith("ingested 1, duplicates 0, rejected 1")
    stored = run.json("rejects", "--json")
    assert [(r["source"], r["line"]) for r in stored] == [(str(tmp_path / "caf\\xe9.jsonl"), 2)]
    assert run.ok("rejects", "--source", name).stdout.startswith(str(tmp_path / "caf\\xe9.jsonl") + ":2: ")
    proc = run.ok("ingest", name)  # again: the same source, its reject updated rather than added
    assert proc.stdout.startswith("ingested 0, duplicates 1, rejected 1")
    assert len(run.json("rejects", "--json")) == 1
    cleared = run.json("rejects", "--source", name, "--clear", "--json")
    assert cleared == {"cleared": 1}


def test_gold_and_workflow_files_whose_names_are_not_utf8_are_read(run, write_workflow, tmp_path):
    project(run, write_workflow)
    gold = tmp_path / "g\udce9.jsonl"
    gold.write_text(json.dumps({"id": "G1", "data": {}, "answer": "cat"}) + "\n{\n", encoding="utf-8")
    assert run.ok("gold", "add", gold.name).stdout == "gold: added 1, updated 0, rejected 1\n"
    assert run.json("rejects", "--json")[0]["source"] == str(tmp_path / "g\\xe9.jsonl")
    changed = write_workflow(SMALL_WORKFLOW.replace("overlap: 1}", "overlap: 2}"), name="p\udce9.workflow.yaml")
    assert run.ok("apply", changed.name).stdout == "applied pets version 2\n"


# -- demo --dir ------------------------------------------------------------------------------

SMALL_DEMO = ("--tasks", "12", "--steps", "8")


def test_demo_refuses_a_folder_it_did_not_make_and_leaves_it_as_it_was(run, write_workflow, tmp_path):
    project(run, write_workflow)  # a real project: labelyard.db, t.jsonl, the workflow
    (tmp_path / "tickets.jsonl").write_text("my own tickets\n", encoding="utf-8")
    (tmp_path / "ticket-triage.workflow.yaml").write_text("my own workflow\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    proc = run("demo", "--dir", ".", *SMALL_DEMO, env={"LABELYARD_DB": None})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("labelyard: .: not a folder the demo made (it holds labelyard.db, ") and proc.stderr.count("\n") == 1
    assert "the demo would replace labelyard.db, ticket-triage.workflow.yaml, workflow.schema.json and " \
           "tickets.jsonl there: give --dir a new or empty folder" in proc.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert run.json("status", "--json")["total"] == 1  # the project's one task, not the demo's

    proc = run("demo", "--dir", str(tmp_path), *SMALL_DEMO, "--json")
    assert proc.returncode == 1 and f"{tmp_path}: not a folder the demo made" in proc.stderr
    assert proc.stdout == ""


def test_demo_refuses_a_file_and_an_empty_dir(run, tmp_path):
    (tmp_path / "notes").write_text("keep\n", encoding="utf-8")
    proc = run("demo", "--dir", "notes", *SMALL_DEMO)
    assert proc.returncode == 1 and proc.stderr == "labelyard: notes: exists and is not a folder; give --dir a new folder\n"
    assert (tmp_path / "notes").read_text(encoding="utf-8") == "keep\n"
    proc = run("demo", "--dir", "", *SMALL_DEMO)
    assert proc.returncode == 1 and "--dir is empty" in proc.stderr


def test_the_readmes_demo_runs_again_in_its_own_folder_and_in_an_empty_one(run, tmp_path):
    first = run.json("demo", *SMALL_DEMO, "--json", env={"LABELYARD_DB": None})  # README: `labelyard demo`
    folder = tmp_path / "labelyard-demo"
    assert first["folder"] == str(folder) and (folder / ".labelyard-demo").is_file()
    run.ok("claim", "--db", folder / "labelyard.db", "--as", "alice")  # work done in the demo...
    again = run.json("demo", *SMALL_DEMO, "--json", env={"LABELYARD_DB": None})
    assert again["status"] == first["status"] and again["status"]["total"] == 12  # ...rebuilt, not added to
    (tmp_path / "empty").mkdir()
    assert run.json("demo", "--dir", "empty", *SMALL_DEMO, "--json")["status"]["total"] == 12


# -- a database the user may not write --------------------------------------------------------


def obeying_file_modes(probe: Path) -> list[str]:
    """A command prefix under which file modes bind this test's subprocesses: none for a user; for
    root (whom modes do not stop) ``setpriv`` without the capabilities that override them, so a
    chmod 444 file is really read-only, as it is for an annotator. Skips when neither works."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to bind")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    mode = probe.stat().st_mode
    probe.chmod(0o444)
    try:
        tried = subprocess.run([*prefix, sys.executable, "-c", "import sys; open(sys.argv[1], 'a')", str(probe)],
                               capture_output=True, text=True)
    finally:
        probe.chmod(mode)
    if tried.returncode == 0 or "PermissionError" not in tried.stderr:
        pytest.skip(f"setpriv could not drop root's override of file modes: {tried.stderr[-200:]}")
    return prefix


WRITES = [
    ("claim", "--as", "ann"),
    ("ingest", "more.jsonl"),
    ("workers", "add", "bob", "--role", "annotator"),
    ("hold", "T1"),
    ("priority", "T1", "5"),
    ("rejects", "--clear"),
    ("gold", "add", "gold.jsonl"),
    ("run",),
]


def test_writing_to_a_read_only_database_is_one_line_not_a_traceback(run, write_workflow, tmp_path):
    project(run, write_workflow)
    (tmp_path / "more.jsonl").write_text(json.dumps({"id": "T2", "data": {}}) + "\n", encoding="utf-8")
    (tmp_path / "gold.jsonl").write_text(json.dumps({"id": "G1", "data": {}, "answer": "cat"}) + "\n",
                                         encoding="utf-8")
    before = run.json("status", "--json")
    run.command = [*obeying_file_modes(tmp_path / "more.jsonl"), *run.command]
    run.db.chmod(0o444)
    try:
        for args in WRITES:
            proc = run(*args)  # was sqlite3.OperationalError: attempt to write a readonly database
            assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
            assert proc.stderr == (f"labelyard: {run.db}: cannot write to the database (the file, its -wal or "
                                   "-shm file or its folder is read-only; check their permissions)\n"), (args, proc.stderr)
        assert run.json("status", "--json") == before  # reading still works
        run.db.chmod(0o660)  # the file mended, but the -shm SQLite made beside it is read-only: no lock, no wait
        assert (tmp_path / "labelyard.db-shm").exists()
        proc = run("claim", "--as", "ann")
        assert proc.returncode == 1 and "cannot write to the database (the file, its -wal or -shm" in proc.stderr, \
            proc.stderr  # was "database stayed locked: attempt to write a readonly database"
    finally:
        for path in (run.db, *tmp_path.glob("labelyard.db-*")):  # SQLite made -wal and -shm read-only too
            path.chmod(0o660)
    assert run.json("status", "--json") == before  # nothing was written
    assert run.json("claim", "--as", "ann", "--json")["external_id"] == "T1"  # and writing works again


def test_a_database_in_a_read_only_folder_says_permissions_not_check_db(run, write_workflow, tmp_path):
    project(run, write_workflow)
    run.command = [*obeying_file_modes(tmp_path / "t.jsonl"), *run.command]
    assert not (tmp_path / "labelyard.db-shm").exists()  # the last connection removed it: it must be made
    tmp_path.chmod(0o555)
    try:
        for args in (("status",), ("claim", "--as", "ann")):
            proc = run(*args)
            assert proc.returncode == 1, proc.stderr
            assert proc.stderr.startswith(f"labelyard: {run.db}: cannot open the database ("), proc.stderr
            assert proc.stderr.endswith("): SQLite writes its -wal and -shm files beside it, even to read it; check "
                                        "the permissions of the file and of its folder\n"), proc.stderr
    finally:
        tmp_path.chmod(0o755)
    assert run.json("status", "--json")["tasks"]["open"] == 1


# -- printed commands with spaces in their paths ---------------------------------------------


def printed_commands(line: str) -> list[list[str]]:
    """The commands a `next:` or `labelyard rejects …` hint prints, split as a shell would."""
    import shlex

    return [shlex.split(part) for part in line.split("   |   ")]


def test_the_demos_next_commands_work_when_pasted_with_a_space_in_the_folder(run, tmp_path):
    proc = run.ok("demo", "--dir", "my demo", *SMALL_DEMO, env={"LABELYARD_DB": None})
    line = next(text for text in proc.stdout.splitlines() if text.startswith("next: "))
    status, claim = printed_commands(line[len("next: "):])
    assert status == ["labelyard", "status", "--db", "my demo/labelyard.db"]  # was --db my demo/labelyard.db
    assert claim[:4] == ["labelyard", "claim", "--db", "my demo/labelyard.db"]
    assert "workflow: ticket-triage" in run.ok(*status[1:], env={"LABELYARD_DB": None}).stdout


def test_a_plugin_ingests_rejects_hint_quotes_the_database_path(run, write_workflow, tmp_path):
    folder = tmp_path / "my project"
    folder.mkdir()
    env = {"LABELYARD_DB": str(folder / "labelyard.db")}
    run.ok("init", env=env)
    run.ok("apply", write_workflow(SMALL_WORKFLOW), env=env)
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "T1", "data": {}}) + "\nnot json\n", encoding="utf-8")
    proc = run.ok("ingest", "jsonl:in.jsonl", env=env)
    hint = proc.stderr.strip()
    assert hint == (f"rejected rows are kept with their reasons: labelyard rejects --db '{folder}/labelyard.db' "
                    f"--source {tmp_path / 'in.jsonl'}")  # the one source its rejects are kept under
    [command] = printed_commands(hint.split(": ", 1)[1])
    assert run.ok(*command[1:]).stdout.startswith(f"{tmp_path / 'in.jsonl'}:2: invalid JSON")


def test_the_writer_locks_chmod_hint_quotes_the_lock_files_path(run, write_workflow, tmp_path):
    project(run, write_workflow)
    lock = tmp_path / "labelyard.db.lock"
    run.command = [*obeying_file_modes(lock), *run.command]
    moved = tmp_path / "my project"
    shutil.copytree(tmp_path, moved, ignore=shutil.ignore_patterns("my project"))
    env = {"LABELYARD_DB": str(moved / "labelyard.db")}
    (moved / "labelyard.db.lock").chmod(0o444)  # another user's lock file: this one may not open it to write
    proc = run("claim", "--as", "ann", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"chmod 660 '{moved}/labelyard.db.lock' (and chgrp it" in proc.stderr


# -- standard output closed by its reader ----------------------------------------------------


def with_stdout_closed(run, *args: str) -> subprocess.CompletedProcess:
    """``labelyard ARGS | head -0``, made certain: the pipe's reader is gone before the command starts."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([*run.command, *args], stdout=write, stderr=subprocess.PIPE, text=True, env=run.env,
                              cwd=run.folder, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize("args", [
    ("status",), ("show", "T1"), ("--help",), ("status", "--help"), ("workers", "--help"), ("--version",),
    ("export",), ("workers", "list"),
])
def test_a_reader_that_closes_the_pipe_early_is_success(run, write_workflow, args):
    project(run, write_workflow)
    run.ok("claim", "--as", "ann")
    proc = with_stdout_closed(run, *args)  # rich's tables and click's help exited 1
    assert (proc.returncode, proc.stderr) == (0, "")


def test_show_prints_a_prediction_that_has_a_confidence_but_no_label(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow(SMALL_WORKFLOW))
    (run.folder / "t.csv").write_text("id,text,prediction_confidence\nT1,hello,0.42\n", encoding="utf-8")
    run.ok("ingest", "t.csv")
    assert run.json("show", "T1", "--json")["prediction"]["confidence"] == 0.42
    shown = run.ok("show", "T1").stdout
    assert "prediction: null confidence=0.42" in shown  # before: no prediction line at all
