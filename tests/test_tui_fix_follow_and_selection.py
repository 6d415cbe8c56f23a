"""The lead's task list where a tester broke it, driven with Textual's pilot on real SQLite files
(the demo project of ``test_tui.py``).

- When a refresh followed the task under the cursor to the page that shows it, the status line
  always said "page 2" (500 tasks ingested above: ranks 501-550 are page 11), and `p` went back to
  the page the list had left, skipping the tasks directly above. The page number now counts the
  rows before the followed page, and `p` reads the page just above the first row shown.
- A selected task that left the list (another lead held it while the list shows open tasks) stayed
  selected, unseen: `h` asked to "Hold 2 tasks?" and the whole action failed. The selection now
  loses it, and the lead is told which tasks went.
- A hold from the task detail screen counted as someone else's: back on the list the lead was told
  their task "left this list", and their next action was asked again.
"""

from __future__ import annotations

import pytest
from textual.widgets import Static

from router.engine import Engine
from router.lead import Lead
from router.queries import Queries, TaskFilter
from test_tui import LEAD, anyio_backend, db, demo_template, open_tasks_on, settle  # noqa: F401
from test_tui_cursor_and_picks import ingest
from test_tui_fix_lead_screens import hold_under_cursor, status_of
from tui.app import LabelyardApp
from tui.screens.detail import TaskDetailScreen
from tui.widgets.modals import ConfirmModal, InputModal

pytestmark = pytest.mark.anyio


def listed(db: str, task_filter: TaskFilter) -> list[int]:
    """Every id ``task_filter`` lists, in its order (read page by page through ``router.queries``)."""
    q = Queries.open(db)
    try:
        out, after = [], None
        while True:
            page = q.task_page(task_filter, after)
            out += [r["id"] for r in page.rows]
            if page.next_after is None:
                return out
            after = page.next_after
    finally:
        q.close()


def page_number(start: int) -> int:
    """The page a list shows when ``start`` rows come before its first row: page 1 only at the top."""
    return 1 if start == 0 else -(-start // 50) + 1


def status(screen) -> str:
    return str(screen.query_one("#task-status", Static).render())


def notes(app) -> list[str]:
    said = [n.message for n in app._notifications]
    app._notifications.clear()
    return said


def another_lead(db: str, action: str, refs: list[str], **options) -> None:
    engine = Engine.open(db)
    Lead(engine, LEAD).run(action, refs, **options)
    engine.close()


# -- 1. the page number and `p` after the list follows the cursor's task ------------------------------

@pytest.mark.parametrize("new", [500, 505])
async def test_following_the_cursor_says_its_page_and_p_shows_the_rows_just_above(db, tmp_path, new):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        chosen = screen.current_ref()
        ingest(db, new, tmp_path)  # by another process: the chosen task is now rank new + 1
        app.check_changes()
        await settle(app, pilot)
        ids = listed(db, TaskFilter())
        assert screen.current_ref() == chosen and [r["id"] for r in screen.rows] == ids[new:new + 50]
        # before: "page 2 · 50 rows of 800" over the rows of page 11 (500) or 12 (505)
        assert status(screen) == f"page {page_number(new)} · 50 rows of {len(ids):,}"
        start = new
        while start:  # `p` to the top: each page is the rows just above the first one shown
            await pilot.press("p")
            await settle(app, pilot)
            start = max(0, start - 50)
            # before: the first `p` showed ids[0:50], the 450 tasks above skipped
            assert [r["id"] for r in screen.rows] == ids[start:start + 50]
            assert status(screen).startswith(f"page {page_number(start)} · 50 rows")
        assert status(screen).startswith("page 1 · ") and screen.rows[0]["external_id"] == f"late-{new - 1}"
        await pilot.press("p")  # nothing above the first page
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == ids[:50] and status(screen).startswith("page 1 · ")


async def test_a_priority_that_moves_the_cursor_task_far_down_says_its_page(db):
    task_filter = TaskFilter(status="open", order="priority")
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open", order="priority")
        await pilot.press("down", "down", "down")
        chosen = screen.current_ref()
        another_lead(db, "priority", [chosen], value=-5)  # now last in the list
        app.check_changes()
        await settle(app, pilot)
        ids = listed(db, task_filter)
        start = ids.index(int(chosen[3:])) - 3  # the page shows it on the cursor's row
        assert start > 100 and screen.current_ref() == chosen
        assert [r["id"] for r in screen.rows] == ids[start:start + 50]
        assert status(screen) == f"page {page_number(start)} · {len(ids) - start} rows of {len(ids):,} (last page)"
        await pilot.press("p")
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == ids[start - 50:start]  # before: the first page
        assert status(screen).startswith(f"page {page_number(start - 50)} · 50 rows")
        await pilot.press("n")  # and back to the page it came from
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == ids[start:start + 50]
        assert status(screen).startswith(f"page {page_number(start)} · ")


async def test_p_on_a_page_emptied_by_another_lead_shows_the_last_rows(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        task_filter = screen.filter
        ids = listed(db, task_filter)
        while len(screen.rows) == 50 and screen.next_after is not None:
            await pilot.press("n")
            await settle(app, pilot)
        last = [r["id"] for r in screen.rows]
        another_lead(db, "hold", [f"id:{i}" for i in last])
        app.check_changes()
        await settle(app, pilot)
        assert screen.rows == []
        await pilot.press("p")
        await settle(app, pilot)
        rest = [i for i in ids if i not in last]
        assert [r["id"] for r in screen.rows] == rest[-50:] and screen.next_after is None


# -- 2. a selected task that leaves the list ------------------------------------------------------

async def test_a_selected_task_that_left_the_list_is_unselected_and_said(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        await pilot.press("space", "space")
        first, second = (f"id:{r['id']}" for r in screen.rows[:2])
        first_name, second_name = screen.ref_name(first), screen.ref_name(second)
        notes(app)
        another_lead(db, "hold", [first])
        app.check_changes()
        await settle(app, pilot)
        assert screen.selected == {second}  # before: still {first, second}, one of them unseen
        assert status(screen).endswith("   selected 1")
        assert notes(app) == [f"the selected task {first_name} left this list and is no longer selected"]
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, InputModal)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert app.screen.question == f"Hold task {second_name}?"  # before: "Hold 2 tasks?", then it failed
        await pilot.press("y")
        await settle(app, pilot)
        assert status_of(db, second) == "held" and screen.selected == set()
        assert not [n for n in notes(app) if "failed" in n or "left this list" in n]


async def test_a_selected_task_on_another_page_that_left_the_list_is_unselected(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        await pilot.press("space")
        away = screen.rows[0]
        away_ref = f"id:{away['id']}"
        await pilot.press("n")
        await settle(app, pilot)
        await pilot.press("space")
        here = f"id:{screen.rows[0]['id']}"
        notes(app)
        another_lead(db, "hold", [away_ref])
        app.check_changes()
        await settle(app, pilot)
        assert screen.selected == {here}
        assert notes(app) == [f"the selected task {away['external_id']} ({away_ref}) left this list "
                              "and is no longer selected"]


async def test_when_every_selected_task_left_the_next_action_is_asked_again(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        await pilot.press("space", "space")  # the cursor is left on the third row
        picked = sorted(screen.selected)
        names = [screen.ref_name(ref) for ref in sorted(picked, key=lambda ref: int(ref[3:]))]
        cursor = screen.current_ref()
        notes(app)
        another_lead(db, "hold", picked)
        app.check_changes()
        await settle(app, pilot)
        assert screen.selected == set() and screen.current_ref() == cursor
        what = f"the selected tasks {', '.join(names)}"
        assert notes(app) == [f"{what} left this list and are no longer selected"]
        await pilot.press("h")  # would act on the cursor's task, which the lead never picked
        await pilot.pause()
        assert app.screen is screen and status_of(db, cursor) == "open"
        assert notes(app) == [f"{what} left this list: the cursor is on {screen.ref_name(cursor)} now; "
                              "press again to act on it"]
        cursor_name = screen.ref_name(cursor)
        assert await hold_under_cursor(app, pilot) == f"Hold task {cursor_name}?"  # asked: the lead's choice
        assert status_of(db, cursor) == "held"


# -- 3. an action from the task detail screen is the lead's own ---------------------------------

async def test_a_hold_from_the_detail_screen_leaves_the_list_without_a_word(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        await pilot.press("down", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TaskDetailScreen)
        held = app.screen.ref
        await hold_under_cursor(app, pilot)
        assert status_of(db, held) == "held"
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is screen and screen.current_ref() != held
        assert not [n for n in notes(app) if "left this list" in n]  # before: "task … left this list; …"
        await pilot.press("P")  # at once: before, "press again to act on it"
        await pilot.pause()
        assert isinstance(app.screen, InputModal)
