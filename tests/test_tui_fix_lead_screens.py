"""The lead's screens where a tester broke them, driven with Textual's pilot on real SQLite files
(the demo project of ``test_tui.py``).

- `n` pressed again while the next page was still loading appended the old page's next key once
  more: the status said "page 4" over the rows of page 2. Presses while a page loads are ignored.
"""

from __future__ import annotations

import threading

import pytest
from textual.widgets import Static

from router.queries import Queries, TaskFilter
from test_tui import LEAD, NOW, anyio_backend, db, demo_template, open_tasks_on, settle  # noqa: F401
from tui.app import LabelyardApp

pytestmark = pytest.mark.anyio


def pages(db: str, n: int, task_filter: TaskFilter) -> list[list[int]]:
    """The ids on the first ``n`` pages of ``task_filter``, read through ``router.queries``."""
    q = Queries.open(db)
    try:
        out, after = [], None
        for _ in range(n):
            page = q.task_page(task_filter, after)
            out.append([r["id"] for r in page.rows])
            after = page.next_after
        return out
    finally:
        q.close()


class Gate:
    """Holds every ``Queries.task_page`` call in its thread until :meth:`open` (a page load in flight)."""

    def __init__(self, monkeypatch):
        self.event = threading.Event()
        self.event.set()
        original = Queries.task_page

        def gated(q, *args, **kwargs):
            assert self.event.wait(60), "the gate was never opened"
            return original(q, *args, **kwargs)

        monkeypatch.setattr(Queries, "task_page", gated)

    def close(self) -> None:
        self.event.clear()

    def open(self) -> None:
        self.event.set()


# -- paging while a page loads ----------------------------------------------------------------------

@pytest.mark.parametrize("keys", [("n", "n", "n"), ("pagedown", "pagedown", "n")])
async def test_paging_keys_while_a_page_loads_keep_the_counter_on_the_rows(db, monkeypatch, keys):
    gate = Gate(monkeypatch)
    first, second, third = pages(db, 3, TaskFilter())
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        status = screen.query_one("#task-status", Static)
        assert [r["id"] for r in screen.rows] == first
        gate.close()
        await pilot.press(*keys)  # page 2 is still being read for the second and third press
        while_loading = str(status.render())
        gate.open()
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == second
        assert str(status.render()).startswith("page 2 · 50 rows of ")  # before: "page 4" over page 2's rows
        assert while_loading == "page 2 · loading…"
        await pilot.press("n")  # once the page is there, `n` pages on
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == third and str(status.render()).startswith("page 3 · ")
        gate.close()
        await pilot.press("p", "p")
        gate.open()
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == second and str(status.render()).startswith("page 2 · ")
