"""The lead's task list where a tester broke it, driven with Textual's pilot on real SQLite files
(the demo project of ``test_tui.py``).

- A hold from the task detail screen counted as someone else's: back on the list the lead was told
  their task "left this list", and their next action was asked again.
"""

from __future__ import annotations

import pytest

from test_tui import LEAD, anyio_backend, db, demo_template, open_tasks_on, settle  # noqa: F401
from test_tui_fix_lead_screens import hold_under_cursor, status_of
from tui.app import LabelyardApp
from tui.screens.detail import TaskDetailScreen
from tui.widgets.modals import InputModal

pytestmark = pytest.mark.anyio


def notes(app) -> list[str]:
    said = [n.message for n in app._notifications]
    app._notifications.clear()
    return said


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
