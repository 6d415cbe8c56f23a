"""Plugin fixes (eleventh session): plugins that move the working folder, rule functions that
print, whole error messages, badly shaped prior votes and cursors, failing `register_commands`,
one plugin file found twice, a workflow module that does not import, a replaced command, the
webhook's own headers.

Real subprocesses of ``labelyard`` on real SQLite files; plugins under test are ``.py`` files in
a plugins folder (``LABELYARD_PLUGINS_DIR``), as a user would write them; time through
``LABELYARD_NOW``.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

BASE = """\
workflow: f
labels: {type: choice, choices: [a, b]}
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
    run.ok("init")

    def apply(text: str, expect_ok: bool = True):
        path = tmp_path / "f.workflow.yaml"
        path.write_text(text, encoding="utf-8")
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


# -- 1: a plugin that moves the working folder ------------------------------------------------
SCANNER = """
    import os
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput

    @hookimpl
    def register_sources(register):
        register("scanner", read)
        register("where", where)

    def read(run):
        os.makedirs(run.path("work"), exist_ok=True)
        os.chdir(run.path("work"))          # work in our own folder
        yield SourcePart("scanner", [TaskInput(1, "s1", {"text": "hi"})], cursor=1)
        os.chdir("/")

    def where(run):
        yield SourcePart("where", [TaskInput(1, "w1", {"cwd": os.getcwd()})], cursor=1)
"""


def test_a_source_that_moves_the_working_folder_leaves_later_sources_on_a_relative_db(project, tmp_path):
    project.plugin("scanner", SCANNER)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.jsonl").write_text('{"id": "j1", "data": {"text": "x"}}\n', encoding="utf-8")
    project.apply(BASE + 'sources:\n  - {plugin: scanner}\n  - {plugin: jsonl, path: "inbox/*.jsonl"}\n'
                         "  - {plugin: where}\n")
    # the crontab line of docs/cron.md: `cd /srv/labeling && labelyard run --db labelyard.db`
    proc = project("run", "--json", "--db", "labelyard.db", env={"LABELYARD_DB": None}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["failures"] == []
    assert [report["sources"][k]["ingested"] for k in ("scanner", "jsonl:inbox/*.jsonl", "where")] == [1, 1, 1]
    assert not (tmp_path / "work" / "labelyard.db").exists()  # no stray database where the plugin went
    # the working folder was put back after the plugin's call: the next plugin finds the command's own
    task = project.json("show", "w1", "--json")["task"]
    assert task["data"]["cwd"] == str(tmp_path)


def test_ingest_through_a_source_that_moves_the_working_folder_with_a_relative_db(project, tmp_path):
    project.plugin("scanner", SCANNER)
    project.apply(BASE)
    proc = project("ingest", "scanner:x", "--db", "labelyard.db", env={"LABELYARD_DB": None}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ingested 1, duplicates 0, rejected 0")
    assert [row[0] for row in sql(project, "SELECT external_id FROM tasks")] == ["s1"]


# -- 2: a rule function that prints ----------------------------------------------------------
WORDY = """
    from router import hookimpl

    @hookimpl
    def register_functions(register):
        register("word_count", word_count)

    def word_count(text):
        print("word_count:", text)        # a debugging print
        return len(str(text or "").split())
"""
COUNTED = BASE.replace("on_create: [{name: all, do: {annotate: q}}]",
                       "on_create: [{name: all, when: word_count(task.data.text) >= 0, do: {annotate: q}}]")


def test_what_a_rule_function_prints_goes_to_stderr(project, tmp_path):
    project.plugin("wordy", WORDY)
    project.apply(COUNTED + 'sources: [{plugin: jsonl, path: "inbox/*.jsonl"}]\n')
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.jsonl").write_text('{"id": "j1", "data": {"text": "two words"}}\n', encoding="utf-8")
    proc = project("run", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sources"]["jsonl:inbox/*.jsonl"]["ingested"] == 1  # one document
    assert "word_count: two words" in proc.stderr
    (tmp_path / "inbox" / "a.jsonl").write_text('{"id": "j2", "data": {"text": "three more words"}}\n',
                                                encoding="utf-8")
    quiet = project("run", "--quiet")
    assert (quiet.returncode, quiet.stdout) == (0, "")
    assert "word_count: three more words" in quiet.stderr
    (tmp_path / "rows.jsonl").write_text('{"id": "k1", "data": {"text": "x"}}\n', encoding="utf-8")
    ingested = project("ingest", "rows.jsonl", "--json")
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["ingested"] == 1
    assert "word_count: x" in ingested.stderr
    # the function is still checked against its signature, and still holds its task when it fails
    assert "cannot take 2 argument(s)" in project.apply(COUNTED.replace("word_count(task.data.text) >= 0",
                                                                        "'word_count(1, 2) >= 0'"), expect_ok=False).stderr


# -- 3: a plugin's error is told whole ---------------------------------------------------------
TICKETS = """
    from router import hookimpl
    from router.plugin_api import PluginError

    @hookimpl
    def register_sources(register):
        register("tickets", read)

    def read(run):
        raise PluginError("the tickets API refused our token.\\n"
                          "Fix: put a new token in .tickets-token (see https://tickets.example.com/tokens)")
        yield
"""
FIX_LINE = "Fix: put a new token in .tickets-token (see https://tickets.example.com/tokens)"


def test_a_plugin_error_of_several_lines_is_shown_and_kept_whole(project, tmp_path):
    project.plugin("tickets", TICKETS)
    project.apply(BASE + "sources: [{plugin: tickets}]\n")
    proc = project("run")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == ["labelyard run: tickets: sources failed: the tickets API refused our token.",
                                        f"    {FIX_LINE}"]
    failures = json.loads(project("run", "--json").stdout)["failures"]
    assert failures[0]["error"] == f"the tickets API refused our token.\n{FIX_LINE}"
    status = project.ok("status").stdout
    assert "the tickets API refused our token." in status and "Fix: put a new token" in status
    ingest = project("ingest", "tickets:x")
    assert (ingest.returncode, ingest.stderr.splitlines()) == (
        1, ["labelyard: source `tickets` failed: the tickets API refused our token.", f"    {FIX_LINE}"])


def test_a_hook_with_a_wrong_signature_names_the_argument(project, tmp_path):
    project.plugin("badsig", """
        from router import hookimpl

        @hookimpl
        def register_sources(register, config):
            register("x", lambda run: [])
    """)
    proc = project("plugins")
    assert proc.returncode == 1
    assert ("labelyard: plugin badsig: PluginValidationError: Plugin 'badsig' for hook 'register_sources'\n"
            "    hookimpl definition: register_sources(register, config)\n"
            "    Argument(s) {'config'} are declared in the hookimpl but can not be found in the hookspec\n") \
        in proc.stderr
    listed = {p["name"]: p for p in json.loads(project("plugins", "--json").stdout)}
    assert "Argument(s) {'config'}" in listed["badsig"]["error"]


def test_describe_error_keeps_every_line_and_says_where_after_the_first():
    from router.plugins import describe_error

    try:
        raise ValueError("cannot read this one\n  line 3 of the answer is empty\n")
    except ValueError as exc:
        text = describe_error(exc)
    first, second = text.splitlines()
    assert first.startswith("ValueError: cannot read this one (test_plugins_fix_s11.py:")
    assert second == "  line 3 of the answer is empty"


# -- 4: prior votes badly shaped ---------------------------------------------------------------
LEGACY = """
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput

    @hookimpl
    def register_sources(register):
        register("legacy", read)

    def read(run):
        start = run.state or 0
        for n in range(start + 1, 4):
            # a vote given as a single object instead of a list of objects
            yield SourcePart("legacy", [TaskInput(n, f"t{n}", {"text": "hi"})], cursor=n,
                             votes={f"t{n}": {"worker": "ann1", "label": "a"}})
        if start < 4:
            yield SourcePart("legacy", [TaskInput(4, "t4", {"text": "hi"})], cursor=4,
                             votes={"t4": ["ann1", {"worker": "ann2", "label": "a"}]})
"""


def test_badly_shaped_prior_votes_are_left_out_with_their_reason_and_the_cursor_moves(project, tmp_path):
    project.plugin("legacy", LEGACY)
    project.apply(BASE.replace("do: {annotate: q}", "do: {annotate: q, overlap: 2}")
                  + "on_quorum: [{name: done, do: accept}]\nsources: [{plugin: legacy}]\n")
    proc = project("run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "source legacy: ingested 4, duplicates 0, rejected 0, prior votes 1, prior votes left out 4 ("
        "votes of a task must be a list of {worker, label} objects, not an object (first: task t1) 3; "
        "a vote must be a {worker, label} object, not text (first: task t4) 1)")
    assert [a["worker"] for a in project.json("show", "t4", "--json")["annotations"]] == ["ann2"]
    again = project("run", "--json")  # the cursor was stored: nothing is read twice, nothing fails
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sources"]["legacy"]["ingested"] == 0
    assert json.loads(sql(project, "SELECT value FROM cursors WHERE name = 'source:legacy'")[0][0]) == 4


# -- 5: a cursor or sink state that cannot be stored, a part that is no SourcePart --------------
SINCE = """
    import datetime
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput

    @hookimpl
    def register_sources(register):
        register("since", read)
        register("dicty", lambda run: iter([{"origin": "x", "rows": []}]))

    @hookimpl
    def register_sinks(register):
        register("dated", write)

    def read(run):
        for n in range(1, 4):
            updated = datetime.datetime(2026, 1, n, tzinfo=datetime.timezone.utc)
            yield SourcePart("since", [TaskInput(n, f"t{n}", {"text": "hi"})], cursor={"since": updated})

    def write(run, tasks):
        return {"at": datetime.date(2026, 1, 1)}
"""
JSON_VALUE = "must be a JSON value (text, number, true/false, null, or a list or object of them), not"


def test_a_cursor_that_cannot_be_stored_fails_the_part_before_it_goes_in(project, tmp_path):
    project.plugin("since", SINCE)
    project.apply(BASE + "sources: [{plugin: since}]\n")
    for _ in range(2):  # the same failure each time, and never a row twice
        proc = project("run")
        assert proc.returncode == 4
        assert proc.stderr == (f"labelyard run: since: sources failed: part of since: cursor['since'] {JSON_VALUE} "
                               "datetime; nothing of it was ingested\n")
        assert sql(project, "SELECT count(*) FROM tasks") == [(0,)]
    ingest = project("ingest", "since:x")
    assert ingest.returncode == 1 and "cursor['since'] " + JSON_VALUE + " datetime" in ingest.stderr


def test_a_part_that_is_no_source_part_is_named(project, tmp_path):
    project.plugin("since", SINCE)
    project.apply(BASE + "sources: [{plugin: dicty}]\n")
    proc = project("run")
    expected = "yielded dict {'origin': 'x', 'rows': []}; expected SourcePart(origin, rows, cursor)"
    assert (proc.returncode, proc.stderr) == (4, f"labelyard run: dicty: sources failed: {expected}\n")
    ingest = project("ingest", "dicty:x")
    assert (ingest.returncode, ingest.stderr) == (1, f"labelyard: source `dicty` failed: {expected}\n")


def test_a_sink_state_that_cannot_be_stored_is_named(project, tmp_path):
    project.plugin("since", SINCE)
    project.apply(BASE.replace("do: {annotate: q}", "do: accept") + "sinks: [{plugin: dated}]\n")
    (tmp_path / "t.jsonl").write_text('{"id": "a1", "data": {}}\n', encoding="utf-8")
    project.ok("ingest", "t.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert proc.stderr == f"labelyard run: dated: sinks failed: state['at'] {JSON_VALUE} date\n"


# -- 6: a register_commands that raises --------------------------------------------------------
GREETER = """
    import click
    from router import hookimpl

    @hookimpl
    def register_commands(cli):
        import colorama_not_installed      # an optional dependency the command needs
        @cli.command()
        @click.argument("name")
        def greet(name):
            click.echo(f"hello {name}")
"""
GREETER_ERROR = ("register_commands: ModuleNotFoundError: No module named 'colorama_not_installed' "
                 "(greeter.py:7)")


def test_a_register_commands_that_raises_is_told(project, tmp_path):
    project.plugin("greeter", GREETER)
    proc = project("greet", "bob")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"labelyard: plugin greeter: {GREETER_ERROR}\n")
    assert "No such command 'greet'" in proc.stderr
    listed = project("plugins")
    assert listed.returncode == 1
    assert f"ERROR: {GREETER_ERROR}" in listed.stdout
    assert listed.stderr == f"labelyard: plugin greeter: {GREETER_ERROR}\n"
    as_json = project("plugins", "--json")
    assert as_json.returncode == 1
    assert {p["name"]: p["error"] for p in json.loads(as_json.stdout)}["greeter"] == GREETER_ERROR
    assert project("status").returncode == 0  # a built-in command loads no plugin command


# -- 7: one plugin file found twice ------------------------------------------------------------
def test_the_workflows_plugin_module_found_again_in_the_plugins_folder_is_loaded_once(project, tmp_path):
    import os

    folder = tmp_path / "plugins"
    project.plugin("wordy", WORDY.replace('print("word_count:", text)        # a debugging print', "pass"))
    project.env["PYTHONPATH"] = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    project.apply(COUNTED.replace("queues:", "plugins: [wordy]\nqueues:"))
    proc = project("run", "--json")  # wordy: from PYTHONPATH for `plugins:`, and again in LABELYARD_PLUGINS_DIR
    assert (proc.returncode, json.loads(proc.stdout)["failures"]) == (0, []), proc.stderr
    assert project("plugins").returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "wordy.py").write_text((folder / "wordy.py").read_text(encoding="utf-8"), encoding="utf-8")
    proc = project("run", "--plugins-dir", other)  # another file of the same name: refused, both named
    assert proc.returncode == 4
    assert proc.stderr == (f"labelyard run: wordy: load failed: a plugin named `wordy` is already loaded (workflow "
                           f"wordy, {folder / 'wordy.py'}); this one is {other / 'wordy.py'}: rename one of them\n")


# -- 8: `run` where the workflow's plugins: module does not import ------------------------------
def test_run_names_the_plugins_module_that_does_not_load_once_and_exits_1(project, tmp_path):
    import os

    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "wordy.py").write_text(textwrap.dedent(WORDY).replace('print("word_count:", text)', "pass"),
                                   encoding="utf-8")
    with_module = {"PYTHONPATH": os.pathsep.join(filter(None, [str(mods), os.environ.get("PYTHONPATH")]))}
    (tmp_path / "f.workflow.yaml").write_text(COUNTED.replace("queues:", "plugins: [wordy]\nqueues:"),
                                              encoding="utf-8")
    project.ok("apply", "f.workflow.yaml", env=with_module)
    assert project.json("run", "--json", env=with_module)["ok"] is True
    for args in (("run",), ("run", "--json"), ("run", "--quiet")):
        proc = project(*args)  # cron, without the PYTHONPATH the lead had at `apply`
        assert (proc.returncode, proc.stdout) == (1, ""), args
        assert proc.stderr == ("labelyard: the active workflow `f` calls functions of plugin module `wordy`, which "
                               "does not load here: ModuleNotFoundError: No module named 'wordy' (is its folder on "
                               "PYTHONPATH for this command, as it was for `apply`? under cron too)\n"), args
    assert [r[0] for r in sql(project, "SELECT id FROM plugin_runs")] == [1]  # nothing was run


# -- 9: a plugin that replaces a command is named ----------------------------------------------
def test_a_plugin_replacing_a_command_is_named(project, tmp_path):
    commands = """
        import click
        from router import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def {name}():
                click.echo("{said}")
    """
    project.plugin("a_hello", commands.format(name="hello", said="hello from a"))
    project.plugin("b_hijack", commands.format(name="hello", said="hello from b"))
    project.plugin("c_hijack", commands.format(name="run", said="hijacked"))
    proc = project.ok("hello")
    assert proc.stdout == "hello from a\n"
    assert proc.stderr == ("labelyard: plugin b_hijack tried to replace the `hello` command; kept plugin a_hello's\n"
                           "labelyard: plugin c_hijack tried to replace the `run` command; kept the built-in\n")


# -- a run that does not end: the entry it is in is named ----------------------------------------
ENDLESS = """
    import os
    import time
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput

    @hookimpl
    def register_sources(register):
        register("endless", read)

    def read(run):
        yield SourcePart("endless", [TaskInput(1, "e1", {"text": "first"})], cursor=1)
        open(run.path("reading"), "w").close()   # the test's cue: the run is inside this source now
        while not os.path.exists(run.path("release")):  # a source that never stops, until the test says
            time.sleep(0.05)
"""


def test_a_run_still_going_is_named_with_the_entry_it_is_in(project, tmp_path):
    import subprocess
    import time

    project.plugin("endless", ENDLESS)
    project.apply(BASE + "sources: [{plugin: jsonl, path: in.jsonl}, {plugin: endless}]\n")
    (tmp_path / "in.jsonl").write_text('{"id": "j1", "data": {}}\n', encoding="utf-8")
    environ = {**project.env}
    stuck = subprocess.Popen([*project.command, "run"], cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # waits for the cue, not for a time: at most a minute on a slow machine
            if (tmp_path / "reading").exists() or stuck.poll() is not None:
                break
            time.sleep(0.05)
        assert (tmp_path / "reading").exists(), stuck.communicate()
        skipped = project("run")
        assert (skipped.returncode, skipped.stdout) == (
            0, f"another labelyard run is in progress (pid {stuck.pid}, at source `endless` since "
               "2025-03-01T09:00:00+00:00); nothing done\n")
        status = project.json("status", "--json")["last_run"]
        assert (status["finished"], status["in_progress"]) == (
            False, {"step": "sources", "entry": "endless", "since": "2025-03-01T09:00:00+00:00"})
        assert ("last run: 1 at 2025-03-01T09:00:00+00:00: running, or killed before it finished, at source "
                "`endless` since 2025-03-01T09:00:00+00:00") in project.ok("status").stdout
    finally:
        (tmp_path / "release").touch()
        out, err = stuck.communicate(timeout=120)
    assert stuck.returncode == 0, err
    assert "in_progress" not in project.json("status", "--json")["last_run"]
