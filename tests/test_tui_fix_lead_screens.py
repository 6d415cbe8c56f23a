"""The lead's screens where a tester broke them, driven with Textual's pilot on real SQLite files
(the demo project of ``test_tui.py``).

- `n` pressed again while the next page was still loading appended the old page's next key once
  more: the status said "page 4" over the rows of page 2. Presses while a page loads are ignored.
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
from tui.app import LabelyardApp
from tui.messages import DataChanged

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
