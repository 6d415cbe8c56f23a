"""The annotator's work screen where it used to get stuck: a slot taken away by a lead, a slot
left held by quitting mid-task, and more choices than number keys. Pilot-driven on real SQLite
files, as in ``test_tui.py``."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from router.engine import Engine
from router.lead import Lead
from router.store import Store
from test_tui import LEAD, NOW, Recorder, _project, anyio_backend, db, demo_template, settle, task  # noqa: F401
from tui.app import LabelyardApp
from tui.messages import Claimed, SlotGone
from tui.widgets.modals import PickModal

pytestmark = pytest.mark.anyio


def slot_status(db: str, assignment: int) -> str:
    store = Store.open(db)
    try:
        return store.assignment(assignment)["status"]
    finally:
        store.close()


def active_count(db: str, worker: str) -> int:
    store = Store.open(db)
    try:
        return store.active_count(worker)
    finally:
        store.close()


def lead(db: str, action: str, view: dict, **options) -> None:
    engine = Engine.open(db)
    try:
        Lead(engine, LEAD).run(action, [f"id:{view['task']}"], **options)
    finally:
        engine.close()


@pytest.mark.parametrize("action, options", [("release", {}), ("reassign", {"to": "dave"}), ("hold", {})])
async def test_a_slot_taken_away_is_noticed_on_reload_and_work_moves_on(db, action, options):
    rec = Recorder()
    app = LabelyardApp(db, "alice", start="work", worker="alice", poll_interval=None)
    async with app.run_test(size=(100, 30), message_hook=rec) as pilot:
        await settle(app, pilot)
        screen = app.screen
        first = screen.view
        lead(db, action, first, **options)
        app.check_changes()  # what the poller does when the lead's process writes
        await settle(app, pilot)
        assert [m.assignment for m in rec.of(SlotGone)] == [first["assignment"]]
        assert screen.view is not None and screen.view["assignment"] != first["assignment"]
        second = screen.view
        await pilot.press("2")  # the new slot takes a label
        await settle(app, pilot)
        assert slot_status(db, second["assignment"]) == "submitted"


async def test_a_slot_taken_away_unnoticed_moves_on_when_the_submission_fails(db):
    rec = Recorder()
    app = LabelyardApp(db, "alice", start="work", worker="alice", poll_interval=None)
    async with app.run_test(size=(100, 30), message_hook=rec) as pilot:
        await settle(app, pilot)
        screen = app.screen
        first = screen.view
        lead(db, "release", first)  # no poll: the screen has not seen it
        await pilot.press("2")
        await settle(app, pilot)
        [gone] = rec.of(SlotGone)
        assert gone.assignment == first["assignment"] and "released" in gone.why
        assert screen.view is not None and screen.view["assignment"] != first["assignment"] and not screen.busy
        # `n` on a slot taken away moves on too
        second = screen.view
        lead(db, "release", second)
        await pilot.press("n")
        await settle(app, pilot)
        assert screen.view is not None and screen.view["assignment"] not in (first["assignment"],
                                                                              second["assignment"])


async def test_reopening_the_work_screen_resumes_the_slot_left_held(db):
    before = active_count(db, "bob")
    shown = []
    for _ in range(4):  # more opens than bob's capacity (3)
        rec = Recorder()
        app = LabelyardApp(db, "bob", start="work", worker="bob", poll_interval=None)
        async with app.run_test(size=(100, 30), message_hook=rec) as pilot:
            await settle(app, pilot)
            shown.append(app.screen.view["assignment"])
            resumed = getattr(rec.of(Claimed)[-1], "resumed", False)
        assert resumed == (before > 0 or len(shown) > 1), shown
        # quit mid-task: the slot stays bob's, and the next open shows it again
    assert len(set(shown)) == 1 and slot_status(db, shown[0]) == "active"
    assert active_count(db, "bob") == max(before, 1)


TWELVE = """\
workflow: many
labels: {type: choice, choices: [c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12]}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 1}
on_quorum:
  - do: accept
"""


async def test_every_choice_is_shown_and_can_be_picked(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, TWELVE)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        shown = str(screen.query_one("#work-choices", Static).render())
        assert all(f"c{i}" in shown for i in range(1, 13)) and "0 c10" in shown
        first = screen.view["external_id"]
        await pilot.press("0")  # the tenth
        await settle(app, pilot)
        assert task(path, first)["task"]["final_label"] == "c10"
        second = screen.view["external_id"]
        await pilot.press("c")  # the list of every choice: arrows and Enter
        await pilot.pause()
        pick = app.screen
        assert isinstance(pick, PickModal) and len(pick.items) == 12
        await pilot.press("end", "enter")
        await settle(app, pilot)
        assert task(path, second)["task"]["final_label"] == "c12"
