"""Text from the database and the workflow is shown as written on every screen: brackets are not
markup (a stray ``[/]`` once crashed the app, ``[red]…`` coloured and ``[link=…]`` linked), and
control characters reach the terminal only as visible ``\\xNN`` escapes (an escape sequence in an
external id could retitle the window or clear the screen). Pilot-driven on a real SQLite file."""

from __future__ import annotations

import html
import json
import re

import pytest
from textual.widgets import DataTable, Static

from router.engine import Engine
from router.ingest import read_file
from router.store import Store
from test_tui import LEAD, NOW, Recorder, anyio_backend, db, demo_template, settle  # noqa: F401
from tui.app import LabelyardApp
from tui.messages import ActionFailed, Submitted
from tui.screens.detail import TaskDetailScreen
from tui.screens.tasks import TasksScreen
from tui.widgets.modals import PickModal

pytestmark = pytest.mark.anyio

# YAML escapes: \e is ESC, \a is BEL; "\\d" is a backslash and d.
WORKFLOW = r'''
workflow: hostile
description: "brackets [b]bold?[/] and \e]0;PWNED\a a title"
labels: {type: choice, choices: ["[/]", "[red]RED[/red]", "plain"]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: "sure [/i] thing"
    when: prediction.confidence >= 0.95
    do: accept
  - name: "dates [/-]"
    when: matches(task.data.subject, "\\d{1,2}[/-]\\d{1,2}")
    do: {annotate: q, overlap: 1}
  - name: default
    do: {annotate: q, overlap: 1}
'''

ESC_ID = "E2-\x1b]0;PWNED\x1b\\-\x1b[2J-BLINK"
IDS = ["[/]", "[red]RED[/red]", "[link=file:///etc/passwd]click[/link]", ESC_ID, "C1-\x9b2J-\x7f",
       "[$accent]var", "ends with \\"]
ACCEPTED = "[@click=app.quit]final"  # accepted at once: its final label is "[red]RED[/red]"
PAUSED = "[/]"  # a worker name, with skills and a pause reason as hostile
REASON = "back 3/4 [/w] \x1b[2J"
ANNOTATOR = "[i]ann\x1b[5m"
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """How the screen writes ``text``: control characters as ``\\xNN``."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def screen_text(app) -> str:
    """What the terminal shows, one line per row (the screenshot's text); nothing raw in it."""
    svg = app.export_screenshot()
    assert not RAW.search(svg), RAW.search(svg)
    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(m.group(2)), []).append((float(m.group(1)), html.unescape(m.group(3))))
    return "\n".join("".join(t for _, t in sorted(parts)).replace("\xa0", " ") for _, parts in sorted(rows.items()))


def cells(table: DataTable) -> list[str]:
    return [str(c) for i in range(table.row_count) for c in table.get_row_at(i)]


def styled(table: DataTable) -> bool:
    """Whether a data cell came out with a style or a link from its text (markup read)."""
    return any(getattr(c, "spans", None) for i in range(table.row_count) for c in table.get_row_at(i)[1:3])


@pytest.fixture
def hostile_db(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = str(tmp_path / "hostile.db")
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(WORKFLOW, "hostile.workflow.yaml", actor="test")
    engine.add_worker(LEAD, ["lead"], [], None, actor="test")
    with store.transaction():  # add_worker refuses control characters now; older databases may hold them
        store.upsert_worker(PAUSED, ["annotator"], sorted(["[b]", "\x1b[31mred"]), None, 0.0)
        store.upsert_worker(ANNOTATOR, ["annotator"], [], None, 0.0)
    engine.set_worker_paused(PAUSED, True, REASON, actor=LEAD)
    inbox = tmp_path / "in.jsonl"
    # ingest refuses control characters in ids now; older databases and plugins' tasks may have them
    controls = {f"placeholder-{i}": ext for i, ext in enumerate(IDS) if RAW.search(ext)}
    plain_ids = [next((k for k, v in controls.items() if v == ext), ext) for ext in IDS]
    rows = [{"id": ext, "data": {"subject": f"due 12/31 {ext}", "note": "C1 \x9b31m DEL \x7f"},
             "prediction": {"label": "[/]", "confidence": 0.5}} for ext in plain_ids]
    rows.append({"id": ACCEPTED, "data": {"subject": "x"},
                 "prediction": {"label": "[red]RED[/red]", "confidence": 0.99}})
    inbox.write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    with store.transaction():
        for placeholder, ext in controls.items():
            store.update_task(store.task(f"ext:{placeholder}")["id"], external_id=ext)
    engine.close()
    return path


async def test_every_lead_screen_shows_hostile_text_as_written(hostile_db):
    rec = Recorder()
    app = LabelyardApp(hostile_db, LEAD, poll_interval=None)
    async with app.run_test(size=(200, 50), message_hook=rec) as pilot:
        await settle(app, pilot)
        # dashboard: the pause reason in the alerts, the worker in the table
        assert visible(f"▲ {PAUSED} is paused: {REASON}") in str(app.screen.query_one("#alerts", Static).render())
        assert PAUSED in cells(app.screen.query_one("#workers", DataTable))
        assert visible(REASON) in screen_text(app)

        # tasks: external ids and final labels as written, unstyled, unlinked
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        table = screen.query_one(DataTable)
        shown = cells(table)
        assert {visible(x) for x in IDS} | {"[red]RED[/red]"} <= set(shown) and not styled(table)
        text = screen_text(app)
        assert "[link=file:///etc/passwd]click[/link]" in text and visible(ESC_ID) in text and "[$accent]var" in text
        # the search box takes brackets; the filter line shows them
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"[/]", "enter")
        await settle(app, pilot)
        assert screen.filter.text == "[/]" and "text=[/]" in str(screen.query_one("#task-filter", Static).render())
        assert {r["external_id"] for r in screen.rows} == {"[/]"}
        screen.set_filter(screen.filter.with_(text=None))
        await settle(app, pilot)

        # a task's detail: the escape sequence in its id, the C1 and DEL in its data
        table.move_cursor(row=[r["external_id"] for r in screen.rows].index(ESC_ID))
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TaskDetailScreen)
        assert visible(ESC_ID) in str(app.screen.query_one("#detail-head", Static).render())
        assert "C1 \\x9b31m DEL \\x7f" in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)

        # pickers: workers by name (filter by worker, reassign candidates)
        await pilot.press("k")
        await pilot.pause()
        assert isinstance(app.screen, PickModal) and visible(ANNOTATOR) in screen_text(app)
        await pilot.press("escape")
        await pilot.press("r")
        await settle(app, pilot)
        assert isinstance(app.screen, PickModal) and PAUSED in {k for k, _ in app.screen.items}
        screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, TasksScreen)

        # a refused action's message quotes the task: a notification, as text
        table.move_cursor(row=[r["external_id"] for r in screen.rows].index(ACCEPTED))
        await pilot.press("h", "enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        assert rec.of(ActionFailed)
        screen_text(app)

        # workers roster: name, skills and reason
        await pilot.press("w")
        await settle(app, pilot)
        roster = cells(app.screen.query_one(DataTable))
        # as `workers list` writes them: a skill with an ESC quoted, its escape JSON's
        assert PAUSED in roster and '"\\u001b[31mred",[b]' in roster and visible(f"paused: {REASON}") in roster
        assert '"[i]ann\\u001b[5m"' in roster
        screen_text(app)

        # workflow: rule names, the regular expression with [/-], the description and YAML
        await pilot.press("f")
        await settle(app, pilot)
        rules = cells(app.screen.query_one(DataTable))
        assert "sure [/i] thing" in rules and "dates [/-]" in rules
        assert any("[/-]" in c and "matches" in c for c in rules)
        assert "\\x1b]0;PWNED\\x07" in str(app.screen.query_one("#workflow-head", Static).render())
        await pilot.press("y")
        await settle(app, pilot)
        assert "[red]RED[/red]" in str(app.screen.query_one("#yaml", Static).render())
        screen_text(app)


async def test_a_pause_reason_typed_in_the_tui_shows_on_the_dashboard(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("w")
        await settle(app, pilot)
        table = app.screen.query_one(DataTable)
        table.move_cursor(row=[str(k.value) for k in table.rows].index("bob"))
        await pilot.press("x")
        await pilot.pause()
        await pilot.press(*"[/]", "enter")
        await settle(app, pilot)
        await pilot.press("d")
        await settle(app, pilot)
        assert "bob is paused: [/]" in str(app.screen.query_one("#alerts", Static).render())
        screen_text(app)


async def test_the_work_screen_shows_hostile_text_as_written(hostile_db):
    rec = Recorder()
    app = LabelyardApp(hostile_db, ANNOTATOR, start="work", worker=ANNOTATOR, poll_interval=None)
    async with app.run_test(size=(160, 40), message_hook=rec) as pilot:
        await settle(app, pilot)
        screen = app.screen
        view = screen.view
        head = str(screen.query_one("#work-head", Static).render())
        assert visible(ANNOTATOR) in head and visible(view["external_id"]) in head
        assert "C1 \\x9b31m DEL \\x7f" in str(screen.query_one("#work-data", Static).render())
        choices = str(screen.query_one("#work-choices", Static).render())
        assert "1 [/]" in choices and "2 [red]RED[/red]" in choices
        screen_text(app)
        await pilot.press("2")  # the label "[red]RED[/red]"; the notice names the rule "dates [/-]"
        await settle(app, pilot)
        [done] = rec.of(Submitted)
        assert done.result["decision"]["rule"]
        screen_text(app)
    store = Store.open(hostile_db)
    try:
        assert json.loads(store.task(f"id:{view['task']}")["final_label"]) == "[red]RED[/red]"
    finally:
        store.close()
