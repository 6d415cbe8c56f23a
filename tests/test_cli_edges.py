"""The command line at its edges: what a user can type or do around a command that used to end in a
traceback, a wrong exit status or lost data.

Real ``labelyard`` subprocesses on real database files (``conftest.run``): numbers past SQLite's
range, arguments that are not UTF-8, an empty ``--db``, a read-only database, ``demo --dir`` naming
a folder that is not the demo's, printed commands with spaces in their paths, and standard output
closed by its reader.
"""

from __future__ import annotations

import json

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
