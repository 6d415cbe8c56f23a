"""Time where the twelfth session's tester (area "time") found it wrong, on real SQLite files
(``LABELYARD_NOW`` for the time, no sleeps), the TUI driven with Textual's pilot.

1. The "24 h" figures (the dashboard's "24 h: N submissions, N final" and the workers' 24h column)
   counted whole clock hours from 23 hours before the current one: right after the hour turned,
   a submission 23.5 hours old was left out. They start at the hour that holds ``now - 24h``.
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
