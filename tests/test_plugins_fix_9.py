"""Plugin fixes (ninth session): retries after weeks of failures, one notify entry's bookkeeping
failing alone, sinks whose named path moves onto another file, the csv source's unterminated last
row, plugins that exit or print, settings with allowed values, the labelstudio sink's earlier output.

Real subprocesses of ``labelyard`` on real SQLite files; plugins under test are ``.py`` files in
a plugins folder (``LABELYARD_PLUGINS_DIR``), as a user would write them; time through
``LABELYARD_NOW``.
"""

from __future__ import annotations

import json
import os
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


# -- 2: a named sink's path moved onto another file ---------------------------------------------
@pytest.mark.parametrize("plugin, suffix", [("jsonl", "jsonl"), ("csv", "csv")])
def test_a_named_sink_moved_onto_an_existing_file_never_cuts_it(project, tmp_path, plugin, suffix):
    project.apply(BASE + f"sinks: [{{name: final, plugin: {plugin}, path: r/a.{suffix}}}]\n")
    project.ingest("t1")
    project.ok("run")
    other = tmp_path / "r" / f"b.{suffix}"
    kept = "".join(f"line {n} of a file the sink did not write\n" for n in range(200))
    if suffix == "csv":  # a csv file the sink appends to starts with its header (another is refused)
        kept = "id,label,final_by,rule,final_at,category,agreement\n" + kept
    other.write_text(kept, encoding="utf-8")
    project.apply(BASE + f"sinks: [{{name: final, plugin: {plugin}, path: r/b.{suffix}}}]\n")
    project.ingest("t2")
    assert project.json("run", "--json")["sinks"]["final"] == {"delivered": 1}
    text = other.read_text(encoding="utf-8")
    assert text.startswith(kept)  # before: cut back to a's size, most of it lost
    added = text[len(kept):]
    assert "t2" in added and "t1" not in added
    # and the file moved is the file the sink keeps cutting back after a killed write
    torn = '{"id": "t3", "lab' if suffix == "jsonl" else "t3,bu"  # the start of the batch a killed run wrote
    with open(other, "a", encoding="utf-8") as handle:
        handle.write(torn)
    project.ingest("t3")
    project.ok("run")
    again = other.read_text(encoding="utf-8")
    assert again.startswith(text) and again[len(text):].count("t3") == 1 and again.endswith("\n")


def test_a_sink_moved_with_its_file_still_cuts_a_killed_write(project, tmp_path):
    project.apply(BASE + "sinks: [{name: final, plugin: jsonl, path: r/a.jsonl}]\n")
    project.ingest("t1")
    project.ok("run")
    (tmp_path / "r" / "a.jsonl").rename(tmp_path / "r" / "moved.jsonl")
    with open(tmp_path / "r" / "moved.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"id": "t2", "lab')  # the start of the batch a killed run wrote
    project.apply(BASE + "sinks: [{name: final, plugin: jsonl, path: r/moved.jsonl}]\n")
    project.ingest("t2")
    project.ok("run")
    assert [row["id"] for row in lines(tmp_path / "r" / "moved.jsonl")] == ["t1", "t2"]


def test_a_sink_state_from_before_file_identity_still_cuts_a_killed_write(project, tmp_path):
    project.apply(BASE + "sinks: [{plugin: jsonl, path: r/a.jsonl}]\n")
    project.ingest("t1")
    project.ok("run")
    out = tmp_path / "r" / "a.jsonl"
    sql(project, "UPDATE cursors SET value = ? WHERE name = 'sink:jsonl:r/a.jsonl'",
        json.dumps({"size": out.stat().st_size}))  # as an older version stored it
    with open(out, "a", encoding="utf-8") as handle:
        handle.write('{"id": "t2", "lab')  # the start of the batch a killed run wrote
    project.ingest("t2")
    project.ok("run")
    assert [row["id"] for row in lines(out)] == ["t1", "t2"]
    state = json.loads(sql(project, "SELECT value FROM cursors WHERE name = 'sink:jsonl:r/a.jsonl'")[0][0])
    assert (state["size"], state["ino"]) == (out.stat().st_size, out.stat().st_ino)


# -- 3: the csv source's last row without a line break -------------------------------------------
def test_the_csv_source_reads_an_unterminated_last_row_once_the_file_is_finished(project, tmp_path):
    """A run never reads it while it may be half a row (the twelfth session: not even one run later,
    which ingested a writer's half row); ``finished_after:`` says when a file is finished."""
    project.apply(BASE + 'sources: [{plugin: csv, path: "r/*.csv", finished_after: 300}]\n')
    sheet = tmp_path / "r" / "sheet.csv"
    sheet.write_bytes(b"id,text\nc1,one\nc2,two")  # as a spreadsheet exports it
    os.utime(sheet, (1740819600, 1740819600))  # written at the runs' LABELYARD_NOW
    first = project.json("run", "--json")["sources"]["csv:r/*.csv"]
    assert first["ingested"] == 1  # c2 may still be being written
    assert project("show", "c2").returncode == 1
    assert project.json("run", "--json")["sources"]["csv:r/*.csv"]["ingested"] == 0
    later = {"LABELYARD_NOW": "2025-03-01T09:05:00Z"}
    second = project.json("run", "--json", env=later)["sources"]["csv:r/*.csv"]
    assert (second["ingested"], second["duplicates"], second["rejected"]) == (1, 0, 0)
    assert project.json("show", "c2", "--json")["task"]["data"] == {"text": "two"}
    assert project.json("run", "--json", env=later)["sources"] == {"csv:r/*.csv": {
        "ingested": 0, "duplicates": 0, "rejected": 0, "routed": {}}}  # done: not read again


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


# -- 6: settings with allowed values, queues, events and the webhook's URL ----------------------
MISTAKES = BASE + """\
reviewers:
  - {plugin: gold, queues: [senior, senoir]}
  - {plugin: prediction_agreement, on_disagree: rejct}
notify:
  - {plugin: webhook, url: "http://c", events: [done, dnoe]}
  - {plugin: webhook, url: "ftp://x"}
"""


def test_validate_and_apply_refuse_settings_an_entry_cannot_use(project, tmp_path):
    path = tmp_path / "f.workflow.yaml"
    path.write_text(MISTAKES, encoding="utf-8")
    expected = [
        "f.workflow.yaml:9:37: reviewers entry 1 (`gold`): setting `queues:` holds 'senoir', which is not one "
        "of triage, senior (did you mean `senior`?)",
        "f.workflow.yaml:10:49: reviewers entry 2 (`prediction_agreement`): setting `on_disagree:` must be one "
        "of abstain, reject, not 'rejct' (did you mean `reject`?)",
        "f.workflow.yaml:12:55: notify entry 1 (`webhook`): setting `events:` holds 'dnoe', which is not one of "
        "done, escalated, returned, held, invalid, *, created, routed, final, submitted, claimed, released, … "
        "(did you mean `done`?)",
        "f.workflow.yaml:13:28: notify entry 2 (`webhook`): setting `url:` must be an http:// or https:// "
        "address, not 'ftp://x'",
    ]
    for command in ("validate", "apply"):
        proc = project(command, path.name)
        assert proc.returncode == 1
        assert proc.stderr.splitlines() == expected
    assert project.json("status", "--json")["workflow"] is None  # nothing applied


def test_good_values_pass_and_events_may_be_any_kind(project, tmp_path):
    project.apply(BASE + """\
reviewers: [{plugin: gold, queues: senior}, {plugin: prediction_agreement, on_disagree: reject}]
notify: [{plugin: webhook, url: "HTTPS://hooks.example.com/x", events: [done, "*", workflow_applied, rejects_cleared]}]
""")


def test_run_fails_an_older_versions_entry_with_a_value_it_cannot_use_alone(project, tmp_path):
    project.apply(BASE + "reviewers: [{plugin: gold, queues: [senior]}, {plugin: prediction_agreement}]\n"
                         "notify: [{plugin: collector, file: a.jsonl}, {plugin: collector, name: b, file: b.jsonl}]\n")
    store_spec(project, {"reviewers": [{"plugin": "gold", "queues": ["senoir"]},
                                       {"plugin": "prediction_agreement", "on_disagree": "rejct"}],
                         "notify": [{"plugin": "collector", "file": "a.jsonl", "events": ["dnoe"]},
                                    {"plugin": "collector", "name": "b", "file": "b.jsonl"}]})
    project.ingest("t1")
    proc = project("run")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        "labelyard run: gold: reviewers failed: setting `queues:` holds 'senoir', which is not one of triage, "
        "senior (did you mean `senior`?)",
        "labelyard run: prediction_agreement: reviewers failed: setting `on_disagree:` must be one of abstain, "
        "reject, not 'rejct' (did you mean `reject`?)",
        "labelyard run: collector: notify failed: setting `events:` holds 'dnoe', which is not one of done, "
        "escalated, returned, held, invalid, *, created, routed, final, submitted, claimed, released, … "
        "(did you mean `done`?)",
    ]
    assert lines(tmp_path / "b.jsonl") == [{"event": "done", "task": "t1"}]


def test_a_plugin_declares_allowed_values_and_checks(project, tmp_path):
    (tmp_path / "plugins" / "tally.py").write_text(textwrap.dedent("""
        from router import hookimpl
        from router.plugin_api import Setting

        def even(value):
            return None if value % 2 == 0 else f"must be even, not {value}"

        def broken(value):
            raise ValueError("no idea")

        @hookimpl
        def register_sinks(register):
            register("tally", lambda run, tasks: {}, settings={
                "mode": Setting(str, choices=["sum", "count"]), "tags": Setting(list, choices=("a", "b")),
                "every": Setting(int, min=0, check=even), "odd": Setting(str, check=broken)})
    """), encoding="utf-8")
    (tmp_path / "plugins" / "badly.py").write_text(textwrap.dedent("""
        from router import hookimpl
        from router.plugin_api import Setting

        @hookimpl
        def register_sinks(register):
            register("badly", lambda run, tasks: {}, settings={"mode": Setting(str, choices=[1, 2])})
    """), encoding="utf-8")
    path = tmp_path / "f.workflow.yaml"
    path.write_text(BASE + "sinks: [{plugin: tally, mode: summ, tags: [a, c], every: 3, odd: x}]\n",
                    encoding="utf-8")
    proc = project("validate", path.name)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "f.workflow.yaml:8:31: sinks entry 1 (`tally`): setting `mode:` must be one of sum, count, not 'summ' "
        "(did you mean `sum`?)",
        "f.workflow.yaml:8:47: sinks entry 1 (`tally`): setting `tags:` holds 'c', which is not one of a, b",
        "f.workflow.yaml:8:58: sinks entry 1 (`tally`): setting `every:` must be even, not 3",
        "f.workflow.yaml:8:66: sinks entry 1 (`tally`): setting `odd:` could not be checked: "
        "ValueError: no idea (tally.py:9)",
    ]
    listed = project("plugins")
    assert "ERROR: register_sinks: ValueError: cannot register sink `badly`: setting `mode`: choices must be of the " \
           "setting's kind (text), not (1, 2)" in listed.stdout


# -- 7: the labelstudio sink's earlier output that is not its own --------------------------------
@pytest.mark.parametrize("earlier, found", [('{"a": 1}', "an object"), ("[1, 2]", "a list holding a number"),
                                            ('[{"id": 1}, "x"]', "a list holding a string")])
def test_the_labelstudio_sink_names_an_earlier_output_that_is_not_a_list_of_tasks(project, tmp_path, earlier,
                                                                                    found):
    out = tmp_path / "r" / "ls.json"
    out.write_text(earlier, encoding="utf-8")
    project.apply(BASE + "sinks: [{plugin: labelstudio, path: r/ls.json}]\n")
    project.ingest("t1")
    proc = project("run")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        f"labelyard run: labelstudio (labelstudio:r/ls.json): sinks failed: {out}: the earlier output is not a "
        f"JSON list of tasks (found {found}); the sink rewrites this file: point `path:` at a file of its own, "
        "or move this one away"]
    assert out.read_text(encoding="utf-8") == earlier


def test_the_labelstudio_sink_names_an_integer_too_long_to_read_in_its_earlier_output(project, tmp_path):
    out = tmp_path / "r" / "ls.json"
    earlier = '[{"id": 1,\n  "data": {"n": 1' + "0" * 5000 + "}}]"
    out.write_text(earlier, encoding="utf-8")
    project.apply(BASE + "sinks: [{plugin: labelstudio, path: r/ls.json}]\n")
    project.ingest("t1")
    proc = project("run")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        f"labelyard run: labelstudio (labelstudio:r/ls.json): sinks failed: {out}: cannot read the earlier "
        "output: a number with more than 4300 digits at line 2, column 17 is too long to read (give it as text); "
        "the sink rewrites this file: point `path:` at a file of its own, or move this one away"]
    assert out.read_text(encoding="utf-8") == earlier

def test_the_event_kinds_notify_accepts_are_the_kinds_labelyard_records():
    """router.events.KINDS is what `events:` may name: every kind the code records, and no other."""
    from router import events, worker_rules

    root = Path(__file__).resolve().parent.parent / "router"
    recorded: set[str] = set()
    for source in root.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        for call in re.finditer(r"add_event\(\s*([^,]+),", text):  # the kind: a literal, or a choice of them
            recorded.update(re.findall(r'"(\w+)"', call.group(1)))
        for mapping in re.finditer(r"kind = (\{[^}]*\})\.get\(decision\.action, \"(\w+)\"\)", text):
            recorded.update(re.findall(r': "(\w+)"', mapping.group(1)) + [mapping.group(2)])
    recorded.update(worker_rules.EVENT_KINDS.values())
    store = (root / "store.py").read_text(encoding="utf-8")
    recorded.update(re.findall(r"INSERT INTO events \([^)]*\) VALUES \(\?, '(\w+)'", store))
    assert {"final", "routed", "created", "worker_flagged"} <= recorded  # the scan finds each way of recording
    assert recorded == set(events.KINDS)


# -- 8: the labelstudio sink writes its file once per run, from a journal ------------------------
LS_KILLER = """
    import os, signal
    from router import hookimpl
    from plugins import _labelstudio_sink as labelstudio

    @hookimpl
    def register_sinks(register):
        register("ls_killer", write, finish=finish)

    def when(run, moment):
        return os.path.exists(run.path(moment)) and not os.remove(run.path(moment))

    def nth_batch(run, moment):
        if not os.path.exists(run.path(moment)):
            return False
        left = int(open(run.path(moment)).read()) - 1
        open(run.path(moment), "w").write(str(left))
        return left == 0 and not os.remove(run.path(moment))

    def write(run, tasks):
        state = labelstudio.write(run, tasks)
        if tasks and nth_batch(run, "kill-after-write"):  # appended and synced, its delivery not recorded
            with open(labelstudio.journal_path(run.path(run.config["path"])), "ab") as handle:
                handle.write(b'{"half": "a line')
            os.kill(os.getpid(), signal.SIGKILL)
        return state

    def finish(run):
        if when(run, "kill-before-finish"):
            os.kill(os.getpid(), signal.SIGKILL)
        journal = labelstudio.journal_path(run.path(run.config["path"]))
        keep = when(run, "kill-before-record") and os.path.exists(journal)
        if keep:
            os.link(journal, journal + ".kept")
        state = labelstudio.finish(run)
        if keep:  # the output renamed into place, the journal not yet removed, nothing recorded
            os.link(journal + ".kept", journal)
            os.kill(os.getpid(), signal.SIGKILL)
        return state
"""


@pytest.fixture
def ls_project(project, tmp_path):
    (tmp_path / "plugins" / "ls_killer.py").write_text(textwrap.dedent(LS_KILLER), encoding="utf-8")
    project.apply(BASE + "sinks: [{plugin: ls_killer, path: r/ls.json, batch: 2}]\n")
    return project


def output_ids(tmp_path: Path) -> list[str]:
    return [task["meta"]["labelyard"]["id"] for task in json.loads((tmp_path / "r" / "ls.json").read_text())]


def test_batches_go_to_the_journal_and_the_output_is_written_once_at_the_end(ls_project, tmp_path):
    ls_project.ingest(*[f"t{n}" for n in range(7)])
    (tmp_path / "kill-before-finish").write_text("")
    assert ls_project("run").returncode == -9
    assert not (tmp_path / "r" / "ls.json").exists()  # four batches delivered, the output not rewritten once
    state = json.loads(sql(ls_project, "SELECT value FROM cursors WHERE name = 'sink:ls_killer:r/ls.json'")[0][0])
    assert state["pending"] > 0
    report = ls_project.json("run", "--json")  # nothing left to deliver: finish writes what the journal holds
    assert report["sinks"]["ls_killer:r/ls.json"] == {"delivered": 0}
    assert output_ids(tmp_path) == [f"t{n}" for n in range(7)]
    assert sorted(os.listdir(tmp_path / "r")) == ["in.jsonl", "ls.json"]  # the journal is gone


KILL_AT_DELIVERY = """
import os, signal, sys
import router.store as store
record, calls, kill_at = store.Store.record_deliveries, [], int(sys.argv[1])
def killing(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return record(self, *args, **kwargs)
store.Store.record_deliveries = killing
from router.cli import main
sys.argv = ["labelyard", "run"]
main()
"""


def test_the_builtin_sink_does_not_rewrite_its_file_for_each_batch(project, tmp_path):
    import subprocess
    import sys

    project.apply(BASE + "sinks: [{plugin: labelstudio, path: r/ls.json, batch: 2}]\n")
    project.ingest(*[f"e{n}" for n in range(7)])
    killed = subprocess.run([sys.executable, "-c", KILL_AT_DELIVERY, "3"], env=project.env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9  # killed recording the third batch: two batches recorded
    assert not (tmp_path / "r" / "ls.json").exists()  # before: rewritten with each batch, e0…e5 in it
    project.ok("run")
    assert output_ids(tmp_path) == [f"e{n}" for n in range(7)]


def test_a_batch_killed_after_its_append_is_delivered_once(ls_project, tmp_path):
    ls_project.ingest("a1", "a2", "a3", "a4", "a5")
    (tmp_path / "kill-after-write").write_text("2")
    assert ls_project("run").returncode == -9  # a1, a2 recorded; a3, a4 and half a line after them, not
    assert ls_project.json("run", "--json")["sinks"]["ls_killer:r/ls.json"] == {"delivered": 3}
    assert output_ids(tmp_path) == ["a1", "a2", "a3", "a4", "a5"]


def test_a_run_killed_between_writing_the_output_and_its_record_writes_each_task_once(ls_project, tmp_path):
    ls_project.ingest("b1", "b2", "b3")
    ls_project.ok("run")
    ls_project.ingest("b4")
    (tmp_path / "kill-before-record").write_text("")
    assert ls_project("run").returncode == -9
    assert output_ids(tmp_path) == ["b1", "b2", "b3", "b4"]
    ls_project.ingest("b5")
    ls_project.ok("run")  # the journal of b4, still recorded as pending, is written out again, by id
    assert output_ids(tmp_path) == ["b1", "b2", "b3", "b4", "b5"]


def test_a_task_finalised_again_replaces_its_entry(project, tmp_path):
    project.apply(BASE + "sinks: [{plugin: labelstudio, path: r/ls.json, batch: 2}]\n")
    project.ingest("c1", "c2", "c3")
    project.ok("run")
    sql(project, "DELETE FROM sink_deliveries WHERE task_id = (SELECT id FROM tasks WHERE external_id = 'c2')")
    project.ok("run")  # c2 offered again: replaced, not added
    assert output_ids(tmp_path) == ["c1", "c2", "c3"]


def test_finish_is_called_once_per_run_after_the_batches(project, tmp_path):
    (tmp_path / "plugins" / "gather.py").write_text(textwrap.dedent("""
        import json
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            register("gather", write, finish=finish)

        def write(run, tasks):
            return {"seen": (run.state or {}).get("seen", 0) + len(tasks), "finished": False}

        def finish(run):
            with open(run.path("calls.jsonl"), "a") as handle:
                handle.write(json.dumps(run.state) + "\\n")
            return {**run.state, "finished": True}
    """), encoding="utf-8")
    project.apply(BASE + "sinks: [{plugin: gather, batch: 2}]\n")
    project.ingest("d1", "d2", "d3", "d4", "d5")
    project.ok("run")
    project.ok("run")
    assert lines(tmp_path / "calls.jsonl") == [{"seen": 5, "finished": False}, {"seen": 5, "finished": True}]
    (tmp_path / "plugins" / "wrong.py").write_text(textwrap.dedent("""
        from router import hookimpl

        @hookimpl
        def register_notifiers(register):
            register("wrong", lambda run, note: None, finish=lambda run: None)
    """), encoding="utf-8")
    assert "`finish` is a callable, for sinks only" in project("plugins").stdout
