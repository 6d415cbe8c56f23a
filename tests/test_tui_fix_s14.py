"""The TUI where the fourteenth session left it, driven with Textual's pilot on real SQLite files
(``LABELYARD_NOW`` for the time; the other writer is a real ``labelyard`` process; no sleeps).

1. The workers screen showed ``flagged`` but had no key to clear (or set) the flag: the lead had to
   leave for ``labelyard workers set NAME --unflag``. ``F`` flags or unflags the worker under the
   cursor, after a confirmation, through the engine, with the event ``workers set --flag/--unflag``
   writes; the row shows it.
2. The task detail read ``show``, the votes and ``explain`` one after another, each its own read:
   a write that committed in between made one screen of two states (a head "open" over a history
   that ended "held"). The detail's parts are read in one read transaction
   (:meth:`router.store.Store.read_transaction`); the test commits another process's write between
   two of the reads.
"""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from router.engine import Engine
from router.errors import UnknownTask
from router.queries import Queries
from router.store import Store
from test_tui import LEAD, NOW, anyio_backend, settle  # noqa: F401
from test_tui_fix_s13 import project
from tui.app import LabelyardApp
from tui.commands import COMMANDS
from tui.messages import ActionDone, ActionFailed
from tui.screens.detail import TaskDetailScreen
from tui.screens.workers import WorkersScreen
from tui.widgets.modals import ConfirmModal

pytestmark = pytest.mark.anyio


@pytest.fixture
def now(monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)


class Recorder:
    """The messages the app handled, each once (a message that bubbles from the screen to the app is
    seen by the hook at each)."""

    def __init__(self):
        self.messages = []

    def __call__(self, message):
        if not any(m is message for m in self.messages):
            self.messages.append(message)

    def of(self, kind):
        return [m for m in self.messages if isinstance(m, kind)]


def flag_events(path: str) -> list[tuple]:
    """The worker flag events, as the audit trail keeps them (their ids and times left out)."""
    store = Store.open(path)
    try:
        rows = store.query("SELECT kind, task_id, actor, action, rule, detail FROM events "
                           "WHERE kind IN ('worker_flagged', 'worker_unflagged') ORDER BY id")
        return [tuple(r) for r in rows]
    finally:
        store.close()


def flagged(path: str, worker: str) -> int:
    store = Store.open(path)
    try:
        return store.worker(worker)["flagged"]
    finally:
        store.close()


def state(app, worker: str) -> str:
    return str(app.screen.query_one("#roster", DataTable).get_row(worker)[-1])


async def open_workers_on(app, pilot, worker: str) -> None:
    await settle(app, pilot)
    await pilot.press("w")
    await settle(app, pilot)
    table = app.screen.query_one("#roster", DataTable)
    table.move_cursor(row=[str(k.value) for k in table.rows].index(worker))
    await pilot.pause()


# -- 1. flag and unflag a worker from the workers screen -------------------------------------------------

async def test_f_flags_and_unflags_the_worker_under_the_cursor_with_the_cli_s_event(tmp_path, now, run):
    (tmp_path / "tui").mkdir()
    (tmp_path / "cli").mkdir()
    path, by_cli = project(tmp_path / "tui", []), project(tmp_path / "cli", [])
    rec = Recorder()
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 30), message_hook=rec) as pilot:
        await open_workers_on(app, pilot, "ann")
        assert "F" in {b.key for b in app.screen.BINDINGS if b.show}  # in the footer
        assert state(app, "ann") == ""
        await pilot.press("F")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and app.screen.question.startswith("Flag ann?")
        await pilot.press("n")  # no: nothing is written
        await settle(app, pilot)
        assert flagged(path, "ann") == 0 and flag_events(path) == []
        await pilot.press("F", "y")
        await settle(app, pilot)
        assert flagged(path, "ann") == 1
        assert state(app, "ann") == "flagged"  # the table was read again
        await pilot.press("F")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and app.screen.question.startswith("Unflag ann?")
        await pilot.press("y")
        await settle(app, pilot)
        assert flagged(path, "ann") == 0 and state(app, "ann") == ""
    assert [(m.action, m.report["done"]) for m in rec.of(ActionDone)] == [("flag", [{"worker": "ann"}]),
                                                                          ("unflag", [{"worker": "ann"}])]
    assert not rec.of(ActionFailed)

    for change in ("--flag", "--unflag"):
        run.ok("workers", "set", "ann", change, "--as", LEAD, env={"LABELYARD_DB": by_cli, "LABELYARD_NOW": NOW})
    events = flag_events(path)
    assert [e[0] for e in events] == ["worker_flagged", "worker_unflagged"]
    assert events == flag_events(by_cli)  # the same audit trail as `workers set --flag/--unflag`


async def test_a_flag_set_meanwhile_is_told_and_nothing_is_written_twice(tmp_path, now, run):
    path = project(tmp_path, [])
    rec = Recorder()
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 30), message_hook=rec) as pilot:
        await open_workers_on(app, pilot, "ann")
        await pilot.press("F")
        await pilot.pause()
        # another lead flags ann while the question is on screen
        run.ok("workers", "set", "ann", "--flag", "--as", LEAD, env={"LABELYARD_DB": path, "LABELYARD_NOW": NOW})
        await pilot.press("y")
        await settle(app, pilot)
        assert state(app, "ann") == "flagged"
        said = [n.message for n in app._notifications][-1]
    [done] = rec.of(ActionDone)
    assert said == "flag: 0 done, 1 skipped (already flagged)"
    assert done.action == "flag" and done.report["done"] == []
    assert done.report["skipped"] == [{"worker": "ann", "reason": "already flagged"}]
    assert [e[0] for e in flag_events(path)] == ["worker_flagged"]


async def test_only_a_lead_flags_from_the_tui(tmp_path, now):
    path = project(tmp_path, [])
    rec = Recorder()
    app = LabelyardApp(path, "ann", poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 30), message_hook=rec) as pilot:
        await open_workers_on(app, pilot, "ann")
        await pilot.press("F", "y")
        await settle(app, pilot)
    [failed] = rec.of(ActionFailed)
    assert failed.action == "flag" and "needs the lead role" in failed.error
    assert flagged(path, "ann") == 0 and flag_events(path) == []


async def test_a_paused_worker_s_flag_shows_too_and_the_palette_offers_the_key(tmp_path, now):
    path = project(tmp_path, [])
    engine = Engine.open(path)
    engine.set_worker_paused("ann", True, "too fast", actor=LEAD)
    engine.close()
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_workers_on(app, pilot, "ann")
        assert state(app, "ann") == "paused: too fast"
        assert any(c[2] == "toggle_flag" and c[3] == "WorkersScreen" for c in COMMANDS)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Flag")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmModal)  # the palette ran the screen's flag action
        await pilot.press("y")
        await settle(app, pilot)
        assert isinstance(app.screen, WorkersScreen)
        assert state(app, "ann") == "paused: too fast · flagged"  # it showed "paused" alone


# -- 2. the task detail is read in one snapshot ----------------------------------------------------------

class HoldBetweenReads:
    """Once armed, the next read of a task's votes (the detail reads them after ``show``, before
    ``explain``) first has another process hold task ``p5``: a real ``labelyard hold``, committed
    before the read goes on."""

    def __init__(self, run):
        self.run = run
        self.armed = False
        self.done = False

    def votes(self, real, store, task_id):
        if self.armed:
            self.armed = False
            self.run.ok("hold", "ext:p5", "--reason", "wait", "--as", LEAD,
                        env={"LABELYARD_DB": store.path, "LABELYARD_NOW": NOW})
            self.done = True
        return real(store, task_id)


@pytest.fixture
def hold_between_reads(monkeypatch, run):
    hook = HoldBetweenReads(run)
    real = Store.votes
    monkeypatch.setattr(Store, "votes", lambda store, task_id: hook.votes(real, store, task_id))
    return hook


def test_the_task_detail_is_one_snapshot_while_another_process_writes(tmp_path, now, hold_between_reads):
    path = project(tmp_path, [{"id": "p5", "data": {"a": 1}}])
    q = Queries.open(path)
    try:
        hold_between_reads.armed = True
        d = q.task_detail("ext:p5")
        assert hold_between_reads.done  # the other process wrote in the middle of the read
        assert not q.store.conn.in_transaction  # the read ended
        assert d["task"]["status"] == d["explain"]["task"]["status"] == "open"
        assert [e["id"] for e in d["events"]] == [s["event"] for s in d["explain"]["events"]]
        assert d["events"][-1]["kind"] != "held"
        again = q.task_detail("ext:p5")  # the next read sees the write
        assert again["task"]["status"] == again["explain"]["task"]["status"] == "held"
        assert again["events"][-1]["kind"] == "held"
    finally:
        q.close()


def test_a_detail_read_that_fails_leaves_no_snapshot_behind(tmp_path, now, run):
    path = project(tmp_path, [{"id": "p5", "data": {"a": 1}}])
    q = Queries.open(path)
    try:
        assert q.task_detail("ext:p5")["task"]["status"] == "open"
        with pytest.raises(UnknownTask):
            q.task_detail("ext:nope")
        assert not q.store.conn.in_transaction
        run.ok("hold", "ext:p5", "--as", LEAD, env={"LABELYARD_DB": path, "LABELYARD_NOW": NOW})
        assert q.task_detail("ext:p5")["task"]["status"] == "held"  # not a snapshot kept from before
    finally:
        q.close()


def test_a_read_transaction_joins_an_outer_one(tmp_path, now):
    path = project(tmp_path, [{"id": "p5", "data": {"a": 1}}])
    store = Store.open(path)
    try:
        with store.read_transaction():
            assert store.conn.in_transaction
            with store.read_transaction():
                store.task("ext:p5")
            assert store.conn.in_transaction  # the inner one did not end the outer
        assert not store.conn.in_transaction
        with store.transaction():
            with store.read_transaction():
                store.task("ext:p5")
            assert store.conn.in_transaction  # a write transaction is not ended by a read in it
        assert not store.conn.in_transaction
    finally:
        store.close()


async def test_the_detail_screen_shows_one_state_while_another_process_writes(tmp_path, now, hold_between_reads):
    path = project(tmp_path, [{"id": "p5", "data": {"a": 1}}])
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.push_screen(TaskDetailScreen("ext:p5"))
        await settle(app, pilot)
        assert str(app.screen.query_one("#detail-head", Static).render()).startswith("task 1 (p5)  open")
        hold_between_reads.armed = True
        app.screen.reload()  # one read, with the other process's write in its middle
        await settle(app, pilot)
        assert hold_between_reads.done
        head = str(app.screen.query_one("#detail-head", Static).render())
        history = str(app.screen.query_one("#detail-history", Static).render())
        assert head.startswith("task 1 (p5)  open  annotate in q")
        assert "held" not in head and "held" not in history  # the summary and history are of the same state
        app.screen.reload()
        await settle(app, pilot)
        head = str(app.screen.query_one("#detail-head", Static).render())
        history = str(app.screen.query_one("#detail-history", Static).render())
        assert head.startswith("task 1 (p5)  held") and "held" in history
