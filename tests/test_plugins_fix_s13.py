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


# -- 2: rows holding values JSON cannot carry ----------------------------------------------------------
ORDERS = """
    import datetime, decimal
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput, check_row

    @hookimpl
    def register_sources(register):
        register("orders_api", read)
        register("by_hand", by_hand)

    def read(run):
        # rows as a database driver (or json.loads(parse_float=Decimal)) gives them
        records = [{"id": "o1", "data": {"text": "a"}},
                   {"id": "o2", "data": {"text": "b", "price": decimal.Decimal("9.99")}},
                   {"id": "o3", "data": {"text": "c"}}]
        done = run.state or 0
        rows = [check_row(r, n, run.choices) for n, r in enumerate(records[done:], done + 1)]
        yield SourcePart("orders", rows, cursor=len(records))

    def by_hand(run):
        if run.state:
            return
        rows = [TaskInput(1, "h1", {"at": datetime.date(2025, 3, 1)}),
                TaskInput(2, "h2", {"tags": {"x", "y"}}),
                TaskInput(3, "h\\udc80", {"a": 1}),
                TaskInput(4, "h4", {"a": [1, {"b": b"\\xff"}]}),
                TaskInput(5, "h5", {"a": 1})]
        yield SourcePart("hand", rows, cursor=1)
"""


def test_a_row_holding_a_decimal_is_its_own_reject_and_the_other_rows_go_in(project):
    project.plugin("orders", ORDERS)
    project.apply(BASE + "sources: [{plugin: orders_api}]\n")
    proc = project.ok("run")
    assert "source orders_api: ingested 2, duplicates 0, rejected 1" in proc.stdout
    rejects = project.json("rejects", "--json")
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (2, "`data.price` is of type Decimal, which JSON cannot carry (text, number, true/false, null, or a list "
            "or object of them)")]
    assert sorted(r[0] for r in sql(project, "SELECT external_id FROM tasks")) == ["o1", "o3"]
    again = project.ok("run")  # the cursor moved: nothing read again, nothing failed
    assert "source orders_api" not in again.stdout and last_run(project)[1] == 1


def test_rows_built_by_hand_with_dates_sets_bytes_or_an_id_that_is_not_utf8_are_each_a_reject(project):
    project.plugin("orders", ORDERS)
    project.apply(BASE + "sources: [{plugin: by_hand}]\n")
    proc = project.ok("run")
    assert "source by_hand: ingested 1, duplicates 0, rejected 4" in proc.stdout
    reasons = {r["line"]: r["reason"] for r in project.json("rejects", "--json")}
    assert reasons[1].startswith("`data.at` is of type date, which JSON cannot carry")
    assert reasons[2].startswith("`data.tags` is of type set, which JSON cannot carry")
    assert reasons[3] == "`id`: byte 0x80 is not UTF-8"
    assert reasons[4].startswith("`data.a[1].b` is of type bytes, which JSON cannot carry")
    assert sql(project, "SELECT external_id FROM tasks") == [("h5",)]
    assert "by_hand" not in project.ok("run").stdout  # its cursor was stored


def test_the_plugin_apis_check_row_names_the_field_a_value_json_cannot_carry_is_in():
    import decimal

    from router.plugin_api import RowProblem, TaskInput, check_row

    problem = check_row({"id": "o2", "data": {"price": decimal.Decimal("9.99")}}, 7)
    assert isinstance(problem, RowProblem) and problem.line == 7 and problem.external_id == "o2"
    assert problem.reason.startswith("`data.price` is of type Decimal, which JSON cannot carry")
    assert '"price": "Decimal(\'9.99\')"' in problem.raw
    assert isinstance(check_row({"id": "o1", "data": {"price": 9.99}}, 1), TaskInput)
    surrogate = check_row({"id": "o\udc80", "data": {}}, 3)
    assert surrogate.reason == "`id`: byte 0x80 is not UTF-8" and surrogate.external_id == "o\\x80"


DATED_VOTES = """
    import datetime
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput

    @hookimpl
    def register_sources(register):
        register("voter", read)

    def read(run):
        votes = {"t1": [{"worker": "w1", "label": datetime.date(2020, 1, 1)}, {"worker": "w2", "label": "bug"}]}
        yield SourcePart("v", [TaskInput(1, "t1", {"a": 1})], cursor=1, votes=votes)
"""


def test_a_prior_vote_whose_label_json_cannot_carry_is_left_out_and_the_source_goes_on(project):
    project.plugin("voter", DATED_VOTES)
    project.apply(BASE.replace("{annotate: q}", "{annotate: q, overlap: 2}") + "sources: [{plugin: voter}]\n")
    proc = project.ok("run")
    assert "ingested 1, duplicates 0, rejected 0, prior votes 1, prior votes left out 1 (label refused: it must " \
           "be a JSON value (text, number, true/false, null, or a list or object of them), not date 1)" in proc.stdout
    assert last_run(project)[:2] == (last_run(project)[0], 1) and last_run(project)[0] is not None


# -- 3: a notification's task is the task as its event left it -----------------------------------------
NOTES = """
    from router import hookimpl

    @hookimpl
    def register_notifiers(register):
        register("log_note", send)

    def send(run, n):
        with open(run.path("notes.jsonl"), "a", encoding="utf-8") as f:
            f.write(n.body.decode("utf-8") + "\\n")
"""

ESCALATING = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues:
  triage: {roles: [annotator]}
  experts: {roles: [expert]}
on_create:
  - {name: unsure, when: "prediction.confidence < 0.5", do: {escalate: experts, reason: "model unsure"}}
  - {name: default, do: {annotate: triage}}
on_quorum: [{name: a, do: accept}]
on_review: [{name: a, do: accept}]
notify: [{plugin: log_note, events: [escalated, done, held, unheld]}]
"""


def notes(run) -> list[dict]:
    path = Path(run.folder) / "notes.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_an_escalated_notification_tells_the_task_as_escalated_though_an_expert_decided_it_before_the_run(
        project, tmp_path):
    project.plugin("log_note", NOTES)
    project.apply(ESCALATING)
    (tmp_path / "in.jsonl").write_text('{"id":"T-1","data":{"text":"hm"},"prediction":{"label":"bug",'
                                       '"confidence":0.2}}\n', encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    project.ok("workers", "add", "erin", "--role", "expert")
    assignment = project.json("claim", "--as", "erin", "--json")["assignment"]
    project.ok("submit", assignment, "--as", "erin", "--approve", "--label", "spam")
    project.ok("run")
    escalated, done = notes(project)
    assert escalated["event"] == "escalated" and escalated["task"] == {
        "task_id": 1, "id": "T-1", "status": "open", "stage": "escalated", "queue": "experts", "category": None,
        "label": None, "final_by": None}
    assert done["event"] == "done" and done["task"] == {
        "task_id": 1, "id": "T-1", "status": "done", "stage": None, "queue": None, "category": None,
        "label": "spam", "final_by": "expert"}


def test_held_and_unheld_notifications_tell_the_stage_and_queue_each_left_the_task_in(project, tmp_path):
    project.plugin("log_note", NOTES)
    project.apply(ESCALATING)
    (tmp_path / "in.jsonl").write_text('{"id":"T-2","data":{"text":"ok"},"prediction":{"label":"bug",'
                                       '"confidence":0.9}}\n', encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    project.ok("hold", "T-2", "--reason", "look again")
    project.ok("unhold", "T-2")
    project.ok("escalate", "T-2", "--to", "experts")
    project.ok("run")
    held, unheld = notes(project)[:2]
    assert held["event"] == "held" and (held["task"]["status"], held["task"]["stage"], held["task"]["queue"]) == \
        ("held", "annotate", "triage")
    assert unheld["event"] == "unheld" and (unheld["task"]["status"], unheld["task"]["stage"],
                                            unheld["task"]["queue"]) == ("open", "annotate", "triage")
    escalated = notes(project)[2]
    assert escalated["event"] == "escalated" and escalated["task"]["queue"] == "experts"


# -- 4, 5, 6: the webhook's headers, URL and back-off --------------------------------------------------
HOOK = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues: {q: {roles: [annotator]}}
on_create: [{name: ok, do: accept}]
notify: [{plugin: webhook, url: "URL", backoff: 0SETTINGS}]
"""


def hook_text(url: str = "http://127.0.0.1:9/h", settings: str = "") -> str:
    return HOOK.replace("URL", url).replace("SETTINGS", settings)


def store_notify_entry(run, **settings) -> None:
    """Change the active version's notify entry in place, as an older version (without the check) stored it."""
    conn = sqlite3.connect(run.db)
    with conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec["notify"][0].update(settings)
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()


@pytest.mark.parametrize("value, said", [
    ('"€uro"', "header `X-Team` holds '€' (U+20AC), which a header value cannot: HTTP sends header values as "
               "Latin-1 bytes; write it another way (percent-encoded, say)"),
    ("true", 'header `X-Team` is true (true or false), which would be sent as `True`: quote the text to send '
             '(`X-Team: "true"`)'),
])
def test_validate_refuses_a_header_value_http_cannot_send_or_would_send_otherwise(project, tmp_path, value, said):
    (tmp_path / "w.workflow.yaml").write_text(hook_text(settings=f", headers: {{X-Team: {value}}}"),
                                              encoding="utf-8")
    for command in ("validate", "apply"):
        proc = project(command, "w.workflow.yaml")
        assert proc.returncode == 1, command
        assert proc.stderr == f"w.workflow.yaml:5:78: notify entry 1 (`webhook`): setting `headers:` {said}\n"
    (tmp_path / "w.workflow.yaml").write_text(hook_text(settings=', headers: {X-Team: "caf\\xe9", X-Try: 3}'),
                                              encoding="utf-8")
    project.ok("validate", "w.workflow.yaml")  # Latin-1 text and numbers are sent as written


def test_a_stored_header_outside_latin1_fails_its_entry_with_the_reason_not_every_post(project, tmp_path):
    project.apply(hook_text())
    store_notify_entry(project, headers={"X-Team": "€uro"})
    (tmp_path / "in.jsonl").write_text('{"id":"t1","data":{},"prediction":{"label":"bug"}}\n', encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert "setting `headers:` header `X-Team` holds '€' (U+20AC)" in proc.stderr
    assert "ordinal not in range" not in proc.stderr


def test_validate_refuses_a_user_name_and_password_in_the_url_and_never_prints_the_password(project, tmp_path):
    (tmp_path / "w.workflow.yaml").write_text(hook_text("http://bob:hunter2@127.0.0.1:9/h"), encoding="utf-8")
    for command in ("validate", "apply"):
        proc = project(command, "w.workflow.yaml")
        assert proc.returncode == 1 and "hunter2" not in proc.stderr
        assert proc.stderr == (
            "w.workflow.yaml:5:33: notify entry 1 (`webhook`): setting `url:` holds a user name and password "
            "(bob:***@), which the webhook does not send from a URL: remove it, and send credentials in `headers:` "
            "(`Authorization: \"Bearer …\"`, or \"Basic …\", the base64 of user:password)\n")


def test_a_stored_url_with_a_password_fails_its_entry_and_no_line_or_record_shows_the_password(project, tmp_path):
    project.apply(hook_text())
    store_notify_entry(project, url="http://bob:hunter2@127.0.0.1:9/h")
    (tmp_path / "in.jsonl").write_text('{"id":"t1","data":{},"prediction":{"label":"bug"}}\n', encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert "labelyard run: webhook (webhook:http://bob:***@127.0.0.1:9/h): notify failed: setting `url:` holds a " \
           "user name and password (bob:***@)" in proc.stderr
    json_run = project("run", "--json")
    status = project("status")
    for text in (proc.stdout, proc.stderr, json_run.stdout, json_run.stderr, status.stdout, status.stderr):
        assert "hunter2" not in text
    assert not any("hunter2" in str(row) for row in sql(project, "SELECT summary, errors FROM plugin_runs"))
    assert not any("hunter2" in str(row) for row in sql(project, "SELECT target FROM outbox"))


def test_a_plugins_failure_naming_a_url_with_a_password_is_told_without_it(project):
    project.plugin("leaky", """
        from router import hookimpl
        from router.plugin_api import PluginError

        @hookimpl
        def register_sources(register):
            register("leaky", read)

        def read(run):
            raise PluginError("GET https://svc:s3cr3t@api.example.com/tasks: 503")
            yield
    """)
    project.apply(BASE + "sources: [{plugin: leaky}]\n")
    proc = project("run")
    assert proc.returncode == 4
    assert "labelyard run: leaky: sources failed: GET https://svc:***@api.example.com/tasks: 503" in proc.stderr
    assert "s3cr3t" not in str(sql(project, "SELECT errors FROM plugin_runs"))


def _waits(monkeypatch, **settings) -> tuple[list[float], int, str]:
    """The webhook's waits, POSTs and failure for one notification to a receiver that always answers 503."""
    import plugins.webhook as webhook
    from router.plugin_api import Notification, PluginError, PluginRun

    waits: list[float] = []
    posts: list[int] = []
    monkeypatch.setattr(webhook.time, "sleep", waits.append)
    monkeypatch.setattr(webhook, "post", lambda *args: (posts.append(1), ("HTTP 503 Service Unavailable", True))[1])
    run = PluginRun("webhook", "w", config={"url": "http://127.0.0.1:9/h", **settings})
    with pytest.raises(PluginError) as failed:
        webhook.send(run, Notification(1, "done", {}, b"{}"))
    return waits, len(posts), str(failed.value)


def test_the_webhooks_backoff_doubling_stops_at_300_s_and_a_notification_waits_at_most_600_s_a_run(monkeypatch):
    waits, posts, error = _waits(monkeypatch, retries=10, backoff=300)
    assert waits == [300, 300] and posts == 3  # it slept 306,900 s in all, and POSTed 11 times
    assert error == ("POST http://127.0.0.1:9/h: HTTP 503 Service Unavailable (retried for 600 s, the most one run "
                     "waits for a notification)")
    waits, posts, _ = _waits(monkeypatch, retries=10, backoff=1)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 89] and posts == 11
    waits, posts, error = _waits(monkeypatch)  # the defaults are as they were
    assert waits == [1, 2] and posts == 3 and error == "POST http://127.0.0.1:9/h: HTTP 503 Service Unavailable"
    assert _waits(monkeypatch, retries=3, backoff=0)[:2] == ([], 4)


# -- 7: a run held up behind a hung one says so --------------------------------------------------------
STUCK = """
    import sys
    from router import hookimpl

    @hookimpl
    def register_notifiers(register):
        register("stuck", send)

    def send(run, n):   # a receiver call with no timeout: held until the test says go
        print("ready", file=sys.stderr, flush=True)
        sys.stdin.readline()
"""


def test_a_run_finding_one_in_progress_for_over_an_hour_says_so_on_stderr_even_quiet_and_exits_5(project, tmp_path):
    import subprocess

    from conftest import NOW

    project.plugin("stuck", STUCK)
    project.apply(hook_text().replace("notify: [{plugin: webhook, url: \"http://127.0.0.1:9/h\", backoff: 0}]",
                                      "notify: [{plugin: stuck}]"))
    (tmp_path / "in.jsonl").write_text('{"id":"t1","data":{},"prediction":{"label":"bug"}}\n', encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    holder = subprocess.Popen([*project.command, "run", "--quiet"], cwd=tmp_path, env=project.env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stderr.readline() == "ready\n"  # it is in the notifier's call, holding the run lock
        soon = project("run", "--quiet", env={"LABELYARD_NOW": "2025-03-01T09:59:00Z"})
        assert (soon.returncode, soon.stdout, soon.stderr) == (0, "", "")
        late = project("run", "--quiet", env={"LABELYARD_NOW": "2025-03-01T11:30:00Z"})
        assert late.returncode == 5 and late.stdout == ""
        assert late.stderr == (
            f"labelyard run: another labelyard run is in progress (pid {holder.pid}, at notify `stuck` since "
            f"{NOW[:-1]}+00:00); nothing done; it has been running for 2.5h, over the hour a run may take: a plugin "
            "call that never returns (a receiver without a timeout) keeps every later run out. See which with "
            f"LABELYARD_TRACE_PLUGINS=1, stop pid {holder.pid}, and see docs/cron.md\n")
        as_json = project("run", "--json", env={"LABELYARD_NOW": "2025-03-01T11:30:00Z"})
        assert as_json.returncode == 5
        assert json.loads(as_json.stdout)["ok"] is False and json.loads(as_json.stdout)["stuck"] is True
    finally:
        holder.communicate("go\n", timeout=300)  # only a guard against a hang, not a timing assertion
    assert holder.returncode == 0


# -- 8: a stored workflow calling a function no plugin loaded here registers ---------------------------
SHOUTY = """
    from router import hookimpl

    @hookimpl
    def register_functions(register):
        register("shouty", lambda t: str(t).upper())
"""

LOUD = BASE + """\
on_quorum:
  - {name: loud, when: 'shouty(votes.top) == "BUG"', do: accept}
  - {name: other, do: {hold: "not bug"}}
"""


def test_commands_without_the_plugin_of_a_stored_workflows_function_say_where_functions_come_from(project, tmp_path):
    project.plugin("fns", SHOUTY)
    project.apply(LOUD)
    (tmp_path / "in.jsonl").write_text('{"id":"x1","data":{"s":"a"}}\n', encoding="utf-8")
    said = ("labelyard: the active workflow `f` calls `shouty` (on_quorum rule `loud`), which no plugin loaded here "
            "registers: rule functions come from plugin files in LABELYARD_PLUGINS_DIR (`run`, `ingest NAME:ARG` and "
            "`plugins` also take --plugins-dir DIR), from modules in the workflow's `plugins:` (on PYTHONPATH), and "
            "from installed plugin packages; load the one that registers it as `apply` did (under cron too). "
            "`labelyard plugins` lists what is loaded\n")
    without = {"LABELYARD_PLUGINS_DIR": None}
    for command in (["ingest", "in.jsonl"], ["claim", "--as", "ann"], ["tick"], ["run"]):
        proc = project(*command, env=without)
        assert (proc.returncode, proc.stderr) == (1, said), command
        assert "<stored workflow>" not in proc.stderr
    assert project.ok("run", "--plugins-dir", str(project.folder_of_plugins), env=without)
    assert "ingested 1" in project.ok("ingest", "in.jsonl").stdout  # with the plugin it goes in


# -- 9: cursors, sink states, verdicts and origins a plugin hands back -------------------------------
ODD = """
    import os
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput, approve, reject

    CURSORS = {"surrogate": {"file": "caf\\udce9.csv"}, "inf": {"x": float("inf")}, "nan": float("nan"),
               "int_key": {6: True}}

    @hookimpl
    def register_sources(register):
        register("odd", read)
        register("named", named)

    @hookimpl
    def register_sinks(register):
        register("odd_sink", lambda run, tasks: {"x": float("inf")})

    @hookimpl
    def register_reviewers(register):
        register("odd_reviewer", review)

    def read(run):
        yield SourcePart("odd", [TaskInput(1, "o1", {"a": 1})], cursor=CURSORS[os.environ["CURSOR"]])

    def named(run):
        yield SourcePart(os.fsdecode(b"inbox/caf\\xe9.csv"), [TaskInput(1, "n1", {"a": 1}), TaskInput(2, "", {})],
                         cursor=1)

    def review(run, item):
        how = item.data.get("how")
        if how == "dict":
            return reject({"why": "no"})
        return reject(f"cannot read {os.fsdecode(b'scan-caf' + bytes([0xe9]))}")
"""


@pytest.mark.parametrize("cursor, said", [
    ("surrogate", "cursor['file'] is text that is not UTF-8 (byte 0xe9 is not UTF-8)"),
    ("inf", "cursor['x'] is inf, which JSON cannot carry (a finite number, or null)"),
    ("nan", "cursor is nan, which JSON cannot carry (a finite number, or null)"),
    ("int_key", 'cursor key 6 is not text: JSON keys are text, so it would come back as "6"'),
])
def test_a_cursor_that_cannot_come_back_as_it_was_fails_its_part_before_any_of_it_goes_in(project, cursor, said):
    project.plugin("odd", ODD)
    project.apply(BASE + "sources: [{plugin: odd}]\n")
    proc = project("run", env={"CURSOR": cursor})
    assert proc.returncode == 4
    assert f"labelyard run: odd: sources failed: part of odd: {said}; nothing of it was ingested" in proc.stderr
    assert sql(project, "SELECT count(*) FROM tasks") == [(0,)]
    assert sql(project, "SELECT count(*) FROM cursors WHERE name = 'source:odd'") == [(0,)]
    assert last_run(project)[0] is not None


def test_an_origin_that_is_not_utf8_is_kept_with_its_bytes_written_out(project):
    project.plugin("odd", ODD)
    project.apply(BASE + "sources: [{plugin: named}]\n")
    assert "source named: ingested 1, duplicates 0, rejected 1" in project.ok("run").stdout
    assert [r["source"] for r in project.json("rejects", "--json")] == ["inbox/caf\\xe9.csv"]


def test_a_sink_state_json_cannot_carry_fails_the_sink_and_nothing_unreadable_is_stored(project, tmp_path):
    project.plugin("odd", ODD)
    project.apply(BASE.replace("{annotate: q}", "accept") + "sinks: [{plugin: odd_sink}]\n")
    (tmp_path / "in.jsonl").write_text('{"id":"t1","data":{},"prediction":{"label":"bug"}}\n', encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert "labelyard run: odd_sink: sinks failed: state['x'] is inf, which JSON cannot carry" in proc.stderr
    for (value,) in sql(project, "SELECT value FROM cursors"):
        json.loads(value, parse_constant=lambda name: pytest.fail(f"{name} stored"))


def test_a_verdicts_reason_is_text_with_bytes_that_are_not_utf8_written_out_and_never_a_dict(project, tmp_path):
    project.plugin("odd", ODD)
    project.apply(BASE + "on_quorum: [{name: r, do: {review: q}}]\non_review: [{name: a, do: accept}]\n"
                  "reviewers: [{plugin: odd_reviewer}]\n")
    (tmp_path / "in.jsonl").write_text('{"id":"t1","data":{"how":"text"}}\n{"id":"t2","data":{"how":"dict"}}\n',
                                       encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    project.ok("workers", "add", "ann", "--role", "annotator")
    for _ in range(2):
        assignment = project.json("claim", "--as", "ann", "--json")["assignment"]
        project.ok("submit", assignment, "--as", "ann", "--label", "bug")
    proc = project("run")
    assert proc.returncode == 4
    assert "labelyard run: odd_reviewer: reviewers failed: task t2: a verdict's reason must be text, not " \
           "{'why': 'no'}" in proc.stderr
    assert sql(project, "SELECT reason FROM auto_reviews") == [("cannot read scan-caf\\xe9",)]


# -- 10: LABELYARD_LOAD_PLUGINS naming no entry point ------------------------------------------------
def test_a_load_plugins_name_that_is_no_entry_point_is_warned_about_listing_the_entry_points(project, tmp_path):
    (tmp_path / "in.jsonl").write_text("", encoding="utf-8")
    project.apply(BASE + "sources: [{plugin: jsonl, path: in.jsonl}]\n")
    proc = project.ok("plugins", env={"LABELYARD_LOAD_PLUGINS": "jsonl,acme_src,webhok"})
    warning = [line for line in proc.stderr.splitlines() if "LABELYARD_LOAD_PLUGINS" in line]
    assert len(warning) == 1
    assert warning[0].startswith("labelyard: warning: LABELYARD_LOAD_PLUGINS names `acme_src`, `webhok`, but no "
                                 "installed plugin has an entry point of those names, so nothing is loaded for them; "
                                 "it takes entry-point names, as `labelyard plugins` lists them (entry points: ")
    assert "jsonl" in warning[0] and "webhook" in warning[0]
    assert warning[0].endswith("), not the names plugins register")
    assert [p["name"] for p in project.json("plugins", "--json", env={"LABELYARD_LOAD_PLUGINS": "jsonl,acme_src"})] \
        == ["jsonl"]
    quiet = project("plugins", env={"LABELYARD_LOAD_PLUGINS": "jsonl,webhook"})
    assert "LABELYARD_LOAD_PLUGINS" not in quiet.stderr
    run = project("run", "--quiet", env={"LABELYARD_LOAD_PLUGINS": "jsonl,acme_src"})
    assert run.returncode == 0 and run.stderr.count("LABELYARD_LOAD_PLUGINS names `acme_src`") == 1


# -- 11: `labelyard plugins` lists a plugin file whose name is not UTF-8 --------------------------------
def test_plugins_lists_a_plugin_file_whose_name_is_not_utf8_with_its_bytes_written_out(project):
    import subprocess

    folder = os.fsencode(project.folder_of_plugins)
    with open(os.path.join(folder, b"caf\xe9.py"), "w", encoding="utf-8") as handle:
        handle.write("this is not python\n")
    with open(os.path.join(folder, b"cr\xe8me.py"), "w", encoding="utf-8") as handle:
        handle.write(textwrap.dedent(SHOUTY))
    for args in (["plugins"], ["plugins", "--json"]):
        proc = subprocess.run([*project.command, *args], cwd=project.folder, env=project.env, capture_output=True,
                              timeout=120)
        assert proc.returncode == 1
        out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # JSON output is UTF-8: no raw byte
        assert "\\udc" not in out + err
        assert "labelyard: plugin caf\\xe9: NameError: name 'this' is not defined (caf\\xe9.py:1)" in err
    listed = {p["name"]: p for p in json.loads(out)}
    assert listed["caf\\xe9"]["location"].endswith("/plugins/caf\\xe9.py")
    assert listed["cr\\xe8me"]["registered"] == {"functions": ["shouty"]} and listed["cr\\xe8me"]["error"] is None
