"""The TUI where the twelfth session's tester left it, on real SQLite files, through Textual's pilot
(``LABELYARD_NOW`` for the time, no sleeps but pilot pauses).

1. The workers screen joined roles with bare commas: the one role `qa, senior` read like two roles.
   It writes roles and skills as ``labelyard workers list`` does (``router.render.name_list``), and
   so does the workflow screen's list of queues.
"""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from router.engine import Engine
from router.store import Store
from test_tui import LEAD, NOW, anyio_backend, settle  # noqa: F401
from tui.app import LabelyardApp

WORKFLOW = """\
workflow: s12
labels: {type: choice, choices: [cat, dog]}
queues:
  q: {roles: [annotator]}
  review: {roles: ["qa, senior", lead], skills: ["x,y"]}
on_create:
  - do: {annotate: q, overlap: 1}
"""


def project(path: str) -> None:
    """An empty project with the workflow applied and the lead LEAD."""
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(WORKFLOW, "s12.workflow.yaml", actor=LEAD)
    engine.add_worker(LEAD, ["lead"], [], None, actor=LEAD)
    engine.close()


@pytest.fixture
def db(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = str(tmp_path / "labelyard.db")
    project(path)
    return path


def row(table: DataTable, key: str) -> list[str]:
    return [str(cell) for cell in table.get_row(key)]


# -- 1. a role holding a comma ---------------------------------------------------------------------

@pytest.mark.anyio
async def test_the_workers_screen_writes_a_role_with_a_comma_as_workers_list_does(db, run):
    engine = Engine.open(db)
    engine.add_worker("q1", ["qa, senior", "annotator"], ["x,y", "-"], None, actor=LEAD)
    engine.add_worker("q2", ["qa", "senior"], [], None, actor=LEAD)
    engine.close()
    listed = run.ok("workers", "list", env={"LABELYARD_DB": db}).stdout
    lines = {line.split()[0]: line for line in listed.splitlines()}
    assert 'roles=annotator,"qa, senior" skills="-","x,y"' in lines["q1"]
    assert "roles=qa,senior skills=-" in lines["q2"]
    app = LabelyardApp(db, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        roster = app.screen.query_one("#roster", DataTable)
        for name in ("q1", "q2"):
            roles, skills = row(roster, name)[1:3]
            assert f"roles={roles} skills={skills} " in lines[name], (name, roles, skills)
        assert row(roster, "q1")[1:3] == ['annotator,"qa, senior"', '"-","x,y"']  # before: annotator,qa, senior
        await pilot.press("f")
        await settle(app, pilot)
        head = str(app.screen.query_one("#workflow-head", Static).render())
        assert 'review ("qa, senior",lead +"x,y")' in head, head
