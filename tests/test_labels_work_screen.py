"""The work screen lets a reviewer or an expert give an empty ``multi_choice`` label ("none of these"),
as annotators can: Enter with nothing picked opens the comment box naming the label (Escape goes
back, nothing sent), and Enter there submits ``[]``. Pilot-driven on a real SQLite file."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from router.engine import Engine
from test_tui import NOW, _project, anyio_backend, settle, task  # noqa: F401
from tui.app import LabelyardApp
from tui.widgets.modals import InputModal

pytestmark = pytest.mark.anyio

WORKFLOW = """\
workflow: tags
labels: {type: multi_choice, choices: [red, green, blue]}
queues:
  q: {roles: [annotator]}
  senior: {roles: [senior]}
  experts: {roles: [expert]}
on_create:
  - do: {annotate: q, overlap: 1}
on_quorum:
  - do: {%s: %s}
on_review:
  - do: accept
"""


def voted(tmp_path, action: str, queue: str, judge: str, role: str) -> str:
    """A project whose first task has ann's vote `[red]` and waits in `queue` for `judge`."""
    path = _project(tmp_path, WORKFLOW % (action, queue))
    engine = Engine.open(path)
    try:
        engine.add_worker(judge, [role], [], None, actor="test")
        slot = engine.claim("ann")
        engine.submit(slot["assignment"], "ann", label=["red"])
        return slot["external_id"]
    finally:
        engine.close()


@pytest.mark.parametrize("action, queue, judge, role, final_by", [
    ("review", "senior", "sam", "senior", "reviewer"),
    ("escalate", "experts", "eve", "expert", "expert"),
])
async def test_enter_with_nothing_picked_settles_the_task_as_none_of_these(tmp_path, monkeypatch, action, queue,
                                                                           judge, role, final_by):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    ref = voted(tmp_path, action, queue, judge, role)
    path = str(tmp_path / "p.db")
    app = LabelyardApp(path, judge, start="work", worker=judge, poll_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert screen.view["external_id"] == ref and screen.view["kind"] in ("review", "escalated")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, InputModal) and "none of these" in app.screen.prompt
        await pilot.press("escape")  # the guard: going back sends nothing
        await settle(app, pilot)
        assert app.screen is screen and task(path, ref)["task"]["status"] == "open"
        assert "none picked = none of these" in str(screen.query_one("#work-choices", Static).render())
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press(*"no colour at all", "enter")
        await settle(app, pilot)
    t = task(path, ref)
    assert (t["task"]["status"], t["task"]["final_by"], t["task"]["final_label"]) == ("done", final_by, [])
    assert t["reviews"][-1]["comment"] == "no colour at all"


async def test_a_picked_label_is_named_in_the_comment_box(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    ref = voted(tmp_path, "review", "senior", "sam", "senior")
    path = str(tmp_path / "p.db")
    app = LabelyardApp(path, "sam", start="work", worker="sam", poll_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("3", "2", "enter")
        await pilot.pause()
        assert isinstance(app.screen, InputModal) and '["green", "blue"]' in app.screen.prompt
        await pilot.press("enter")
        await settle(app, pilot)
    assert task(path, ref)["task"]["final_label"] == ["green", "blue"]
