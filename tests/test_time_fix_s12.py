"""Time where the twelfth session's tester (area "time") found it wrong, on real SQLite files
(``LABELYARD_NOW`` for the time, no sleeps), the TUI driven with Textual's pilot.

1. The "24 h" figures (the dashboard's "24 h: N submissions, N final" and the workers' 24h column)
   counted whole clock hours from 23 hours before the current one: right after the hour turned,
   a submission 23.5 hours old was left out. They start at the hour that holds ``now - 24h``.
2. A rule test's bad duration (``assignment.age``, ``task.age``, ``task.stage_age``,
   ``queue.oldest_age``) or bad ``now`` was an ERROR at the line of the first key of ``facts``; it is
   at the bad value's ``line:col`` now. Durations are read as the rule language reads them (one
   definition, ``rules.durations``): ``nanh``, ``infd`` and ``1_0h`` were taken by ``float()``.
3. A queue's ``sla`` is a duration as rules write one (``90``, ``.5h``, ``1e3s``), refused in words;
   before, it took only ``4h``-like text and its errors showed the schema's regular expression.
   A version stored before (its SLA checked by a pattern that took any Unicode digit) keeps loading.
4. With the clock behind a task's stored time, the task list's age column said ``-18000s`` while the
   dashboard said ``0s``. Every age a screen shows is clamped in one place, ``fmt.age``: ``0s``.
"""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Static

from router.clock import parse_instant
from router.engine import Engine
from router.ingest import read_file
from router.queries import Queries
from router.store import Store
from test_tui import anyio_backend, settle  # noqa: F401
from tui.app import LabelyardApp

LEAD = "lena"
SUBMITTED = "2026-01-01T10:30:00Z"

WORKFLOW = """\
workflow: t
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
on_create:
  - do: {annotate: triage}
"""


def project(tmp_path, monkeypatch, tasks: int = 1) -> str:
    """Tasks `T0`… in `triage`, made at ``SUBMITTED``; the lead LEAD and the annotator al."""
    monkeypatch.setenv("LABELYARD_NOW", SUBMITTED)
    path = str(tmp_path / "t.db")
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(WORKFLOW, "t.workflow.yaml", actor=LEAD)
    engine.add_worker(LEAD, ["lead"], [], None, actor=LEAD)
    engine.add_worker("al", ["annotator"], [], None, actor=LEAD)
    inbox = tmp_path / "in.jsonl"
    inbox.write_text("".join(json.dumps({"id": f"T{i}", "data": {}}) + "\n" for i in range(tasks)))
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    engine.close()
    return path


def submit_one(path: str) -> None:
    engine = Engine.open(path)
    try:
        engine.submit(engine.claim("al", "triage")["assignment"], "al", label="a")
    finally:
        engine.close()


def last_24h(path: str, now: str) -> tuple[int, int, int]:
    """(submissions, final labels, al's submissions) in the last 24 h, as the dashboard reads them."""
    q = Queries.open(path)
    try:
        d = q.dashboard(now=parse_instant(now))
        al = [w for w in d["workers"] if w["id"] == "al"][0]["submitted_recent"]
        workers_screen = [w for w in q.worker_rows(parse_instant(now)) if w["id"] == "al"][0]["submitted_recent"]
        assert al == workers_screen
        return sum(d["throughput"]["submitted"]), sum(d["throughput"]["final"]), al
    finally:
        q.close()


# -- 1. the last 24 hours -------------------------------------------------------------------------

@pytest.mark.parametrize("now", ["2026-01-01T10:30:00Z", "2026-01-02T09:59:59Z", "2026-01-02T10:00:00Z",
                                 "2026-01-02T10:29:59Z"])
def test_a_submission_made_in_the_last_24_hours_is_counted_whatever_the_minute(tmp_path, monkeypatch, now):
    path = project(tmp_path, monkeypatch)
    submit_one(path)
    assert last_24h(path, now) == (1, 1, 1)


def test_a_submission_older_than_the_hour_that_holds_now_minus_24h_is_not_counted(tmp_path, monkeypatch):
    path = project(tmp_path, monkeypatch)
    submit_one(path)
    assert last_24h(path, "2026-01-02T11:00:00Z") == (0, 0, 0)  # 24.5 h ago


@pytest.mark.anyio
async def test_the_dashboard_and_the_workers_screen_count_a_submission_23_and_a_half_hours_old(
        tmp_path, monkeypatch):
    path = project(tmp_path, monkeypatch)
    submit_one(path)
    monkeypatch.setenv("LABELYARD_NOW", "2026-01-02T10:00:00Z")
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(app, pilot)
        assert str(app.screen.query_one("#chart-label", Static).render()).strip() == \
            "24 h: 1 submissions, 1 final"
        assert str(app.screen.query_one("#workers", DataTable).get_row("al")[2]) == "1"
        await pilot.press("w")
        await settle(app, pilot)
        table = app.screen.query_one(DataTable)
        column = [str(c.label) for c in table.columns.values()].index("24h")
        assert str(table.get_row("al")[column]) == "1"


# -- 2. rule tests: a bad fact's value, located; durations as rules read them -------------------------

TIMER_WORKFLOW = WORKFLOW + """\
on_timer:
  - {name: stale, when: assignment.age > 1h, do: release}
  - {name: late, when: task.stage_age > 4h or queue.oldest_age > 4h or task.age > 4h, do: {hold: late}}
"""


def rule_test(run, tmp_path, cases: str) -> str:
    (tmp_path / "t.workflow.yaml").write_text(TIMER_WORKFLOW, encoding="utf-8")
    (tmp_path / "t.test.yaml").write_text("cases:\n" + cases, encoding="utf-8")
    return run("test", "t.test.yaml").stdout


def test_a_bad_duration_or_now_in_facts_is_reported_at_its_value(run, tmp_path):
    out = rule_test(run, tmp_path, """\
  - name: bad age
    event: on_timer
    facts:
      task:
        queue: triage
        stage_age: 1h
      assignment:
        worker: al
        age: 1w
    expect: {rule: stale}
  - name: bad now
    event: on_timer
    facts:
      task:
        queue: triage
      now: 2026-02-30T00:00:00Z
    expect: {rule: null}
  - name: flow style
    event: on_timer
    facts: {task: {queue: triage}, queue: {oldest_age: 4 h}}
    expect: {rule: null}
""")
    assert "ERROR t.test.yaml:2: bad age\n      t.test.yaml:10:14: `assignment.age` is '1w': a number of seconds " \
           "or a duration like 30s, 15m, 2h, 7d\n" in out
    assert "ERROR t.test.yaml:12: bad now\n      t.test.yaml:17:12: `now` is '2026-02-30T00:00:00Z': " in out
    assert "ERROR t.test.yaml:19: flow style\n      t.test.yaml:21:56: `queue.oldest_age` is '4 h': " in out


KEYS = ["assignment.age", "task.age", "task.stage_age", "queue.oldest_age"]
REFUSED = ["nanh", "infd", "1_0h", "-5m", "' 2h'", "1e400h", "2H", "1.h", "1w"]


def test_a_duration_the_rule_language_refuses_is_an_error_not_a_pass(run, tmp_path):
    combos = [(key, age) for key in KEYS for age in REFUSED]
    cases = ""
    for n, (key, age) in enumerate(combos):
        root, field = key.split(".")
        cases += f"""\
  - name: odd {n}
    event: on_timer
    facts:
      {root}:
        {field}: {age}
    expect: {{rule: null}}
"""
    out = rule_test(run, tmp_path, cases)
    for n, (key, age) in enumerate(combos):
        line, field = 2 + 6 * n, key.split(".")[1]
        assert f"ERROR t.test.yaml:{line}: odd {n}\n      t.test.yaml:{line + 4}:{11 + len(field)}: `{key}` is " \
               in out, (key, age, out)
    assert f"0 passed, 0 failed, {len(combos)} errors" in out


@pytest.mark.parametrize(("age", "verdict"), [(".5h", "FAIL"), ("1.5h", "PASS"), ("1e3s", "FAIL"), ("4e3s", "PASS"),
                                              ("'3601'", "PASS"), ("3600", "FAIL"), ("90m", "PASS")])
def test_a_duration_the_rule_language_takes_is_read_as_it_reads_it(run, tmp_path, age, verdict):
    out = rule_test(run, tmp_path, f"""\
  - name: age
    event: on_timer
    facts: {{task: {{queue: triage}}, assignment: {{age: {age}}}}}
    expect: {{rule: stale}}
""")
    assert f"{verdict}  t.test.yaml:2: age" in out, out


# -- 3. a queue's sla: durations as rules write them, refused in words --------------------------------

def sla_workflow(sla: str) -> str:
    return WORKFLOW.replace("triage: {roles: [annotator]}", f"triage: {{roles: [annotator], sla: {sla}}}")


@pytest.mark.parametrize(("sla", "shown", "why"), [
    ("1w", '"1w"', "a number of seconds or a duration like 30s, 15m, 2h, 7d"),
    ("nanh", '"nanh"', "a number of seconds or a duration like 30s, 15m, 2h, 7d"),
    ("1_0h", '"1_0h"', "a number of seconds or a duration like 30s, 15m, 2h, 7d"),
    ("'4h '", '"4h "', "a number of seconds or a duration like 30s, 15m, 2h, 7d"),
    ("true", "true", "a number of seconds or a duration like 30s, 15m, 2h, 7d"),
    ("[4h]", '["4h"]', "a number of seconds or a duration like 30s, 15m, 2h, 7d"),
    ("-5", "-5", "a duration cannot be negative"),
    ("1e400h", '"1e400h"', "a number too large for a duration"),
])
def test_a_bad_sla_is_refused_in_words(run, tmp_path, sla, shown, why):
    (tmp_path / "t.workflow.yaml").write_text(sla_workflow(sla), encoding="utf-8")
    proc = run("validate", "t.workflow.yaml")
    assert (proc.returncode, proc.stderr) == (1, f"t.workflow.yaml:4:37: `queues.triage.sla` is {shown}: {why}\n")
    [found] = json.loads(run("validate", "--json", "t.workflow.yaml").stdout)
    assert found["message"] == f"`queues.triage.sla` is {shown}: {why}" and "\\" not in found["message"]


@pytest.mark.parametrize(("sla", "seconds"), [("4h", 14400), (".5h", 1800), ("1.5h", 5400), ("1e3s", 1000),
                                              ("90", 90), ("'90'", 90), ("2.5", 2.5), ("0", 0), ("0s", 0)])
def test_an_sla_takes_what_a_rule_duration_takes(run, tmp_path, sla, seconds):
    (tmp_path / "t.workflow.yaml").write_text(sla_workflow(sla), encoding="utf-8")
    run.ok("init")
    run.ok("apply", "t.workflow.yaml")
    engine = Engine.open(str(run.db))
    try:
        assert engine.workflow.queues["triage"].sla == seconds
    finally:
        engine.close()


def test_a_version_stored_with_an_sla_the_old_pattern_took_keeps_loading(tmp_path, monkeypatch):
    """The old schema's ``\\d`` took any Unicode digit and ``float`` read it: ``٤h`` was four hours."""
    import sqlite3

    path = project(tmp_path, monkeypatch)
    engine = Engine.open(path)
    engine.apply(sla_workflow("4h"), "t.workflow.yaml", actor=LEAD)
    engine.close()
    with sqlite3.connect(path) as conn:
        (spec,) = conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()
        spec = json.loads(spec)
        spec["queues"]["triage"]["sla"] = "\u0664h"
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()
    q = Queries.open(path)
    try:
        [triage] = q.dashboard(now=parse_instant(SUBMITTED) + 5 * 3600)["queues"]
        assert (triage["sla"], triage["breaches"]) == (4 * 3600, 1)
    finally:
        q.close()


# -- 4. an age when the clock is behind the stored time ---------------------------------------------

@pytest.mark.anyio
async def test_the_task_list_and_the_dashboard_show_0s_when_the_clock_is_behind_a_task(tmp_path, monkeypatch):
    path = project(tmp_path, monkeypatch)  # T0 entered triage at 10:30
    monkeypatch.setenv("LABELYARD_NOW", "2026-01-01T05:30:00Z")  # five hours earlier
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(180, 45)) as pilot:
        await settle(app, pilot)
        assert str(app.screen.query_one("#queues", DataTable).get_row("triage")[5]) == "0s"
        await pilot.press("t")
        await settle(app, pilot)
        table = app.screen.query_one("#tasks", DataTable)
        column = [str(c.label) for c in table.columns.values()].index("age")
        assert [str(table.get_row_at(r)[column]) for r in range(table.row_count)] == ["0s"]
        app.screen.time_passed()  # the clock refresh writes the cells again from the rows on screen
        await pilot.pause()
        assert str(table.get_row_at(0)[column]) == "0s"
        monkeypatch.setenv("LABELYARD_NOW", "2026-01-01T12:30:00Z")  # and once the clock is past it
        app.screen.time_passed()
        await pilot.pause()
        assert str(table.get_row_at(0)[column]) == "2h"
