"""The work screen after a failure and on keys that do nothing, driven with Textual's pilot on real
database files.

- A claim, submission or skip that failed with something other than a refusal (a locked or
  damaged file, a disk error, a bug) left the screen busy for good: every key and every refresh
  was ignored. Now it is an error notification, the screen takes keys again, and a submission that
  did not go through says so and can be sent again (a reviewer's comment is offered again).
- `a` and `x` on an annotate or correct slot, and Enter, a number or `c` on a slot whose labels are
  not choices, did nothing without a word (their bindings were off, so their messages never ran).
  Each now says why, and the footer still shows only the keys that apply.

Failures are injected into :class:`tui.backend.Backend`, the screen's only door to the data.
"""

from __future__ import annotations

import sqlite3

import pytest
from textual.widgets import Static

from router.engine import Engine
from test_tui import NOW, _project, anyio_backend, settle, task  # noqa: F401
from test_tui_work_fix_7 import REVIEWED, events, reviewed_project
from tui.app import LabelyardApp
from tui.backend import Backend
from tui.widgets.modals import InputModal

pytestmark = pytest.mark.anyio


def fail_once(monkeypatch, method: str, error: Exception) -> list[int]:
    """Make ``Backend.<method>`` raise ``error`` on its next call only; returns the list of calls made."""
    original = getattr(Backend, method)
    calls: list[int] = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Backend, method, flaky)
    return calls


def notes(app) -> list[tuple[str, str, str]]:
    return [(n.title, n.message, n.severity) for n in app._notifications]


def head(app) -> str:
    return str(app.screen.query_one("#work-head", Static).render())


# -- a failure that is not a refusal -------------------------------------------------------------------

async def test_a_claim_that_fails_is_told_and_n_claims_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, REVIEWED)
    calls = fail_once(monkeypatch, "claim", sqlite3.OperationalError("disk I/O error"))
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert not screen.busy and screen.view is None  # before: busy for good, every key ignored
        assert ("claim failed", "OperationalError: disk I/O error", "error") in notes(app)
        assert "the claim failed (OperationalError: disk I/O error)" in head(app)
        await pilot.press("n")
        await settle(app, pilot)
        assert len(calls) == 2 and screen.view is not None and screen.view["kind"] == "annotate"


async def test_a_refresh_after_a_failed_claim_reads_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, REVIEWED)
    fail_once(monkeypatch, "resume", RuntimeError("a bug"))
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert ("claim failed", "RuntimeError: a bug", "error") in notes(app)
        app.action_refresh_now()  # what the poller does when the database changes
        await settle(app, pilot)
        assert app.screen.view is not None and app.is_running


async def test_a_submission_that_fails_is_not_lost_and_is_sent_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, REVIEWED)
    calls = fail_once(monkeypatch, "submit", sqlite3.OperationalError("database is locked"))
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        first = screen.view
        await pilot.press("2")  # billing: a choice's key submits it
        await settle(app, pilot)
        assert not screen.busy and screen.view == first  # the slot is still in view
        assert [(t, s) for t, m, s in notes(app) if "not sent" in m] == [("submit failed", "error")]
        assert any("not sent (OperationalError: database is locked)" in m and "press the key again" in m
                   for _, m, _ in notes(app))
        assert task(path, first["external_id"])["annotations"] == []  # nothing went in
        await pilot.press("2")
        await settle(app, pilot)
        assert len(calls) == 2 and screen.view != first
    assert [a["label"] for a in task(path, first["external_id"])["annotations"]] == ["billing"]


async def test_a_rejection_that_fails_offers_its_comment_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = reviewed_project(tmp_path)
    fail_once(monkeypatch, "submit", OSError(5, "Input/output error"))
    app = LabelyardApp(path, "sen", start="work", worker="sen", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert screen.view["kind"] == "review"
        await pilot.press("x")
        await pilot.pause()
        await pilot.press(*"wrong customer", "enter")
        await settle(app, pilot)
        assert app.screen is screen and not screen.busy and screen.view["external_id"] == ref
        assert any("not sent (OSError" in m for _, m, _ in notes(app))
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, InputModal) and app.screen.value == "wrong customer"
        await pilot.press("enter")
        await settle(app, pilot)
    review = [a for a in task(path, ref)["annotations"] if a["worker"] == "sen"]
    assert [(a["verdict"], a["comment"]) for a in review] == [("reject", "wrong customer")]


async def test_a_skip_that_fails_can_be_pressed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, REVIEWED)
    calls = fail_once(monkeypatch, "skip", sqlite3.DatabaseError("database disk image is malformed"))
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        first = screen.view
        await pilot.press("s")
        await settle(app, pilot)
        assert ("skip failed", "error") in [(t, s) for t, m, s in notes(app) if "not sent" in m]
        assert not screen.busy and screen.view == first
        assert "released" not in events(path, first["external_id"])
        await pilot.press("s")
        await settle(app, pilot)
        assert len(calls) == 2
    assert "released" in events(path, first["external_id"])


# -- keys that do nothing on the slot ---------------------------------------------------------------

def shown_actions(app) -> set[str]:
    """The actions the footer shows (Textual's Footer lists the active bindings with show=True)."""
    return {b.binding.action for b in app.active_bindings.values() if b.binding.show}


async def test_approve_and_reject_on_an_annotate_slot_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, REVIEWED)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.screen.view["kind"] == "annotate"
        assert not {"approve", "reject"} & shown_actions(app) and "submit" in shown_actions(app)
        in_key_panel = [b.binding.action for b in app.active_bindings.values() if not b.binding.system]
        assert not [a for a in in_key_panel if a.startswith("why")]  # the keys that explain are not listed
        await pilot.press("a", "x")
        await settle(app, pilot)
        said = [m for _, m, s in notes(app) if s == "warning"]
        assert said == ["approve is for review slots: pick a label", "reject is for review slots: pick a label"]
        assert task(path, app.screen.view["external_id"])["annotations"] == []


NUMBER = REVIEWED.replace("labels: {type: choice, choices: [feature, billing]}",
                          "labels: {type: number, min: 0, max: 10}")


async def test_keys_on_a_number_slot_say_where_the_label_is_made(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, NUMBER)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        view = app.screen.view
        assert view["label_type"] == "number"
        assert not {"submit", "approve", "reject", "pick_choice"} & shown_actions(app)
        await pilot.press("enter", "1", "c", "a")
        await settle(app, pilot)
        how = f"`number` labels are submitted with `labelyard submit {view['assignment']} --value JSON`"
        said = [m for _, m, s in notes(app) if s == "warning"]
        assert said == [f"{how}; this screen shows the data only"] * 3 + [f"approve is for review slots: {how}"]
        assert app.screen.view == view


async def test_keys_with_no_slot_in_view_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, REVIEWED)
    engine = Engine.open(path)
    engine.add_worker("sen", ["senior"], [], None, actor="test")  # nothing waits for review
    engine.close()
    app = LabelyardApp(path, "sen", start="work", worker="sen", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.screen.view is None
        await pilot.press("a", "enter", "s")
        await settle(app, pilot)
        said = [m for _, m, s in notes(app) if s == "warning"]
        assert said == ["no slot in view: n claims work"] * 3


async def test_a_choice_key_past_the_last_choice_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, REVIEWED)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        view = app.screen.view
        await pilot.press("7")
        await settle(app, pilot)
        assert [m for _, m, s in notes(app) if s == "warning"] == ["no choice 7: this task has 2 (c lists them)"]
        assert app.screen.view == view

