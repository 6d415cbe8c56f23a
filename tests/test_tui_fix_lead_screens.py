"""The lead's screens where a tester broke them, driven with Textual's pilot on real SQLite files
(the demo project of ``test_tui.py``).

- `n` pressed again while the next page was still loading appended the old page's next key once
  more: the status said "page 4" over the rows of page 2. Presses while a page loads are ignored.
- Tasks ingested by another process above the cursor pushed its task off page 1, and the cursor
  fell back to the same row number: `h` offered to hold a task the lead never chose. The page now
  follows the task (at the same row; `p` shows what came above it); a task that left the list is
  said, and the next action on the row the cursor was left on is asked once more.
- The live refresh polled the newest event id, but rejected input rows and `labelyard run`'s plugin
  runs are written without an event: the dashboard's alerts for them showed only after ctrl+r. The
  poller now reads `PRAGMA data_version` (any commit by another connection); `check_changes` (one
  poll, on a new connection) compares the newest event, reject and plugin run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading

import pytest
from textual.widgets import Static

from conftest import labelyard_command
from router.engine import Engine
from router.queries import Queries, TaskFilter
from test_tui import LEAD, NOW, _project, anyio_backend, db, demo_template, open_tasks_on, settle  # noqa: F401
from router.lead import Lead
from test_tui_cursor_and_picks import ingest
from tui.app import LabelyardApp
from tui.messages import DataChanged
from tui.widgets.modals import ConfirmModal, InputModal

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


# -- the live refresh sees rows written without an event ---------------------------------------------

RUNFAIL = """\
workflow: runfail
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
sinks: [{plugin: jsonl, path: %s}]
on_create:
  - {name: sure, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q, overlap: 1}}
"""


def labelyard(db: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """``labelyard ARGS --db DB`` in another process, as a person at another terminal would run it."""
    return subprocess.run([*labelyard_command(), *args, "--db", db], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def events(db: str) -> int:
    q = Queries.open(db)
    try:
        return q.store.last_event_id()
    finally:
        q.close()


async def settle_beside_the_poller(app, pilot) -> None:
    """Wait for every worker but the poller (which runs until the app ends)."""
    for _ in range(3):
        for worker in [w for w in app.workers if w.group != "poll" and not w.is_finished]:
            try:
                await worker.wait()
            except Exception:
                pass  # a failed or replaced loader: the next round waits for its successor
        await pilot.pause()


def alerts(app) -> str:
    return str(app.screen.query_one("#alerts", Static).render())


@pytest.fixture
def runfail(tmp_path, monkeypatch) -> str:
    """A project whose sink cannot write (its folder would be inside a file) and one task made final at once."""
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    (tmp_path / "a-file").write_text("")
    path = _project(tmp_path, RUNFAIL % (tmp_path / "a-file" / "final.jsonl"))
    (tmp_path / "sure.jsonl").write_text(json.dumps({"id": "sure", "data": {"text": "x"},
                                                     "prediction": {"label": "a", "confidence": 0.95}}) + "\n")
    assert labelyard(path, "ingest", "sure.jsonl", cwd=tmp_path).returncode == 0
    (tmp_path / "bad.jsonl").write_text('{"id": "bad", "prediction": {"confidence": 7}}\n{bad json\n')
    return path


async def test_the_poller_shows_rejected_rows_and_failed_runs_without_a_keypress(runfail, tmp_path):
    changed = asyncio.Event()

    def hook(message):
        if isinstance(message, DataChanged):
            changed.set()

    async def noticed() -> None:
        await asyncio.wait_for(changed.wait(), timeout=30)  # an event, not a sleep: returns when it fires
        changed.clear()
        await settle_beside_the_poller(app, pilot)

    app = LabelyardApp(runfail, LEAD, poll_interval=0.02)
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await settle_beside_the_poller(app, pilot)
        engine = Engine.open(runfail)  # a change with an event: the poller is watching from here on
        engine.add_worker("bob", ["annotator"], [], None, actor=LEAD)
        engine.close()
        await noticed()
        assert "rejected" not in alerts(app) and "plugin failures" not in alerts(app)

        before = events(runfail)
        ingest = labelyard(runfail, "ingest", "bad.jsonl", cwd=tmp_path)
        assert "rejected 2" in ingest.stdout and events(runfail) == before  # no event written
        await noticed()
        assert "2 input row(s) rejected" in alerts(app)  # before: only after ctrl+r

        run = labelyard(runfail, "run", cwd=tmp_path)
        assert run.returncode != 0 and events(runfail) == before
        await noticed()
        assert "had plugin failures" in alerts(app)


async def test_one_poll_on_a_new_connection_sees_rejected_rows_and_failed_runs(runfail, tmp_path):
    app = LabelyardApp(runfail, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert "rejected" not in alerts(app)
        labelyard(runfail, "ingest", "bad.jsonl", cwd=tmp_path)
        app.check_changes()
        await settle(app, pilot)
        assert "2 input row(s) rejected" in alerts(app)
        labelyard(runfail, "run", cwd=tmp_path)
        app.check_changes()
        await settle(app, pilot)
        assert "had plugin failures" in alerts(app)


# -- the cursor stays on its task when a refresh pushes it off the page -----------------------------

def status_of(db: str, ref: str) -> str:
    q = Queries.open(db)
    try:
        return q.store.task(ref)["status"]
    finally:
        q.close()


async def hold_under_cursor(app, pilot) -> str:
    """Press `h`, give no reason, and answer yes; returns the question the lead was asked."""
    await pilot.press("h")
    await pilot.pause()
    assert isinstance(app.screen, InputModal)
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, ConfirmModal)
    question = app.screen.question
    await pilot.press("y")
    await settle(app, pilot)
    return question


async def test_tasks_ingested_above_push_the_page_not_the_cursor(db, tmp_path):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        await pilot.press("down", "down")
        chosen, name = screen.current_ref(), screen.ref_name(screen.current_ref())
        assert len(screen.rows) == 50
        ingest(db, 50, tmp_path)  # a page of new tasks: the chosen one is now on page 2
        app.check_changes()
        await settle(app, pilot)
        assert screen.current_ref() == chosen and screen.query_one("#tasks").cursor_row == 2
        assert str(screen.query_one("#task-status", Static).render()).startswith("page 2 · 50 rows")
        assert await hold_under_cursor(app, pilot) == f"Hold {'task ' + name}?"  # before: a new task's name
        assert status_of(db, chosen) == "held"
        assert {status_of(db, f"late-{i}") for i in range(50)} == {"open"}  # no new task was held
        await pilot.press("p")  # what came above: the newest tasks
        await settle(app, pilot)
        assert screen.rows[0]["external_id"] == "late-49" and str(
            screen.query_one("#task-status", Static).render()).startswith("page 1 · ")


async def test_a_task_whose_priority_moved_it_off_the_page_keeps_the_cursor(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open", order="priority")
        await pilot.press("down", "down", "down")
        chosen = screen.current_ref()
        engine = Engine.open(db)
        Lead(engine, LEAD).run("priority", [chosen], value=-5)  # another lead: now last in the list
        engine.close()
        app.check_changes()
        await settle(app, pilot)
        assert screen.current_ref() == chosen and screen.query_one("#tasks").cursor_row == 3
        assert next(r["priority"] for r in screen.rows if f"id:{r['id']}" == chosen) == -5


async def test_a_task_that_left_the_list_is_said_and_the_next_action_asked_again(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        await pilot.press("down", "down")
        chosen, name = screen.current_ref(), screen.ref_name(screen.current_ref())
        engine = Engine.open(db)
        Lead(engine, LEAD).run("hold", [chosen])  # another lead: the task leaves the open list
        engine.close()
        app.check_changes()
        await settle(app, pilot)
        landed = screen.current_ref()
        assert landed != chosen and screen.query_one("#tasks").cursor_row == 2
        said = [n.message for n in app._notifications]
        assert f"task {name} left this list; the cursor is on {screen.ref_name(landed)}" in said
        await pilot.press("h")
        await pilot.pause()
        assert app.screen is screen  # no dialog: the lead is told first
        assert said + [f"task {name} left this list: the cursor is on {screen.ref_name(landed)} now; "
                       "press again to act on it"] == [n.message for n in app._notifications]
        landed_name = screen.ref_name(landed)
        assert await hold_under_cursor(app, pilot) == f"Hold task {landed_name}?"
        assert status_of(db, landed) == "held"


async def test_after_moving_the_cursor_an_action_goes_through_at_once(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        await pilot.press("down", "down")
        engine = Engine.open(db)
        Lead(engine, LEAD).run("hold", [screen.current_ref()])
        engine.close()
        app.check_changes()
        await settle(app, pilot)
        await pilot.press("down")  # the lead picked a task themselves
        picked = screen.current_ref()
        picked_name = screen.ref_name(picked)
        assert await hold_under_cursor(app, pilot) == f"Hold task {picked_name}?"
        assert status_of(db, picked) == "held"


async def test_a_task_the_lead_held_themselves_leaves_without_a_warning(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot, status="open")
        await pilot.press("down", "down")
        first = screen.current_ref()
        await hold_under_cursor(app, pilot)
        assert status_of(db, first) == "held" and screen.query_one("#tasks").cursor_row == 2
        assert not [n for n in app._notifications if "left this list" in n.message]
        second, name = screen.current_ref(), screen.ref_name(screen.current_ref())
        assert await hold_under_cursor(app, pilot) == f"Hold task {name}?"  # at once: the lead saw it go
        assert status_of(db, second) == "held"
