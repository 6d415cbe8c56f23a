"""The annotator's side where the fourteenth session's tester left it (real SQLite files; the CLI as
a real ``labelyard`` process; the TUI through Textual's pilot; ``LABELYARD_NOW`` for the time; work
is counted, never timed).

1. ``labelyard work`` wrote a task's whole data out and laid it out on the event loop: an object of
   40,000 keys took no key for ~20 s. The work screen shows the data as the task detail does (one
   helper, :func:`tui.widgets.format.shown_data`, called in the thread that read the slot): its
   first ``DATA_LINES`` lines / ``DATA_CHARS`` characters and a line naming its size and
   ``labelyard show``.
2. ``show``/``explain`` said "no worker may take it from `q`: al, bo holds a slot of it": a reason
   said of several workers is said in the plural ("al, bo hold slots of it").
3. ``submit abc`` said "'abc' is not a valid integer range"; every whole-number argument says
   "'abc' is not a whole number.".
4. The dashboard's worker table said "paused" alone for a worker paused and flagged; it says
   "paused: too fast · flagged" as the workers screen does.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from textual.widgets import DataTable, Static

import tui.widgets.format as fmt_module
from lead_support import Project
from router.engine import Engine
from test_tui import LEAD, NOW, anyio_backend, settle  # noqa: F401
from test_tui_fix_s13 import project
from tui.app import LabelyardApp
from tui.screens.work import WorkScreen
from tui.widgets.format import DATA_CHARS, DATA_LINES

WORKFLOW = """\
workflow: work14
labels: {type: choice, choices: [yes, no]}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: default, do: {annotate: q, overlap: 1}}
on_quorum:
  - {name: done, do: accept}
"""


@pytest.fixture
def now(monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


# -- 1. big data on the work screen ----------------------------------------------------------------------

class GatedShownData:
    """:func:`tui.widgets.format.shown_data`, recording whether each call ran on the event loop's
    thread; the first call waits for :attr:`gate` (the load of a big task still under way)."""

    def __init__(self, real):
        self.real = real
        self.on_main_thread: list[bool] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, data, task_id):
        self.on_main_thread.append(threading.current_thread() is threading.main_thread())
        if not self.entered.is_set():
            self.entered.set()
            self.gate.wait(timeout=60)
        return self.real(data, task_id)


@pytest.mark.anyio
async def test_the_work_screen_cuts_big_data_in_the_reading_thread_and_answers_keys_meanwhile(
        tmp_path, now, monkeypatch):
    keys = {f"k{i}": i for i in range(5_000)}  # 5,002 lines of indented JSON
    path = project(tmp_path, [{"id": "many", "data": keys}, {"id": "small", "data": {"t": "hello"}}], WORKFLOW)
    shown_data = GatedShownData(fmt_module.shown_data)
    monkeypatch.setattr(fmt_module, "shown_data", shown_data)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None, clock_interval=None)
    try:
        async with app.run_test(size=(100, 40)) as pilot:
            assert await asyncio.to_thread(shown_data.entered.wait, 60)  # the claim's thread writes the data out
            screen = app.screen
            assert isinstance(screen, WorkScreen) and screen.view is None and screen.busy
            await pilot.press("a")  # pressed before the load ends: answered
            await pilot.pause()
            assert notes(app)[-1] == "claiming…"
            shown_data.gate.set()
            await settle(app, pilot)
            assert screen.view is not None and screen.view["external_id"] == "many"
            body = screen.query_one("#work-data", Static)
            text, height = str(body.render()), body.size.height  # the lines laid out, the work done
            assert height <= DATA_LINES + 10 and len(text) <= DATA_CHARS + 1_000, height
            assert text.startswith('data\n{\n  "k0": 0,') and '"k197"' in text and '"k4999"' not in text
            assert text.endswith("… cut here: the data is 82,782 characters in 5,002 lines; "
                                 "`labelyard show id:1` prints it whole")
            await pilot.press("n")  # the slot is read again (still held): cut in that thread too
            await settle(app, pilot)
            assert len(shown_data.on_main_thread) == 2
            await pilot.press("1")  # labelled: the next task's data is small, shown whole
            await settle(app, pilot)
            assert screen.view is not None and screen.view["external_id"] == "small"
            small = screen.query_one("#work-data", Static)
            assert str(small.render()) == 'data\n{\n  "t": "hello"\n}' and small.size.height < 10
    finally:
        shown_data.gate.set()
    assert len(shown_data.on_main_thread) == 3 and not any(shown_data.on_main_thread)


# -- 2. "stalled" reasons in the plural --------------------------------------------------------------------

STALLS = """\
workflow: st
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: routed, do: {annotate: q, overlap: 3}}
"""


def test_a_stall_reason_said_of_several_workers_is_in_the_plural(tmp_path):
    p = Project(tmp_path, workflow=STALLS)
    for worker in ("al", "bo"):
        p.worker(worker, "annotator")
    p.ingest([{"id": "D", "data": {}}, {"id": "S", "data": {}}])
    for worker in ("al", "bo"):
        assert p.claim(worker)["external_id"] == "D"  # both hold a slot: the third needs someone else
    assert p.show("D")["stalled"] == "no worker may take it from `q`: al, bo hold slots of it"
    assert "al, bo hold slots of it" in p.run_ok("show", "D").stdout
    assert "al, bo hold slots of it" in p.run_ok("explain", "D").stdout
    p.run_ok("release", "D")
    assert p.show("D")["stalled"] == "no worker may take it from `q`: al, bo gave their slots up or had them taken back"
    p.worker("cy", "annotator")
    assert p.claim("cy")["external_id"] == "D"  # one worker: the singular, as before
    assert p.show("D")["stalled"] == ("no worker may take it from `q`: al, bo gave their slots up or had them taken "
                                      "back; cy holds a slot of it")


# -- 3. a whole number, not an "integer range" -------------------------------------------------------------

@pytest.mark.parametrize("args, name", [
    (["submit", "abc", "--label", "cat"], "'ASSIGNMENT'"),
    (["submit", "1.5", "--label", "cat"], "'ASSIGNMENT'"),
    (["release", "--assignment", "abc"], "'--assignment'"),
    (["rejects", "--limit", "abc"], "'--limit'"),
    (["agreement", "--latest", "abc"], "'--latest'"),
    (["replay", "wf.workflow.yaml", "--sample", "abc"], "'--sample'"),
    (["demo", "--tasks", "abc"], "'--tasks'"),
    (["demo", "--steps", "abc"], "'--steps'"),
])
def test_a_number_argument_that_is_no_number_is_told_it_must_be_a_whole_number(tmp_path, args, name):
    p = Project(tmp_path)
    proc = p.run(*args)
    value = args[args.index("abc") if "abc" in args else 1]
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"Error: Invalid value for {name}: {value!r} is not a whole number."
    assert "integer range" not in proc.stderr


def test_a_number_out_of_range_keeps_its_message(tmp_path):
    proc = Project(tmp_path).run("submit", "0", "--label", "cat")
    assert proc.returncode == 2 and "Invalid value for 'ASSIGNMENT': 0 is not in the range 1<=x<=" in proc.stderr


# -- 4. the dashboard says paused and flagged --------------------------------------------------------------

@pytest.mark.anyio
async def test_the_dashboard_shows_a_paused_worker_s_flag_too(tmp_path, now):
    path = project(tmp_path, [], WORKFLOW)
    engine = Engine.open(path)
    engine.add_worker("bo", ["annotator"], [], None, actor=LEAD)
    engine.add_worker("cy", ["annotator"], [], None, actor=LEAD)
    engine.set_worker_paused("ann", True, "too fast", actor=LEAD)
    engine.set_worker_flagged("ann", True, actor=LEAD)
    engine.set_worker_paused("bo", True, None, actor=LEAD)
    engine.set_worker_flagged("cy", True, actor=LEAD)
    engine.close()
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(app, pilot)
        workers = app.screen.query_one("#workers", DataTable)
        state = {name: str(workers.get_row(name)[-1]) for name in ("ann", "bo", "cy", LEAD)}
    assert state == {"ann": "paused: too fast · flagged", "bo": "paused", "cy": "flagged", LEAD: ""}
