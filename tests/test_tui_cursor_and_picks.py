"""The lead's screens where a tester broke them: a digit-only search, workers named ``*`` and ``-``
in the worker filter, a live refresh that moved the cursor to another task (or worker) before an
action, pick lists on a terminal a dozen columns wide, and the status line after a selection.
Driven with Textual's pilot on real SQLite files, as in ``test_tui.py``."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Input, OptionList, Static

from router.engine import Engine
from router.ingest import read_file
from router.lead import Lead
from router.store import Store
from test_tui import LEAD, NOW, anyio_backend, db, demo_template, open_tasks_on, settle, task  # noqa: F401
from tui.app import LabelyardApp
from tui.screens.tasks import TasksScreen
from tui.widgets.modals import ConfirmModal, InputModal, PickModal

pytestmark = pytest.mark.anyio


def ingest(db: str, n: int, tmp_path) -> None:
    """``n`` new tasks, written by another connection (as another process would)."""
    inbox = tmp_path / "more.jsonl"
    inbox.write_text("".join(json.dumps({"id": f"late-{i}", "data": {"subject": f"late {i}", "customer": "c"}})
                             + "\n" for i in range(n)))
    engine = Engine.open(db)
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    engine.close()


def add_worker(db: str, name: str, claim: str | None = None) -> None:
    """Register annotator ``name``; with ``claim``, give them a slot in that queue."""
    engine = Engine.open(db)
    engine.add_worker(name, ["annotator"], [], None, actor=LEAD)
    if claim:
        engine.claim(name, claim)
    engine.close()


def cursor_key(table: DataTable) -> str:
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


async def pick(app, pilot, key: str, text: str) -> None:
    """Open a pick list with ``key`` and pick the option shown as ``text``."""
    await pilot.press(key)
    await pilot.pause()
    modal = app.screen
    assert isinstance(modal, PickModal)
    modal.query_one(OptionList).highlighted = [t for _, t in modal.items].index(text)
    await pilot.press("enter")
    await settle(app, pilot)


# -- 1. a digit-only search ------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["99999999999999999999", "²", "١٢"])
def test_a_digit_only_text_that_is_no_task_id_is_searched_as_text(db, text):
    store = Store.open(db)
    try:
        assert store.task_page(text=text) == []  # no OverflowError, no ValueError, not task 12
        assert [r["id"] for r in store.task_page(text="12") if r["id"] == 12] == [12]
    finally:
        store.close()


async def test_searching_the_task_list_for_digits_never_ends_the_app(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        for text in ("99999999999999999999", "²", "١٢"):
            await pilot.press("slash")
            await pilot.pause()
            assert isinstance(app.screen, InputModal)
            app.screen.query_one(Input).value = text
            await pilot.press("enter")
            await settle(app, pilot)
            assert app.is_running and app.screen is screen
            assert screen.filter.text == text and screen.rows == []


# -- 2. workers named * and - ------------------------------------------------------------------------

async def test_workers_named_star_and_dash_are_picked_in_the_worker_filter(db):
    add_worker(db, "*", claim="triage")
    add_worker(db, "-", claim="triage")
    store = Store.open(db)
    star, dash = ([r["id"] for r in store.task_page(worker=name)] for name in ("*", "-"))
    store.close()
    assert len(star) == len(dash) == 1
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        await pick(app, pilot, "k", "-")
        assert screen.filter.worker == "-" and [r["id"] for r in screen.rows] == dash
        await pick(app, pilot, "k", "*")
        assert screen.filter.worker == "*" and [r["id"] for r in screen.rows] == star
        await pick(app, pilot, "k", "(any)")
        assert screen.filter.worker is None and len(screen.rows) == 50
        await pick(app, pilot, "u", "(none)")
        assert screen.filter.queue == "" and {r["queue"] for r in screen.rows} == {None}
        await pick(app, pilot, "s", "held")
        assert screen.filter.status == "held" and {r["status"] for r in screen.rows} == {"held"}
        assert app.is_running


# -- 3. a live refresh keeps the cursor on its task or worker ----------------------------------------

async def test_a_refresh_keeps_the_cursor_on_the_task_so_hold_holds_it(db, tmp_path):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        await pilot.press("down", "down", "down")
        table = screen.query_one(DataTable)
        chosen, row = screen.current_ref(), table.cursor_row
        ingest(db, 2, tmp_path)  # newest first: two rows above the cursor
        app.check_changes()
        await settle(app, pilot)
        assert len(screen.rows) == 50 and screen.rows[0]["external_id"] == "late-1"
        assert screen.current_ref() == chosen and table.cursor_row == row + 2
        await pilot.press("h", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await settle(app, pilot)
    assert task(db, chosen)["task"]["status"] == "held"
    assert task(db, f"id:{screen.rows[row]['id']}")["task"]["status"] == "open"


async def test_a_refresh_keeps_the_cursor_on_the_row_number_when_its_task_left(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        await pilot.press("down", "down")
        chosen = screen.current_ref()
        engine = Engine.open(db)
        Lead(engine, LEAD).run("hold", [chosen])  # by another lead: the task leaves the open list
        engine.close()
        app.check_changes()
        await settle(app, pilot)
        assert chosen not in [f"id:{r['id']}" for r in screen.rows]
        assert screen.query_one(DataTable).cursor_row == 2


async def test_a_refresh_keeps_the_workers_cursor_on_the_worker_so_pause_pauses_them(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("w")
        await settle(app, pilot)
        table = app.screen.query_one(DataTable)
        await pilot.press("down")
        assert cursor_key(table) == "bob"
        add_worker(db, "aaron")  # sorts first
        app.check_changes()
        await settle(app, pilot)
        assert cursor_key(table) == "bob"
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("enter")  # pause, no reason
        await settle(app, pilot)
        paused = {w["id"]: w["paused"] for w in app.screen.rows}
    assert paused["bob"] and not paused["alice"] and not paused["aaron"]


async def test_a_refresh_keeps_the_dashboards_worker_cursor_on_the_worker(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one("#workers", DataTable)
        await pilot.press("tab")  # from the queues, which have the focus
        assert app.focused is table
        await pilot.press("down")
        assert cursor_key(table) == "bob"
        add_worker(db, "aaron")
        app.check_changes()
        await settle(app, pilot)
        assert table.row_count and cursor_key(table) == "bob"
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TasksScreen) and app.screen.filter.worker == "bob"


# -- 4. a terminal a dozen columns wide ----------------------------------------------------------------

async def test_dialogs_on_a_tiny_terminal_are_clipped_not_fatal(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(40, 10)) as pilot:
        screen = await open_tasks_on(app, pilot)
        for width in (11, 5, 1):
            await pilot.resize_terminal(width, 10)
            await pilot.pause()
            for keys, modal in ((["s"], PickModal), (["slash"], InputModal), (["h", "enter"], ConfirmModal)):
                await pilot.press(*keys)
                await settle(app, pilot)
                assert isinstance(app.screen, modal)
                await pilot.press("escape")
                await settle(app, pilot)
                assert app.screen is screen
        assert app.is_running


# -- 5. the status line after a selection ----------------------------------------------------------------

async def test_selecting_on_the_last_page_keeps_last_page_in_the_status_line(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="held")
        status = screen.query_one("#task-status", Static)
        rows = len(screen.rows)
        assert str(status.render()) == f"page 1 · {rows} rows of {rows} (last page)"
        await pilot.press("space", "space")
        assert str(status.render()) == f"page 1 · {rows} rows of {rows} (last page)   selected 2"


# -- a background read that fails --------------------------------------------------------------------

async def test_a_read_that_fails_in_its_thread_is_told_and_the_app_stays_up(db, monkeypatch):
    import sqlite3

    from textual.worker import WorkerFailed

    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        told: list[tuple[str, str]] = []
        original_notify = app.notify

        def notify(message, **kwargs):
            told.append((kwargs.get("title", ""), message))
            return original_notify(message, **kwargs)

        monkeypatch.setattr(app, "notify", notify)
        healthy = type(app.backend).queries

        def broken(self):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(type(app.backend), "queries", broken)
        screen.reload()
        try:
            await app.workers.wait_for_complete()
        except WorkerFailed:
            pass  # the worker failed, as it should here; what matters is what the app did with it
        await pilot.pause()
        await pilot.pause()
        assert app.is_running and app.screen is screen  # before: the worker's error ended the app
        assert ("tasks failed", "OperationalError: disk I/O error") in told
        monkeypatch.setattr(type(app.backend), "queries", healthy)
        screen.reload()
        await settle(app, pilot)
        assert screen.rows  # the next refresh reads again
