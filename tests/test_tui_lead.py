"""The lead's screens where they used to break: sorting an open queue by age, a project with no
workflow yet, a numeric external id that is another task's id, and PageDown/PageUp on the task
list. Driven with Textual's pilot on real SQLite files, as in ``test_tui.py``."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Static

from router.engine import Engine
from router.store import Store
from test_tui import LEAD, NOW, Recorder, anyio_backend, db, demo_template, settle, task  # noqa: F401
from tui.app import LabelyardApp
from tui.messages import ActionDone, ActionFailed
from tui.screens.detail import TaskDetailScreen
from tui.screens.tasks import TasksScreen

pytestmark = pytest.mark.anyio


async def test_an_open_queue_sorts_by_age_and_pages(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")  # triage, open: the queues have the focus
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, TasksScreen) and screen.filter.queue == "triage"
        await pilot.press("o", "o")  # id → priority → age (the partial index of open tasks by age)
        await settle(app, pilot)
        assert screen.filter.order == "age" and len(screen.rows) == 50
        ages = [(r["stage_at"], r["id"]) for r in screen.rows]
        assert ages == sorted(ages)  # age↓: the oldest (earliest stage_at) first
        await pilot.press("n")
        await settle(app, pilot)
        second = [(r["stage_at"], r["id"]) for r in screen.rows]
        assert second and min(second) > max(ages) and {r["queue"] for r in screen.rows} == {"triage"}


@pytest.fixture
def empty_db(tmp_path, monkeypatch) -> str:
    """A project with a lead and no workflow applied yet."""
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = str(tmp_path / "empty.db")
    store, _ = Store.init(path)
    Engine(store).add_worker(LEAD, ["lead"], [], None, actor="test")
    store.close()
    return path


async def test_no_workflow_yet_is_said_on_screen(empty_db):
    app = LabelyardApp(empty_db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert "no workflow applied" in str(app.screen.query_one("#summary", Static).render())
        await pilot.press("a")  # agreement now: the slow statistics need a workflow
        await settle(app, pilot)
        assert "no workflow applied" in str(app.screen.query_one("#summary", Static).render())
        # a write while the dashboard is idle past its 30 s reloads the slow statistics too
        app.screen._slow_at = -1e9
        engine = Engine.open(empty_db)
        engine.add_worker("ann", ["annotator"], [], None, actor=LEAD)
        engine.close()
        app.check_changes()
        await settle(app, pilot)
        assert app.screen.query_one("#workers", DataTable).row_count == 2
        await pilot.press("f")
        await settle(app, pilot)
        assert "no workflow applied" in str(app.screen.query_one("#workflow-head", Static).render())
        assert app.screen.query_one(DataTable).row_count == 0
        await pilot.press("t")
        await settle(app, pilot)
        assert app.screen.rows == [] and app.screen.total == 0


async def test_a_numeric_external_id_that_is_another_tasks_id_opens_and_acts(db, tmp_path):
    inbox = tmp_path / "numeric.jsonl"
    inbox.write_text(json.dumps({"id": "161", "data": {"subject": "external id 161", "customer": "c-1"},
                                        "prediction": {"label": "bug", "confidence": 0.5}}) + "\n")
    engine = Engine.open(db)
    from router.ingest import read_file

    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    engine.close()
    mine = task(db, "ext:161")["task"]
    other = task(db, "id:161")["task"]
    assert mine["id"] != 161 and other["external_id"] != "161" and mine["status"] == other["status"] == "open"
    rec = Recorder()
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        table = screen.query_one(DataTable)
        table.move_cursor(row=[r["id"] for r in screen.rows].index(mine["id"]))
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TaskDetailScreen)
        assert not rec.of(ActionFailed)
        assert app.screen.detail["task"]["id"] == mine["id"]
        await pilot.press("h", "enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        assert [m.action for m in rec.of(ActionDone)] == ["hold"] and not rec.of(ActionFailed)
    assert task(db, f"id:{mine['id']}")["task"]["status"] == "held"
    assert task(db, "id:161")["task"]["status"] == "open"


async def test_pagedown_and_pageup_page_the_focused_task_table(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen.focused, DataTable)
        first = [r["id"] for r in screen.rows]
        await pilot.press("pagedown")
        await settle(app, pilot)
        assert screen.page_no == 2 and screen.rows[0]["id"] == first[-1] - 1
        await pilot.press("pageup")
        await settle(app, pilot)
        assert screen.page_no == 1 and [r["id"] for r in screen.rows] == first
