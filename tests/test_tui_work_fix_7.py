"""Work-screen and lead-dialog fixes, driven with Textual's pilot on real database files.

- A reviewer who picked a corrected label and pressed `a` had the correction dropped: the task
  was made final with the label they had just overruled. `a` now approves with the pick.
- `s` on a correction slot gave it straight back (released, offered, claimed again), each press
  counted as a skip. It is refused with what to do instead.
- Keys that do nothing on a slot say why; a mistyped priority is asked again with the text kept;
  dialogs name a task by its external id beside `id:N`.
"""

from __future__ import annotations

import pytest

from router.engine import Engine
from router.store import Store
from test_tui import LEAD, NOW, _project, anyio_backend, settle, task  # noqa: F401
from tui.app import LabelyardApp
from tui.widgets.modals import ConfirmModal, InputModal

pytestmark = pytest.mark.anyio

REVIEWED = """\
workflow: reviewed
labels: {type: choice, choices: [feature, billing]}
queues:
  q: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - do: {annotate: q, overlap: 1}
on_quorum:
  - do: {review: senior}
on_review:
  - {name: approved, when: review.verdict == "approve", do: accept}
  - {name: rejected, do: {return: annotators}}
"""


def reviewed_project(tmp_path, *, rejected: bool = False) -> tuple[str, str]:
    """A task annotated `feature` by ann and waiting for review (or returned to ann for correction)."""
    path = _project(tmp_path, REVIEWED)
    engine = Engine.open(path)
    engine.add_worker("sen", ["senior"], [], None, actor=LEAD)
    view = engine.claim("ann")
    engine.submit(view["assignment"], "ann", label="feature")
    if rejected:
        review = engine.claim("sen")
        engine.submit(review["assignment"], "sen", verdict="reject", comment="look again")
    engine.close()
    return path, view["external_id"]


def events(path: str, ref: str) -> list[str]:
    store = Store.open(path)
    try:
        task_id = store.task(ref)["id"]
        return [e["kind"] for e in store.query("SELECT kind FROM events WHERE task_id = ? ORDER BY id", (task_id,))]
    finally:
        store.close()


async def test_approve_with_a_picked_choice_approves_with_that_correction(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = reviewed_project(tmp_path)
    app = LabelyardApp(path, "sen", start="work", worker="sen", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.screen.view["kind"] == "review" and app.screen.view["external_id"] == ref
        await pilot.press("2", "a")  # billing, then approve
        await settle(app, pilot)
    t = task(path, ref)
    assert (t["task"]["status"], t["task"]["final_label"]) == ("done", "billing")
    review = [a for a in t["annotations"] if a["worker"] == "sen"]
    assert [(a["verdict"], a["label"]) for a in review] == [("approve", "billing")]


async def test_skip_on_a_correction_is_refused_and_the_slot_stays(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = reviewed_project(tmp_path, rejected=True)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        first = screen.view
        assert first["kind"] == "correct" and first["external_id"] == ref
        before = events(path, ref)
        await pilot.press("s", "s")
        await settle(app, pilot)
        assert screen.view["assignment"] == first["assignment"]
        assert events(path, ref) == before  # no release, no claim: nothing counted as a skip
        notes = [n.message for n in app._notifications]
        assert any("a correction comes back to you" in n for n in notes), notes
        await pilot.press("enter")  # nothing picked: said
        await settle(app, pilot)
        assert any("pick a label" in n.message for n in app._notifications)
        shown = {b.binding.action for b in app.active_bindings.values()}
        assert "submit" in shown and not {"approve", "reject"} & shown  # the footer offers what applies


async def test_the_footer_offers_approve_and_reject_on_a_review(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, _ = reviewed_project(tmp_path)
    app = LabelyardApp(path, "sen", start="work", worker="sen", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        shown = {b.binding.action for b in app.active_bindings.values()}
        assert {"approve", "reject", "skip", "submit"} <= shown


async def test_a_mistyped_priority_is_asked_again_and_dialogs_name_the_task(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, REVIEWED)
    app = LabelyardApp(path, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        ref = app.screen.rows[0]["external_id"]
        await pilot.press("P", *"abc", "enter")
        await settle(app, pilot)
        modal = app.screen
        assert isinstance(modal, InputModal) and modal.value == "abc"
        assert f"{ref} (id:" in modal.prompt
        await pilot.press("backspace", "backspace", "backspace", "7", "enter")
        await settle(app, pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmModal)
        assert confirm.question.startswith(f"Set the priority of task {ref} (id:") and confirm.question.endswith(" to 7?")
