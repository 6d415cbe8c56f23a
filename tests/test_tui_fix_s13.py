"""The TUI where the thirteenth session's tester left it, driven with Textual's pilot on real SQLite
files (``LABELYARD_NOW`` for the time, no sleeps but pilot pauses; work is counted, never timed).

1. Label and worker-name columns were never cut: one long prediction, final label or worker name
   pushed every other column off screen. They are cut (``fmt.cut``) like the external id.
2. The dashboard opened with the focus on its page scroll: the arrows scrolled the page and Enter
   always opened the first queue. The queues table has the focus on open and on return.
3. The task detail wrote out and laid out the whole data on the event loop: an object of 40,000 keys
   froze the app for ~10 s. The data is written in the reading thread and the detail shows its first
   ``DATA_LINES`` lines / ``DATA_CHARS`` characters, saying how big it is and that `labelyard show`
   prints it whole; the test counts the lines laid out.
4. After one failed page read the status line said "page 2 · loading…" for good and `n`/`p` did
   nothing. The list goes back to the page on screen (the notice tells the error) and pages on.
5. A search over exactly ``SEARCH_ROWS`` tasks said "n searches on", and `n` gave an empty last
   page: when the stretch's cap falls on the list's last task, one row by keyset says it ended.
6. The priority dialog asked "to nan?", "to inf?" or "to 2e+15?" and the value was refused only after
   the lead said yes. It is refused at once, with the CLI's message, and asked again as typed.
7. A prediction with a confidence but no label: the list showed its confidence, `show` its line, and
   the detail nothing at all. The detail has its line: "prediction (no label) confidence 0.50 model m1".
"""

from __future__ import annotations

import json
import os

import pytest
from rich.cells import cell_len
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Input, Static

import router.queries as queries_module
from router.engine import Engine
from router.ingest import read_file
from router.queries import Queries, TaskFilter
from router.store import Store
from test_tui import LEAD, NOW, anyio_backend, db, demo_template, settle  # noqa: F401
from test_tui_fix_s12 import fill, tasks
from test_tui_fix_s12 import project as s12_project
from tui.app import LabelyardApp
from tui.screens.detail import TaskDetailScreen
from tui.screens.tasks import TasksScreen
from tui.widgets.format import DATA_CHARS, DATA_LINES
from tui.widgets.modals import ConfirmModal, InputModal
from tui.widgets.tables import LABEL_WIDTH, NAME_WIDTH

pytestmark = pytest.mark.anyio

WORKFLOW = """\
workflow: s13
labels: {type: text}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: sure, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q, overlap: 1}}
on_quorum:
  - {name: done, do: accept}
"""

LONG_LABEL = "a long model answer " * 20
LONG_NAME = "w" * 300


def project(tmp_path, rows: list[dict], workflow: str = WORKFLOW) -> str:
    """A project with ``workflow`` applied, the lead LEAD, the annotator ann, and ``rows`` ingested."""
    path = str(tmp_path / "p.db")
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(workflow, "s13.workflow.yaml", actor=LEAD)
    engine.add_worker(LEAD, ["lead"], [], None, actor=LEAD)
    engine.add_worker("ann", ["annotator"], [], None, actor=LEAD)
    if rows:
        inbox = tmp_path / "in.jsonl"
        inbox.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    engine.close()
    return path


@pytest.fixture
def now(monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)


def header(table: DataTable) -> str:
    return "".join(seg.text for seg in table.render_line(0)).rstrip()


# -- 1. long labels and worker names are cut --------------------------------------------------------------

async def test_long_labels_and_worker_names_are_cut_and_every_column_stays_on_screen(tmp_path, now):
    path = project(tmp_path, [{"id": "T-1", "data": {"t": "x"}, "prediction": {"label": LONG_LABEL, "confidence": 0.5}},
                              {"id": "T-2", "data": {"t": "y"}, "prediction": {"label": LONG_LABEL, "confidence": 0.95}}])
    engine = Engine.open(path)
    engine.add_worker(LONG_NAME, ["annotator"], [], None, actor=LEAD)
    engine.close()
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(app, pilot)
        workers = app.screen.query_one("#workers", DataTable)
        cell = workers.get_row(LONG_NAME)[0]
        assert cell_len(cell.plain) <= NAME_WIDTH and cell.plain.endswith("…") and cell.plain.startswith("w" * 10)
        assert workers.get_row("ann")[0].plain == "ann"
        assert sum(c.get_render_width(workers) for c in workers.ordered_columns) <= 140
        assert header(workers).endswith("state")

        await pilot.press("t")
        await settle(app, pilot)
        tasks = app.screen.query_one("#tasks", DataTable)
        names = [str(c.label) for c in tasks.ordered_columns]
        pred, final = tasks.get_row("id:1")[names.index("pred")], tasks.get_row("id:2")[names.index("final")]
        for cell in (pred, final):
            assert cell_len(cell.plain) <= LABEL_WIDTH and cell.plain.endswith("…")
            assert cell.plain.startswith("a long model answer")
        widths = [c.get_render_width(tasks) for c in tasks.ordered_columns]
        assert sum(widths) <= 140, widths
        assert header(tasks).endswith("age")

        await pilot.press("w")
        await settle(app, pilot)
        roster = app.screen.query_one("#roster", DataTable)
        cell = roster.get_row(LONG_NAME)[0]
        assert cell_len(cell.plain) <= NAME_WIDTH and cell.plain.endswith("…")
        assert header(roster).endswith("state")


# -- 2. the dashboard's keys go to the queues -------------------------------------------------------------

QUEUES_WORKFLOW = """\
workflow: s13q
labels: {type: text}
queues:
  first: {roles: [annotator]}
  second: {roles: [annotator]}
  third: {roles: [annotator]}
on_create:
  - {name: default, do: {annotate: first, overlap: 1}}
on_quorum:
  - {name: done, do: accept}
"""


async def test_the_dashboard_opens_and_comes_back_with_the_queues_focused(tmp_path, now):
    path = project(tmp_path, [{"id": "T-1", "data": {"t": "x"}}], QUEUES_WORKFLOW)
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        queues = app.screen.query_one("#queues", DataTable)
        assert app.focused is queues
        shown = [b.binding.description for b in app.active_bindings.values() if b.binding.show]
        assert "Queue's tasks" in shown  # the focused table's own Enter does not hide the key from the footer
        await pilot.press("down", "down", "enter")  # no focus given by hand: the keys a lead presses
        await settle(app, pilot)
        assert isinstance(app.screen, TasksScreen) and app.screen.filter.queue == "third"
        await pilot.press("d")
        await settle(app, pilot)
        assert app.focused is queues and queues.cursor_row == 2
        await pilot.press("up", "enter")
        await settle(app, pilot)
        assert app.screen.filter.queue == "second"
        # a click on the page gave the focus to its scroll: back on the dashboard, the queues have it again
        await pilot.press("d")
        await settle(app, pilot)
        app.screen.query_one(VerticalScroll).focus()
        await pilot.press("t", "d")
        await settle(app, pilot)
        assert app.focused is queues
        # the workers table keeps the focus it was given
        await pilot.press("tab")
        assert app.focused is app.screen.query_one("#workers", DataTable)
        await pilot.press("t", "d")
        await settle(app, pilot)
        assert app.focused is app.screen.query_one("#workers", DataTable)


# -- 3. big data on the detail screen ---------------------------------------------------------------------

async def test_the_detail_shows_a_bounded_part_of_big_data_and_says_how_to_see_it_whole(tmp_path, now):
    keys = {f"k{i}": i for i in range(5_000)}  # 5,002 lines of indented JSON
    path = project(tmp_path, [{"id": "many", "data": keys}, {"id": "blob", "data": {"blob": "x" * 300_000}},
                              {"id": "small", "data": {"t": "hello"}}])
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        shown = {}
        for ref in ("many", "blob", "small"):
            app.push_screen(TaskDetailScreen(f"ext:{ref}"))
            await settle(app, pilot)
            body = app.screen.query_one("#detail-body", Static)
            shown[ref] = (str(body.render()), body.size.height)  # the lines laid out, the work done
            await pilot.press("escape")
            await settle(app, pilot)
    text, height = shown["many"]
    assert height <= DATA_LINES + 10 and len(text) <= DATA_CHARS + 1_000, height
    assert '  "k0": 0,' in text and '"k197"' in text and '"k4999"' not in text
    assert "… cut here: the data is 82,782 characters in 5,002 lines; `labelyard show id:1` prints it whole" in text
    text, height = shown["blob"]  # one line of 300,000 characters: cut by characters
    assert height <= DATA_LINES + 10 and len(text) <= DATA_CHARS + 1_000, height
    assert "the data is 300,016 characters in 3 lines; `labelyard show id:2` prints it whole" in text
    text, height = shown["small"]
    assert text.startswith('data\n{\n  "t": "hello"\n}\nvotes (0)') and "cut here" not in text and height < 20


# -- 4. a failed page read -------------------------------------------------------------------------------

def status_line(app) -> str:
    return str(app.screen.query_one("#task-status", Static).render())


def errors(app) -> list[str]:
    said = [f"{n.title}: {n.message}" for n in app._notifications if n.severity == "error"]
    app._notifications.clear()
    return said


async def test_after_a_failed_page_read_the_list_shows_its_page_and_pages_on(db):
    app = LabelyardApp(db, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        first = [r["id"] for r in screen.rows]
        assert status_line(app) == "page 1 · 50 rows of 300"
        os.rename(db, db + ".away")  # one read fails (the file moved away for a moment)
        await pilot.press("n")
        await settle(app, pilot)
        assert [e.split(":")[0] for e in errors(app)] == ["tasks failed"]
        assert status_line(app) == "page 1 · 50 rows of 300" and [r["id"] for r in screen.rows] == first
        os.rename(db + ".away", db)  # back
        await pilot.press("n")
        await settle(app, pilot)
        assert status_line(app) == "page 2 · 50 rows of 300" and screen.rows[0]["id"] == first[-1] - 1
        await pilot.press("pagedown")
        await settle(app, pilot)
        assert status_line(app) == "page 3 · 50 rows of 300" and screen.rows[0]["id"] == first[-1] - 51
        # a new filter that fails: the list is the filter on screen again, and pages from it
        os.rename(db, db + ".away")
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one("#pick-list").highlighted = 2  # (any), open, held
        await pilot.press("enter")
        await settle(app, pilot)
        assert errors(app) and screen.filter.status is None and status_line(app) == "page 3 · 50 rows of 300"
        os.rename(db + ".away", db)
        await pilot.press("p")
        await settle(app, pilot)
        assert status_line(app) == "page 2 · 50 rows of 300" and screen.rows[0]["id"] == first[-1] - 1
        assert errors(app) == []


async def test_a_first_page_that_fails_says_so_and_ctrl_r_reads_it_again(db):
    app = LabelyardApp(db, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        os.rename(db, db + ".away")
        await pilot.press("t")
        await settle(app, pilot)
        assert "tasks failed" in " ".join(errors(app))
        assert status_line(app) == "page 1 · not read (the error is in the notice); ctrl+r reads it again"
        os.rename(db + ".away", db)
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert status_line(app) == "page 1 · 50 rows of 300" and len(app.screen.rows) == 50


# -- 5. a search whose stretch ends on the list's last task ------------------------------------------------

@pytest.fixture
def small_search(monkeypatch):
    """Search pages of at most 1,000 tasks, progress every 250."""
    monkeypatch.setattr(queries_module, "SEARCH_ROWS", 1_000)
    monkeypatch.setattr(queries_module, "SEARCH_STEP", 250)


@pytest.mark.parametrize("n, more", [(1_000, False), (1_001, True), (999, False)])
def test_a_search_stretch_that_reads_the_last_task_is_the_last_page(tmp_path, now, small_search, n, more):
    path = str(tmp_path / "s.db")
    s12_project(path)
    fill(path, tasks(n))
    q = Queries.open(path)
    try:
        for order in ("id", "priority"):
            for text in ("zzz", "ticket 777"):  # no match; one
                page = q.task_page(TaskFilter(text=text, order=order))
                assert page.searched == min(n, 1_000) and len(page.rows) < 50
                assert (page.next_after is not None) is more, (order, text)
                if more:  # `n` reads the one task left
                    last = q.task_page(TaskFilter(text=text, order=order), page.next_after)
                    assert last.searched == 1 and last.next_after is None
    finally:
        q.store.close()


async def test_the_task_list_says_last_page_when_a_search_read_every_task(tmp_path, now, small_search):
    path = str(tmp_path / "s.db")
    s12_project(path)
    fill(path, tasks(1_000))
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"zzz", "enter")
        await settle(app, pilot)
        assert status_line(app) == "page 1 · 0 rows of ? (last page)"
        await pilot.press("n")
        await settle(app, pilot)
        assert status_line(app) == "page 1 · 0 rows of ? (last page)"


# -- 6. a priority out of bounds is refused before the question ---------------------------------------------

async def test_the_priority_dialog_refuses_nan_inf_and_numbers_past_the_bounds_before_asking(db, run):
    for typed in ("nan", "inf", "2e15"):
        said = run("--db", db, "priority", "T-00300", typed, env={"LABELYARD_WORKER": LEAD})
        assert said.returncode == 2 and "the priority must be a number from -1e15 to 1e15, not " in said.stderr
    app = LabelyardApp(db, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        before = app.screen.rows[0]
        await pilot.press("P")
        await settle(app, pilot)
        for typed, shown in (("nan", "nan"), ("inf", "inf"), ("2e15", "2e+15"), ("-1e16", "-1e+16")):
            app.screen.query_one(Input).value = ""
            await pilot.press(*typed, "enter")
            await settle(app, pilot)
            assert isinstance(app.screen, InputModal), typed  # asked again, not "to nan?"
            assert app.screen.query_one(Input).value == typed
            assert errors(app) == [f": the priority must be a number from -1e15 to 1e15, not {shown}"]
        app.screen.query_one(Input).value = ""
        await pilot.press(*"1e15", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmModal) and app.screen.question.endswith(" to 1e+15?")
        await pilot.press("y")
        await settle(app, pilot)
    q = Queries.open(db)
    assert q.task_detail(f"id:{before['id']}")["task"]["priority"] == 1e15
    q.store.close()


# -- 7. a prediction without a label ---------------------------------------------------------------------

async def test_the_detail_shows_a_prediction_that_has_a_confidence_but_no_label(tmp_path, now, run):
    path = project(tmp_path, [{"id": "p5", "data": {"a": 1}, "prediction": {"confidence": 0.5, "model": "m1"}},
                              {"id": "m", "data": {"a": 2}, "prediction": {"model": "m2"}},
                              {"id": "none", "data": {"a": 3}}])
    shown = run.ok("show", "p5", env={"LABELYARD_DB": path}).stdout
    assert "prediction: null confidence=0.5 model=m1" in shown
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        tasks = app.screen.query_one("#tasks", DataTable)
        names = [str(c.label) for c in tasks.ordered_columns]
        assert str(tasks.get_row("id:1")[names.index("conf")]) == "0.50"
        said = {}
        for ref in ("p5", "m", "none"):
            app.push_screen(TaskDetailScreen(f"ext:{ref}"))
            await settle(app, pilot)
            body = str(app.screen.query_one("#detail-body", Static).render())
            said[ref] = [line for line in body.splitlines() if line.startswith("prediction")]
            await pilot.press("escape")
            await settle(app, pilot)
    assert said == {"p5": ["prediction (no label) confidence 0.50 model m1"],
                    "m": ["prediction (no label) confidence - model m2"], "none": []}


async def test_a_detail_read_that_a_newer_one_replaced_never_overwrites_it(tmp_path, now, run, monkeypatch):
    # Under load, a read begun before a lead's action committed could end after the read that
    # followed the action: the detail head then showed the task as it was before (CI saw it).
    import threading

    path = project(tmp_path, [{"id": "p5", "data": {"a": 1}}])
    release_first = threading.Event()
    first = threading.Event()
    real = Queries.task_detail

    def task_detail(self, ref):
        if not first.is_set():
            first.set()
            stale = real(self, ref)
            stale["task"] = {**stale["task"], "priority": -7.0}  # as it was before the action
            release_first.wait(10)
            return stale
        return real(self, ref)

    monkeypatch.setattr(Queries, "task_detail", task_detail)
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.push_screen(TaskDetailScreen("ext:p5"))
        await pilot.pause()
        detail = app.screen
        assert first.wait(10)
        detail.reload()  # the newer read: its answer arrives first
        for _ in range(50):
            await pilot.pause()
            if "priority 0.00" in str(detail.query_one("#detail-head", Static).render()):
                break
        assert "priority 0.00" in str(detail.query_one("#detail-head", Static).render())
        release_first.set()  # now the older read ends
        await settle(app, pilot)
        assert "priority 0.00" in str(detail.query_one("#detail-head", Static).render())
