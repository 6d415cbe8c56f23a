"""Plugin fixes (ninth session): retries after weeks of failures, one notify entry's bookkeeping
failing alone, sinks whose named path moves onto another file, the csv source's unterminated last
row, plugins that exit or print, settings with allowed values, the labelstudio sink's earlier output.

Real subprocesses of ``labelyard`` on real SQLite files; plugins under test are ``.py`` files in
a plugins folder (``LABELYARD_PLUGINS_DIR``), as a user would write them; time through
``LABELYARD_NOW``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
from pathlib import Path

import pytest

from router.clock import parse_instant

BASE = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
on_quorum: [{name: check, do: {review: senior}}]
"""

PLUGINS = {
    "collector": """
        import json
        from router import hookimpl

        @hookimpl
        def register_notifiers(register):
            register("collector", send)

        def send(run, note):
            with open(run.path(run.config["file"]), "a") as handle:
                handle.write(json.dumps({"event": note.event, "task": (note.payload["task"] or {}).get("id")}) + "\\n")
    """,
    "down": """
        from router import hookimpl
        from router.plugin_api import PluginError

        @hookimpl
        def register_notifiers(register):
            register("down", send)

        def send(run, note):
            raise PluginError("receiver is down")
    """,
    "quitter": """
        import sys
        from router import hookimpl
        from router.plugin_api import SourcePart, TaskInput

        @hookimpl
        def register_sources(register):
            register("quitter", read)

        @hookimpl
        def register_sinks(register):
            register("quitter", write)

        @hookimpl
        def register_reviewers(register):
            register("quitter", review)

        @hookimpl
        def register_notifiers(register):
            register("quitter", send)

        def read(run):
            yield SourcePart("quitter", [TaskInput(1, "q1", {"text": "before the exit"}, label="bug",
                                                   confidence=0.95)], cursor=1)
            sys.exit(3)

        def write(run, tasks):
            if tasks:
                sys.exit()
            return {}

        def review(run, item):
            raise SystemExit("reviewer gave up")

        def send(run, note):
            sys.exit(0)
    """,
}


def confident(ident: str) -> str:
    return json.dumps({"id": ident, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@pytest.fixture
def project(run, tmp_path):
    """``init`` done, the test plugins in LABELYARD_PLUGINS_DIR, ``apply(text)`` to apply a workflow version."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, body in PLUGINS.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    run.env["LABELYARD_PLUGINS_DIR"] = str(folder)
    (tmp_path / "r").mkdir()
    run.ok("init")

    def apply(text: str, expect_ok: bool = True):
        path = tmp_path / "f.workflow.yaml"
        path.write_text(text, encoding="utf-8")
        return run.ok("apply", path.name) if expect_ok else run("apply", path.name)

    def ingest(*idents: str) -> None:
        path = tmp_path / "r" / "in.jsonl"
        path.write_text("".join(confident(i) for i in idents), encoding="utf-8")
        run.ok("ingest", path)

    run.apply = apply
    run.ingest = ingest
    return run


def sql(run, query: str, *args) -> list[tuple]:
    conn = sqlite3.connect(run.db)
    try:
        with conn:
            return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def store_spec(run, changes: dict) -> None:
    """Change the stored active workflow as an older Labelyard (without today's checks) would have applied it."""
    spec = json.loads(sql(run, "SELECT spec FROM workflows WHERE active = 1")[0][0])
    spec.update(changes)
    sql(run, "UPDATE workflows SET spec = ? WHERE active = 1", json.dumps(spec))


# -- 1: a notifier failing for weeks, and one entry's bookkeeping failing alone ------------------
def test_a_notification_failing_for_weeks_backs_off_hourly_and_the_next_entry_still_runs(project, tmp_path):
    project.apply(BASE + "notify: [{plugin: down, name: flaky}, {plugin: collector, file: notes.jsonl}]\n")
    project.ingest("t1")
    assert project("run").returncode == 4
    assert lines(tmp_path / "notes.jsonl") == [{"event": "done", "task": "t1"}]
    # six weeks of five-minute runs later: the notification has failed 1024 times
    sql(project, "UPDATE outbox SET attempts = 1024, next_at = 0 WHERE target = 'flaky'")
    project.ingest("t2")
    proc = project("run", "--json")
    assert proc.returncode == 4
    report = json.loads(proc.stdout)
    assert [(f["entry"], f["error"]) for f in report["failures"]] == [
        ("flaky", "receiver is down; 2 notification(s) kept in the outbox for the next run")]
    assert report["notify"]["collector"] == {"queued": 1, "delivered": 1, "pending": 0}
    assert lines(tmp_path / "notes.jsonl") == [{"event": "done", "task": "t1"}, {"event": "done", "task": "t2"}]
    [(attempts, next_at)] = sql(project, "SELECT attempts, next_at FROM outbox WHERE target = 'flaky' "
                                         "ORDER BY id LIMIT 1")
    assert attempts == 1025
    assert next_at == parse_instant(project.env["LABELYARD_NOW"]) + 3600  # at most hourly


def test_a_notify_entry_whose_outbox_row_is_damaged_fails_alone(project, tmp_path):
    project.apply(BASE + "notify: [{plugin: collector, name: first, file: a.jsonl},"
                         " {plugin: collector, name: second, file: b.jsonl}]\n")
    sql(project, "INSERT INTO outbox (target, event_id, event, body, next_at, created_at) "
                 "VALUES ('first', 0, 'done', '{not json', 0, 0)")
    project.ingest("t1")
    proc = project("run", "--json")
    assert proc.returncode == 4
    report = json.loads(proc.stdout)
    assert [(f["step"], f["entry"]) for f in report["failures"]] == [("notify", "first")]
    assert "JSONDecodeError" in report["failures"][0]["error"]
    assert report["notify"]["first"] == {"queued": 1, "delivered": 0, "pending": 2}
    assert lines(tmp_path / "b.jsonl") == [{"event": "done", "task": "t1"}]


def test_retry_delays_double_to_an_hour_and_stay_there():
    from router.runner import retry_delay

    assert [retry_delay(n) for n in (1, 2, 3, 6, 7, 8)] == [60, 120, 240, 1920, 3600, 3600]
    assert retry_delay(1025) == retry_delay(10**9) == 3600


# -- 4: a plugin that exits ----------------------------------------------------------------------
def test_a_plugin_calling_sys_exit_fails_alone_and_the_run_goes_on(project, tmp_path):
    project.apply(BASE + "sources: [{plugin: quitter}, {plugin: jsonl, path: r/in.jsonl}]\n"
                         "reviewers: [{plugin: quitter}]\n"
                         "sinks: [{plugin: quitter}, {plugin: jsonl, path: r/out.jsonl}]\n"
                         "notify: [{plugin: quitter}, {plugin: collector, file: notes.jsonl}]\n")
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1") + json.dumps({"id": "u1", "data": {}}) + "\n",
                                             encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    project.ok("workers", "add", "ann", "--role", "annotator")
    slot = project.json("claim", "--as", "ann", "--json")
    project.ok("submit", slot["assignment"], "--as", "ann", "--label", "bug")  # waits in review for the reviewer
    proc = project("run", "--json")
    assert proc.returncode == 4
    report = json.loads(proc.stdout)
    failures = {f["step"]: f["error"] for f in report["failures"]}
    assert set(failures) == {"sources", "reviewers", "sinks", "notify"}
    assert re.fullmatch(r"SystemExit: exit code 3 \(quitter\.py:\d+\)", failures["sources"])
    assert re.fullmatch(r"task u1: SystemExit: reviewer gave up \(quitter\.py:\d+\) \(asked again next run\)",
                        failures["reviewers"])
    assert re.fullmatch(r"SystemExit: the plugin called sys.exit\(\) \(quitter\.py:\d+\)", failures["sinks"])
    assert failures["notify"].startswith("SystemExit: exit code 0 (quitter.py:")
    assert report["sources"]["quitter"]["ingested"] == 1  # its part before the exit went in
    assert {row["id"] for row in lines(tmp_path / "r" / "out.jsonl")} == {"t1", "q1"}
    assert {row["task"] for row in lines(tmp_path / "notes.jsonl")} == {"t1", "q1"}
    assert project.json("status", "--json")["last_run"]["ok"] is False


def test_a_plugin_exiting_while_it_loads_is_left_out_and_the_run_goes_on(project, tmp_path):
    (tmp_path / "plugins" / "early.py").write_text("import sys\nsys.exit(2)\n", encoding="utf-8")
    (tmp_path / "plugins" / "late.py").write_text(textwrap.dedent("""
        import sys
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            sys.exit(5)
    """), encoding="utf-8")
    project.apply(BASE + "sinks: [{plugin: jsonl, path: r/out.jsonl}]\n")
    project.ingest("t1")
    proc = project("run")
    assert proc.returncode == 4
    assert [row["id"] for row in lines(tmp_path / "r" / "out.jsonl")] == ["t1"]
    assert "labelyard run: early: load failed: SystemExit: exit code 2 (early.py:2)" in proc.stderr
    assert re.search(r"labelyard run: late: load failed: register_sinks: SystemExit: exit code 5 \(late\.py:\d+\)",
                     proc.stderr)
    listed = project("plugins")
    assert listed.returncode == 1 and "ERROR: SystemExit: exit code 2 (early.py:2)" in listed.stdout


def test_keyboard_interrupt_in_a_plugin_still_stops_the_run(project, tmp_path):
    (tmp_path / "plugins" / "ctrlc.py").write_text(textwrap.dedent("""
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            register("ctrlc", write)

        def write(run, tasks):
            if tasks:
                raise KeyboardInterrupt
            return {}
    """), encoding="utf-8")
    project.apply(BASE + "sinks: [{plugin: ctrlc}, {plugin: jsonl, path: r/out.jsonl}]\n")
    project.ingest("t1")
    proc = project("run")
    assert proc.returncode == 130 and "labelyard: interrupted" in proc.stderr
    assert not (tmp_path / "r" / "out.jsonl").exists()  # the run stopped there


def test_a_rule_function_calling_sys_exit_holds_the_task(project, tmp_path):
    (tmp_path / "plugins" / "exiting_fn.py").write_text(textwrap.dedent("""
        import sys
        from router import hookimpl

        @hookimpl
        def register_functions(register):
            register("leave", lambda value: sys.exit(1))
    """), encoding="utf-8")
    project.apply(BASE.replace("  - {name: confident,", "  - {name: odd, when: leave(task.data), do: accept}\n"
                                                       "  - {name: confident,"))
    project.ingest("t1")
    task = project.json("show", "t1", "--json")["task"]
    assert task["status"] == "held" and "function `leave` failed: SystemExit" in task["reason"]


# -- 5: what plugins print goes to standard error ------------------------------------------------
TALKER = """
        import subprocess
        import sys
        from router import hookimpl
        from router.plugin_api import SourcePart, TaskInput

        print("talker imported")

        @hookimpl
        def register_sources(register):
            print("talker registering")
            register("talker", read)

        @hookimpl
        def register_sinks(register):
            register("print_lines", write)

        def read(run):
            print("talker reading")
            yield SourcePart("talker", [TaskInput(1, "k1", {"text": "x"}, label="bug", confidence=0.95)], cursor=1)

        def write(run, tasks):
            for task in tasks:
                print("task", task.id)
            sys.stdout.flush()
            subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
            return {}
    """


def test_what_plugins_print_goes_to_stderr_and_run_json_stays_one_document(project, tmp_path):
    (tmp_path / "plugins" / "talker.py").write_text(textwrap.dedent(TALKER), encoding="utf-8")
    project.apply(BASE + "sources: [{plugin: talker}]\nsinks: [{plugin: print_lines}]\n")
    proc = project("run", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # one document, nothing else
    assert report["sinks"]["print_lines"] == {"delivered": 1}
    for said in ("talker imported", "talker registering", "talker reading", "task k1", "from a child process"):
        assert said in proc.stderr
    project.ingest("t1")
    quiet = project("run", "--quiet")
    assert (quiet.returncode, quiet.stdout) == (0, "")
    assert "task t1" in quiet.stderr and "from a child process" in quiet.stderr
    project.ingest("t2")
    plain = project("run")
    assert plain.stdout.splitlines()[-1].startswith("run ")
    for said in ("talker imported", "talker reading", "from a child process"):
        assert said not in plain.stdout and said in plain.stderr
