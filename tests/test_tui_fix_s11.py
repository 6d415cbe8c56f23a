"""The TUI where the eleventh session's tester broke it, driven with Textual's pilot on real SQLite
files (``LABELYARD_NOW`` for the time, no sleeps but pilot pauses).

1. Figures that move with the clock alone (a queue's oldest task, its SLA breaches, the alerts, the
   task list's ages, the workers' 24 h submissions) waited for a write or ctrl+r: the app reloaded
   only when ``PRAGMA data_version`` moved. Every ``clock_interval`` seconds they are refreshed now.
2. After an `apply` that changed the choices, the work screen kept the old ones: each pick of a
   choice that was gone was refused again, and `n` said "finish this slot first". The slot is read
   again on a data change and on a refused submission, and the screen says the choices changed.
3. The reassign candidate list (`r`) marked eligible workers whom `reassign` then refused: the
   holder of the task's slot, an annotator who already submitted in the stage, and everyone for a
   task in a `correct` stage. Both now ask ``router.lead.reassign_refusal``; a correct stage says
   why instead of listing, and a worker force cannot help is refused at once, not confirmed.
4. "age↓" listed the youngest tasks first (``stage_at`` descending). It lists the oldest first now,
   as the age column reads, and `n`/`p` page through that order by keyset.
5. Changing the sort or a filter dropped the whole selection without a word, so the next action went
   to the cursor's task. The selection stays; only the tasks the new filter does not list leave it,
   named in a notice.
6. The work screen's footer offered `s Skip` on a correction and `a Approve` on an escalated slot,
   keys that only said why they do nothing. They are left out of the footer there; the keys still
   say why.
7. One external id of 300 double-width characters made its column ~600 cells wide and pushed every
   other column off the screen. The column is cut to 40 cells, with an ellipsis.
8. The task detail said "model None" for a prediction without a model; it names a model only when
   there is one.
"""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Static

from router.engine import Engine
from router.ingest import read_file
from router.store import Store
from test_tui import LEAD, NOW, anyio_backend, settle  # noqa: F401
from router.errors import LabelyardError
from router.lead import Lead
from router.queries import Queries, TaskFilter
from tui.app import LabelyardApp
from tui.screens.detail import TaskDetailScreen
from tui.widgets.modals import ConfirmModal, PickModal

pytestmark = pytest.mark.anyio

HOUR = 3600

WORKFLOW = """\
workflow: s11
labels: {type: choice, choices: [cat, dog, bird]}
queues:
  q: {roles: [annotator], sla: 4h}
  senior: {roles: [senior]}
  experts: {roles: [expert]}
on_create:
  - do: {annotate: q, overlap: 1}
on_quorum:
  - do: {review: senior}
on_review:
  - {name: approved, when: review.verdict == "approve", do: accept}
  - {name: rejected, do: {return: annotators}}
"""


def later(hours: float) -> str:
    """``NOW`` plus ``hours``, as ``LABELYARD_NOW`` takes it (epoch seconds)."""
    from router.clock import parse_instant

    return str(parse_instant(NOW) + hours * HOUR)


def project(tmp_path, tasks: int = 2, workflow: str = WORKFLOW) -> str:
    """``tasks`` tasks `t0`… in queue `q`; the lead LEAD, annotators ann and bob, senior sen, expert exp."""
    path = str(tmp_path / "p.db")
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(workflow, "s11.workflow.yaml", actor=LEAD)
    engine.add_worker(LEAD, ["lead"], [], None, actor=LEAD)
    for name, role in (("ann", "annotator"), ("bob", "annotator"), ("sen", "senior"), ("exp", "expert")):
        engine.add_worker(name, [role], [], None, actor=LEAD)
    inbox = tmp_path / "in.jsonl"
    inbox.write_text("".join(json.dumps({"id": f"t{i}", "data": {"text": f"item {i}"}}) + "\n" for i in range(tasks)))
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    engine.close()
    return path


def with_engine(path: str, act) -> object:
    engine = Engine.open(path)
    try:
        return act(engine)
    finally:
        engine.close()


def notes(app) -> list[str]:
    said = [n.message for n in app._notifications]
    app._notifications.clear()
    return said


def row(table: DataTable, key: str) -> list[str]:
    return [str(cell) for cell in table.get_row(key)]


async def until(pilot, condition, rounds: int = 200) -> bool:
    """Pilot pauses until ``condition()`` holds (the app's timer fires meanwhile); whether it did."""
    for _ in range(rounds):
        if condition():
            return True
        await pilot.pause(0.05)
    return condition()


# -- 1. time-based figures refresh without writes ----------------------------------------------------

async def test_the_dashboard_ages_and_sla_breaches_refresh_on_the_clock_without_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path)
    with_engine(path, lambda e: e.submit(e.claim("ann", "q")["assignment"], "ann", label="cat"))
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=0.05)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        queues = app.screen.query_one("#queues", DataTable)
        workers = app.screen.query_one("#workers", DataTable)
        alerts = app.screen.query_one("#alerts", Static)
        assert row(queues, "q")[5:7] == ["0s", "0"] and str(alerts.render()) == "no alerts"
        assert row(workers, "ann")[2] == "1"
        monkeypatch.setenv("LABELYARD_NOW", later(5))  # five hours pass; nobody writes
        assert await until(pilot, lambda: row(queues, "q")[5:7] == ["5h", "1"])
        assert "q: 1 task(s) past the 4h SLA" in str(alerts.render())
        monkeypatch.setenv("LABELYARD_NOW", later(25))  # ann's submission leaves the last 24 hours
        assert await until(pilot, lambda: row(workers, "ann")[2] == "0")


async def test_the_task_list_ages_and_the_workers_24h_refresh_on_the_clock(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path)
    with_engine(path, lambda e: e.submit(e.claim("ann", "q")["assignment"], "ann", label="cat"))
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=0.05)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        tasks = app.screen.query_one("#tasks", DataTable)
        ages = lambda: [row(tasks, f"id:{r['id']}")[-1] for r in app.screen.rows]  # noqa: E731
        assert ages() == ["0s", "0s"]
        monkeypatch.setenv("LABELYARD_NOW", later(3))
        assert await until(pilot, lambda: ages() == ["3h", "3h"])
        await pilot.press("w")
        await settle(app, pilot)
        roster = app.screen.query_one("#roster", DataTable)
        assert row(roster, "ann")[4] == "1"
        monkeypatch.setenv("LABELYARD_NOW", later(27))
        assert await until(pilot, lambda: row(roster, "ann")[4] == "0")


async def test_without_a_clock_interval_nothing_reloads_by_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path)
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        queues = app.screen.query_one("#queues", DataTable)
        monkeypatch.setenv("LABELYARD_NOW", later(5))
        await pilot.pause(0.3)
        assert row(queues, "q")[5] == "0s"
        app.time_passed()  # one tick, as the timer calls it
        await settle(app, pilot)
        assert row(queues, "q")[5:7] == ["5h", "2"]


# -- 2. the work screen shows the choices of the workflow applied now ----------------------------------

def apply_new_choices(path: str) -> None:
    """Another process applies a version where `dog` is now `hound`."""
    with_engine(path, lambda e: e.apply(WORKFLOW.replace("[cat, dog, bird]", "[cat, hound, bird]"),
                                        "s11.workflow.yaml", actor=LEAD))


def votes(path: str, ref: str) -> list[tuple[str, str]]:
    store = Store.open(path)
    try:
        return [(v["worker"], json.loads(v["label"])) for v in store.votes(store.task(ref)["id"])]
    finally:
        store.close()


def choices_line(app) -> str:
    return str(app.screen.query_one("#work-choices", Static).render()).splitlines()[0]


async def test_an_apply_that_changes_the_choices_shows_the_new_ones_on_the_slot_in_view(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None, clock_interval=None)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(app, pilot)
        ref = app.screen.view["external_id"]
        assert choices_line(app).split() == ["1", "cat", "2", "dog", "3", "bird"]
        apply_new_choices(path)
        app.check_changes()  # one poll: the apply is a write
        await settle(app, pilot)
        assert choices_line(app).split() == ["1", "cat", "2", "hound", "3", "bird"]
        assert "the workflow changed: the choices are now cat, hound, bird" in notes(app)
        await pilot.press("2")
        await settle(app, pilot)
        assert votes(path, ref) == [("ann", "hound")]


async def test_a_submission_refused_for_a_choice_that_is_gone_shows_the_current_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None, clock_interval=None)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(app, pilot)
        ref = app.screen.view["external_id"]
        apply_new_choices(path)  # no poll sees it: the screen still shows `dog`
        await pilot.press("2")
        await settle(app, pilot)
        said = notes(app)
        assert any("not one of cat, hound, bird" in n for n in said), said
        assert "the workflow changed: the choices are now cat, hound, bird" in said
        assert choices_line(app).split() == ["1", "cat", "2", "hound", "3", "bird"]
        await pilot.press("2")  # before: refused again, every time
        await settle(app, pilot)
        assert votes(path, ref) == [("ann", "hound")]


async def test_n_on_a_held_slot_reads_its_choices_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None, clock_interval=None)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(app, pilot)
        apply_new_choices(path)
        await pilot.press("n")
        await settle(app, pilot)
        said = notes(app)
        assert "finish this slot first, or give it back with s" in said
        assert "the workflow changed: the choices are now cat, hound, bird" in said
        assert "hound" in choices_line(app)


# -- 3. the reassign candidates are what reassign accepts ------------------------------------------------

def candidates(path: str, ref: str) -> dict[str, dict]:
    q = Queries.open(path)
    try:
        return {c["id"]: c for c in q.reassign_candidates([ref])}
    finally:
        q.close()


def reassign_accepts(path: str, ref: str, to: str, force: bool) -> str | None:
    """``None`` when ``labelyard reassign REF --to TO [--force]`` would go through (a dry run), else why not."""
    def attempt(engine):
        try:
            Lead(engine, LEAD).run("reassign", [ref], to=to, force=force, dry_run=True)
        except LabelyardError as exc:
            return str(exc)
        return None
    return with_engine(path, attempt)


def in_review_held_by_sen(tmp_path) -> tuple[str, str]:
    """t0 annotated by ann, its review slot held by sen; a second senior, sue, is free."""
    path = project(tmp_path)
    def act(engine):
        engine.add_worker("sue", ["senior"], [], None, actor=LEAD)
        view = engine.claim("ann", "q")
        engine.submit(view["assignment"], "ann", label="cat")
        engine.claim("sen")
        return view["external_id"]
    return path, with_engine(path, act)


def voted_in_annotate(tmp_path) -> tuple[str, str]:
    """t0 in an annotate stage that wants two votes; ann voted, bob holds the other slot."""
    path = project(tmp_path, workflow=WORKFLOW.replace("overlap: 1", "overlap: 2"))
    def act(engine):
        view = engine.claim("ann", "q")
        engine.submit(view["assignment"], "ann", label="cat")
        engine.claim("bob", "q")
        return view["external_id"]
    return path, with_engine(path, act)


@pytest.mark.parametrize("situation", [in_review_held_by_sen, voted_in_annotate])
def test_every_candidate_is_marked_as_reassign_itself_decides(tmp_path, monkeypatch, situation):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = situation(tmp_path)
    listed = candidates(path, ref)
    assert listed
    for worker, c in listed.items():
        plain, forced = reassign_accepts(path, ref, worker, False), reassign_accepts(path, ref, worker, True)
        assert c["eligible"] == (plain is None), (worker, c, plain)
        assert c["forceable"] == (forced is None), (worker, c, forced)
        if c["eligible"]:
            continue
        assert c["reason"] in (plain if not c["forceable"] else plain.replace(" (--force to do it anyway)", "")), \
            (worker, c["reason"], plain)


def test_the_holder_and_a_worker_who_submitted_are_refused_in_the_list_as_by_reassign(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = in_review_held_by_sen(tmp_path)
    listed = candidates(path, ref)
    assert listed["sen"]["eligible"] is False and listed["sen"]["forceable"] is False
    assert listed["sen"]["reason"] == f"sen already holds a slot of task {ref}"
    assert listed["sue"]["eligible"] is True
    (tmp_path / "2").mkdir()
    path2, ref2 = voted_in_annotate(tmp_path / "2")
    listed = candidates(path2, ref2)
    assert listed["ann"]["eligible"] is False and listed["ann"]["forceable"] is False
    assert listed["ann"]["reason"] == f"ann already submitted for task {ref2} in this stage"
    assert listed["bob"]["reason"] == f"bob already holds a slot of task {ref2}"


def test_a_task_in_a_correct_stage_gives_the_reason_instead_of_candidates(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = in_review_held_by_sen(tmp_path)
    with_engine(path, lambda e: e.submit(e.store.worker_active_assignments("sen")[0]["id"], "sen",
                                         verdict="reject", comment="again"))
    with pytest.raises(LabelyardError, match="a correction goes only to its own annotator"):
        candidates(path, ref)


async def test_r_on_a_correct_stage_task_says_why_and_lists_nobody(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = in_review_held_by_sen(tmp_path)
    with_engine(path, lambda e: e.submit(e.store.worker_active_assignments("sen")[0]["id"], "sen",
                                         verdict="reject", comment="again"))
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        app.push_screen(TaskDetailScreen(f"ext:{ref}"))
        await settle(app, pilot)
        await pilot.press("r")
        await settle(app, pilot)
        assert isinstance(app.screen, TaskDetailScreen)  # no list of workers who would all be refused
        said = notes(app)
        assert any("waits for its annotators' corrections (offered to ann)" in n and "`escalate` the task" in n
                   for n in said), said


async def test_picking_the_slots_holder_is_refused_without_a_confirmation(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = in_review_held_by_sen(tmp_path)
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        app.push_screen(TaskDetailScreen(f"ext:{ref}"))
        await settle(app, pilot)
        await pilot.press("r")
        await settle(app, pilot)
        modal = app.screen
        assert isinstance(modal, PickModal)
        texts = dict(modal.items)
        assert texts["sue"].split() == ["sue", "load", "0/∞"]
        assert f"✗ sen already holds a slot of task {ref}" in texts["sen"]
        modal.query_one("OptionList").highlighted = [k for k, _ in modal.items].index("sen")
        await pilot.press("enter")
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmModal)
        assert f"cannot reassign task ext:{ref} to sen: sen already holds a slot of task {ref}" in notes(app)


# -- 4. age↓ is the oldest first ---------------------------------------------------------------------------

def aged_project(tmp_path, monkeypatch) -> tuple[str, list[int]]:
    """130 tasks ingested in three batches (10 h, 5 h and 1 h before NOW, 50, 40 and 40 of them);
    the ids in age↓ order: the oldest batch first, each batch by id."""
    monkeypatch.setenv("LABELYARD_NOW", later(-10))
    path = project(tmp_path, tasks=50)
    for n, (hours, size) in enumerate(((-5, 40), (-1, 40))):
        monkeypatch.setenv("LABELYARD_NOW", later(hours))
        inbox = tmp_path / f"more{n}.jsonl"
        inbox.write_text("".join(json.dumps({"id": f"b{n}-{i}", "data": {"text": "x"}}) + "\n" for i in range(size)))
        with_engine(path, lambda e: e.ingest(read_file(str(inbox), e.workflow.labels.choices), str(inbox)))
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    return path, list(range(1, 131))


def pages(path: str, f: TaskFilter) -> list[list[int]]:
    q = Queries.open(path)
    try:
        out, after = [], None
        while True:
            page = q.task_page(f, after)
            out.append([r["id"] for r in page.rows])
            if page.next_after is None:
                return out
            after = page.next_after
    finally:
        q.close()


def test_age_descending_lists_the_oldest_first_and_pages_by_keyset(tmp_path, monkeypatch):
    path, oldest_first = aged_project(tmp_path, monkeypatch)
    down = pages(path, TaskFilter(order="age", descending=True))
    assert sum(down, []) == oldest_first and [len(p) for p in down] == [50, 50, 30]
    up = pages(path, TaskFilter(order="age", descending=False))
    assert sum(up, []) == oldest_first[::-1]
    q = Queries.open(path)
    try:
        f = TaskFilter(order="age")
        second = q.task_page(f, q.task_page(f).next_after)
        after, above = q.task_page_above(f, second.first_key)
        assert after is None and [r["id"] for r in above.rows] == down[0]
        after, page, before = q.task_page_at(f, 95, 4)  # task 95 on the 5th row: 90 tasks above its page
        assert before == 90 and [r["id"] for r in page.rows][4] == 95
    finally:
        q.close()


async def test_the_task_list_sorted_by_age_shows_the_oldest_first_on_every_page(tmp_path, monkeypatch):
    path, oldest_first = aged_project(tmp_path, monkeypatch)
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("o", "o")  # id -> priority -> age
        await settle(app, pilot)
        assert screen.filter.describe().endswith("sort age↓")
        shown = []
        for _ in range(3):
            ids = [r["id"] for r in screen.rows]
            shown += ids
            ages = [row(screen.query_one("#tasks", DataTable), f"id:{i}")[-1] for i in ids]
            assert ages == sorted(ages, key=lambda a: -int(a[:-1]))  # "10h" before "5h" before "1h"
            await pilot.press("n")
            await settle(app, pilot)
        assert shown == oldest_first
        await pilot.press("p")
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == oldest_first[50:100]


# -- 5. the selection survives a new sort or filter ------------------------------------------------------

async def test_the_selection_stays_across_a_new_sort_and_a_filter_drops_only_what_it_hides(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path, tasks=60)
    reviewed = with_engine(path, lambda e: (lambda v: (e.submit(v["assignment"], "ann", label="cat"), v)[1])(
        e.claim("ann", "q"))["task"])
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        screen.set_filter(TaskFilter(order="id", descending=False))
        await settle(app, pilot)
        await pilot.press("space", "space", "space")  # ids 1, 2, 3
        await pilot.press("n")
        await settle(app, pilot)
        await pilot.press("space")  # id 51, on page 2
        picked = {"id:1", "id:2", "id:3", "id:51"}
        assert screen.selected == picked and f"id:{reviewed}" in picked
        await pilot.press("o")  # sort by priority
        await settle(app, pilot)
        assert screen.selected == picked and "selected 4" in str(screen.query_one("#task-status", Static).render())
        assert notes(app) == []
        await pilot.press("O")  # reversed
        await settle(app, pilot)
        assert screen.selected == picked
        screen.set_filter(screen.filter.with_(stage="review"))  # only the reviewed task is listed
        await settle(app, pilot)
        assert screen.selected == {f"id:{reviewed}"}
        said = notes(app)
        others = sorted(picked - {f"id:{reviewed}"}, key=lambda r: int(r[3:]))
        names = ", ".join(f"t{int(r[3:]) - 1} ({r})" for r in others)
        assert f"the selected tasks {names} left this list and are no longer selected" in said, said
        await pilot.press("h")
        await settle(app, pilot)
        assert app.screen.prompt.startswith(f"Hold task t{reviewed - 1} (id:{reviewed})")  # not the cursor's task


# -- 6. the footer shows only the keys that do something ------------------------------------------------

def footer_keys(app) -> set[str]:
    return {key for key, b in app.active_bindings.items() if b.binding.show and b.enabled}


async def slot_footer(path: str, worker: str, key: str) -> tuple[str, set[str], list[str]]:
    """The kind of ``worker``'s slot, the footer's keys, and what pressing ``key`` says."""
    app = LabelyardApp(path, worker, start="work", worker=worker, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(app, pilot)
        kind, keys = app.screen.view["kind"], footer_keys(app)
        await pilot.press(key)
        await settle(app, pilot)
        return kind, keys, notes(app)


async def test_a_correction_shows_no_skip_and_s_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path, ref = in_review_held_by_sen(tmp_path)
    kind, keys, _ = await slot_footer(path, "sen", "escape")
    assert kind == "review" and {"enter", "a", "x", "s", "n"} <= keys
    with_engine(path, lambda e: e.submit(e.store.worker_active_assignments("sen")[0]["id"], "sen",
                                         verdict="reject", comment="again"))
    kind, keys, said = await slot_footer(path, "ann", "s")
    assert kind == "correct" and "s" not in keys and {"enter", "n"} <= keys
    assert any(n.startswith("a correction comes back to you: label it") for n in said), said
    assert with_engine(path, lambda e: e.store.worker_active_assignments("ann")[0]["stage"]) == "correct"


async def test_an_escalated_slot_shows_no_approve_and_a_says_a_label_is_needed(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path)
    with_engine(path, lambda e: Lead(e, LEAD).run("escalate", ["t0"], queue="experts"))
    kind, keys, said = await slot_footer(path, "exp", "a")
    assert kind == "escalated" and "a" not in keys and {"enter", "x", "s", "n"} <= keys
    assert said == ["an escalated task needs its final label: pick it with the number keys"]


# -- 7. one long external id does not push the other columns off the screen -----------------------------

async def test_a_long_wide_external_id_is_cut_and_every_column_stays_on_screen(tmp_path, monkeypatch):
    from rich.cells import cell_len

    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path)
    inbox = tmp_path / "long.jsonl"
    inbox.write_text(json.dumps({"id": "界" * 300, "data": {"text": "wide"}}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    with_engine(path, lambda e: e.ingest(read_file(str(inbox), e.workflow.labels.choices), str(inbox)))
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(130, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        table = app.screen.query_one("#tasks", DataTable)
        cell = table.get_row("id:3")[2]
        assert cell_len(cell.plain) <= 40 and cell.plain.endswith("…") and cell.plain.startswith("界" * 10)
        assert str(table.get_row("id:1")[2]) == "t0"
        widths = [c.get_render_width(table) for c in table.ordered_columns]
        assert sum(widths) <= 130, widths  # the age column, last, is on screen
        header = "".join(seg.text for seg in table.render_line(0))
        assert header.rstrip().endswith("age"), header


# -- 8. no "model None" -------------------------------------------------------------------------------------

async def test_the_detail_names_a_prediction_model_only_when_there_is_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = project(tmp_path, tasks=0)
    inbox = tmp_path / "pred.jsonl"
    inbox.write_text(json.dumps({"id": "plain", "data": {"text": "a"}, "prediction": {"label": "cat", "confidence": 0.4}})
                     + "\n" + json.dumps({"id": "modelled", "data": {"text": "b"},
                                           "prediction": {"label": "dog", "confidence": 0.6, "model": "m-7"}}) + "\n")
    with_engine(path, lambda e: e.ingest(read_file(str(inbox), e.workflow.labels.choices), str(inbox)))
    app = LabelyardApp(path, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        shown = {}
        for ref in ("plain", "modelled"):
            app.push_screen(TaskDetailScreen(f"ext:{ref}"))
            await settle(app, pilot)
            body = str(app.screen.query_one("#detail-body", Static).render())
            shown[ref] = next(line for line in body.splitlines() if line.startswith("prediction"))
            await pilot.press("escape")
            await settle(app, pilot)
        assert shown == {"plain": "prediction cat confidence 0.40", "modelled": "prediction dog confidence 0.60 model m-7"}
