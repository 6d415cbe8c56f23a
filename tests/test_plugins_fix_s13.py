"""The thirteenth session's plugin fixes: what a plugin hands back made safe where it enters (text
that is not UTF-8, values JSON cannot carry), notifications telling the task as the event left it,
the webhook's headers, URL and back-off, a run stuck behind a hung one, unknown rule functions of
a stored workflow, ``LABELYARD_LOAD_PLUGINS`` names that match nothing, and plugin file names that
are not UTF-8.

Real subprocesses of ``labelyard`` on real SQLite files; plugins under test are ``.py`` files in a
plugins folder (``LABELYARD_PLUGINS_DIR``), as a user would write them; time through
``LABELYARD_NOW``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
from pathlib import Path

import pytest

BASE = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues: {q: {roles: [annotator]}}
on_create: [{name: all, do: {annotate: q}}]
"""


def write_plugin(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture
def project(run, tmp_path):
    """``init`` done, an empty plugins folder in LABELYARD_PLUGINS_DIR (``project.plugin(name, body)``
    adds one), ``project.apply(text)`` applies a workflow version."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    run.env["LABELYARD_PLUGINS_DIR"] = str(folder)
    run.env.pop("LABELYARD_LOAD_PLUGINS", None)
    run.folder_of_plugins = folder
    run.ok("init")

    def apply(text: str, expect_ok: bool = True):
        path = tmp_path / "f.workflow.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return run.ok("apply", path.name) if expect_ok else run("apply", path.name)

    run.apply = apply
    run.plugin = lambda name, body: write_plugin(folder, name, body)
    return run


def sql(run, query: str, *args) -> list[tuple]:
    conn = sqlite3.connect(run.db)
    try:
        with conn:
            return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def last_run(run) -> tuple:
    """``(finished_at, ok, errors)`` of the latest recorded run."""
    return sql(run, "SELECT finished_at, ok, errors FROM plugin_runs ORDER BY id DESC LIMIT 1")[0]


# -- 1: plugin text that is not UTF-8 -----------------------------------------------------------------
SCANS = """
    import os
    from router import hookimpl
    from router.plugin_api import PluginError

    @hookimpl
    def register_sources(register):
        register("scans", read)

    def read(run):
        name = os.fsdecode(b"scan-caf\\xe9.txt")   # a Latin-1 file name, as os.listdir() gives it
        raise PluginError(f"cannot read {name}: the scanner is offline")
        yield
"""


def test_a_plugin_error_naming_a_file_that_is_not_utf8_is_a_failure_and_the_run_is_recorded(project):
    project.plugin("scans", SCANS)
    project.apply(BASE + "sources: [{plugin: scans}]\nsinks: [{plugin: jsonl, path: final.jsonl}]\n")
    proc = project("run")
    assert proc.returncode == 4, proc.stderr
    assert "labelyard run: scans: sources failed: cannot read scan-caf\\xe9.txt: the scanner is offline" \
        in proc.stderr
    finished, ok, errors = last_run(project)
    assert finished is not None and ok == 0
    assert json.loads(errors)[0]["error"] == "cannot read scan-caf\\xe9.txt: the scanner is offline"
    proc = project("run", "--json")
    assert proc.returncode == 4
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["failures"][0]["error"].startswith("cannot read scan-caf\\xe9.txt")
    status = project.json("status", "--json")["last_run"]
    assert status["finished"] is True and status["ok"] is False


VOTER = """
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput

    @hookimpl
    def register_sources(register):
        register("voter", read)

    def read(run):
        votes = {"t1": [{"worker": "w1", "label": "b\\udc80"}], "t\\udc80": [{"worker": "w2", "label": "bug"}]}
        yield SourcePart("v", [TaskInput(1, "t1", {"a": 1})], cursor=1, votes=votes)
"""


def test_a_prior_vote_whose_label_is_not_utf8_is_left_out_with_its_reason_and_the_run_finishes(project):
    project.plugin("voter", VOTER)
    project.apply(BASE.replace("{annotate: q}", "{annotate: q, overlap: 2}") + "sources: [{plugin: voter}]\n")
    proc = project.ok("run")
    assert "prior votes left out 2 (" in proc.stdout
    assert "label refused: byte 0x80 is not UTF-8" in proc.stdout
    assert "no such task" in proc.stdout
    finished, ok, _ = last_run(project)
    assert finished is not None and ok == 1
    summary = json.loads(sql(project, "SELECT summary FROM plugin_runs")[0][0])
    assert summary["sources"]["voter"]["prior_votes_left_out"] == {
        "label refused: byte 0x80 is not UTF-8": 1, "no such task": 1}


def test_a_plugin_file_whose_name_is_not_utf8_fails_to_load_on_a_line_and_the_run_is_recorded(project):
    bad = os.path.join(os.fsencode(project.folder_of_plugins), b"caf\xe9.py")
    with open(bad, "w", encoding="utf-8") as handle:
        handle.write("this is not python\n")
    project.apply(BASE)
    proc = project("run")
    assert proc.returncode == 4, proc.stderr
    assert "labelyard run: caf\\xe9: load failed: " in proc.stderr
    finished, ok, errors = last_run(project)
    assert finished is not None and ok == 0 and json.loads(errors)[0]["plugin"] == "caf\\xe9"
