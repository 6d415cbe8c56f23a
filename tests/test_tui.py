"""The TUI, driven with Textual's pilot: every screen and action, checked in the database (through
``router``) and in the messages the screens receive; snapshots last.

The project is ``labelyard demo``'s (fixed seed, fixed ``LABELYARD_NOW``) with a lead ``lena``.
The app runs with ``poll_interval=None`` (no background poller; ``app.check_changes()`` is one poll)
and every wait is ``app.workers.wait_for_complete()``: no sleeps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from router.engine import Engine
from router.queries import Queries, TaskFilter
from tui.app import LabelyardApp
from tui.messages import ActionDone, ActionFailed, Claimed, DataChanged, Submitted
from tui.screens.detail import TaskDetailScreen
from tui.screens.tasks import TasksScreen
from tui.widgets.modals import ConfirmModal, InputModal, PickModal

pytestmark = pytest.mark.anyio

NOW = "2026-01-05T12:00:00Z"
LEAD = "lena"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    import os

    from router.demo import run_demo

    folder = tmp_path_factory.mktemp("demo")
    old = os.environ.get("LABELYARD_NOW")
    os.environ["LABELYARD_NOW"] = NOW
    try:
        run_demo(str(folder), tasks=300, steps=350, seed=7, echo=None)
        engine = Engine.open(str(folder / "labelyard.db"))
        engine.add_worker(LEAD, ["lead"], [], None, actor="test")
        engine.add_worker("sam", ["senior"], [], None, actor="test")
        engine.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.close()
    finally:
        if old is None:
            os.environ.pop("LABELYARD_NOW", None)
        else:
            os.environ["LABELYARD_NOW"] = old
    return folder / "labelyard.db"


@pytest.fixture
def db(demo_template, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = tmp_path / "labelyard.db"
    shutil.copyfile(demo_template, path)
    return str(path)


def queries(db: str) -> Queries:
    return Queries.open(db)


class Recorder:
    def __init__(self):
        self.messages = []

    def __call__(self, message):
        self.messages.append(message)

    def of(self, kind):
        """Messages of ``kind``, each once (a bubbling message reaches the hook at every node)."""
        seen, out = set(), []
        for m in self.messages:
            if isinstance(m, kind) and id(m) not in seen:
                seen.add(id(m))
                out.append(m)
        return out


async def settle(app, pilot):
    from textual.worker import WorkerCancelled

    for _ in range(3):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # an exclusive loader replaced by a newer one: wait for that one next round
        await pilot.pause()


def open_task_refs(db: str, n: int, **filters) -> list[str]:
    q = queries(db)
    try:
        return [r["external_id"] for r in q.task_page(TaskFilter(**filters), limit=n).rows]
    finally:
        q.close()


def id_ref(db: str, ref: str) -> str:
    """The `id:N` reference the TUI keys a task's row by."""
    return f"id:{task(db, ref)['task']['id']}"


def task(db: str, ref: str) -> dict:
    q = queries(db)
    try:
        return q.task_detail(ref)
    finally:
        q.close()


async def open_tasks_on(app, pilot, **filters) -> TasksScreen:
    await pilot.press("t")
    await settle(app, pilot)
    screen = app.screen
    assert isinstance(screen, TasksScreen)
    if filters:
        screen.set_filter(TaskFilter(**filters))
        await settle(app, pilot)
    return screen


# -- screens -------------------------------------------------------------------------------------

async def test_dashboard_shows_queues_workers_throughput_and_alerts(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        q = queries(db)
        data = q.dashboard()
        q.close()
        table = screen.query_one("#queues", DataTable)
        assert [str(k.value) for k in table.rows] == [x["name"] for x in data["queues"]]
        triage = next(x for x in data["queues"] if x["name"] == "triage")
        row = table.get_row("triage")
        assert str(row[1]) == f"{triage['waiting']:,}" and str(row[2]) == f"{triage['active']:,}"
        summary = str(screen.query_one("#summary", Static).render())
        assert f"tasks {data['counts']['total']:,}" in summary and "fleiss_kappa" in summary
        assert screen.query_one("#workers", DataTable).row_count == len(data["workers"])
        assert sum(screen.query_one("#throughput").data) == sum(data["throughput"]["submitted"]) > 0
        assert "held" in str(screen.query_one("#alerts", Static).render())
        # Enter on a queue opens its open tasks (the queues have the focus when the dashboard opens).
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TasksScreen)
        assert app.screen.filter.queue == "triage" and app.screen.filter.status == "open"
        assert {r["queue"] for r in app.screen.rows} == {"triage"}


async def test_tasks_filters_sort_and_keyset_paging(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        assert screen.total == 300 and len(screen.rows) == 50
        first_ids = [r["id"] for r in screen.rows]
        assert first_ids == sorted(first_ids, reverse=True)
        await pilot.press("n")
        await settle(app, pilot)
        assert screen.rows[0]["id"] == first_ids[-1] - 1 and screen.page_no == 2
        await pilot.press("p")
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == first_ids
        # status filter through its picker
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, PickModal)
        app.screen.query_one("#pick-list").highlighted = 2  # (any), open, held
        await pilot.press("enter")
        await settle(app, pilot)
        assert screen.filter.status == "held" and {r["status"] for r in screen.rows} == {"held"}
        assert screen.total == len(screen.rows) == 5
        # text search
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"T-0000", "enter")
        await settle(app, pilot)
        assert screen.filter.text == "T-0000" and all("T-0000" in r["external_id"] for r in screen.rows)
        # sort by priority, worker filter, clear
        screen.set_filter(TaskFilter(status="open"))
        await settle(app, pilot)
        await pilot.press("o")
        await settle(app, pilot)
        prios = [r["priority"] for r in screen.rows]
        assert screen.filter.order == "priority" and prios == sorted(prios, reverse=True)
        screen.set_filter(TaskFilter(worker="alice"))
        await settle(app, pilot)
        q = queries(db)
        expected = {a["task_id"] for a in q.store.conn.execute("SELECT task_id FROM assignments WHERE worker='alice'")}
        q.close()
        assert {r["id"] for r in screen.rows} <= expected and screen.rows


async def test_select_several_and_hold_then_unhold(db):
    refs = open_task_refs(db, 3, status="open", queue="triage")
    rec = Recorder()
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        screen = await open_tasks_on(app, pilot, status="open", queue="triage")
        await pilot.press("space", "space")
        assert screen.selected == {id_ref(db, r) for r in refs[:2]}  # rows act by `id:N`
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, InputModal)
        await pilot.press(*"wait for legal", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and "2 tasks" in app.screen.question
        await pilot.press("y")
        await settle(app, pilot)
        assert [m.action for m in rec.of(ActionDone)] == ["hold"]
        for ref in refs[:2]:
            t = task(db, ref)["task"]
            assert t["status"] == "held" and t["reason"] == "wait for legal"
        assert task(db, refs[2])["task"]["status"] == "open"
        # visible at once: the open/triage page no longer lists them
        assert not set(refs[:2]) & {r["external_id"] for r in screen.rows}
        assert screen.selected == set()
        # unhold them from the held list
        screen.set_filter(TaskFilter(status="held", queue="triage"))
        await settle(app, pilot)
        await pilot.press("space", "space", "H")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        assert rec.of(ActionDone)[-1].action == "unhold"
        assert all(task(db, ref)["task"]["status"] == "open" for ref in refs[:2])


async def test_reassign_offers_eligible_workers_with_load_and_forces_with_confirmation(db):
    [ref] = open_task_refs(db, 1, status="open", queue="legal")
    rec = Recorder()
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        screen = await open_tasks_on(app, pilot, status="open", queue="legal")
        await pilot.press("r")
        await settle(app, pilot)
        pick = app.screen
        assert isinstance(pick, PickModal)
        ids = [key for key, _ in pick.items]
        texts = dict(pick.items)
        assert ids[0] in ("carol", "dave") and "load" in texts["carol"]
        assert "✗" in texts["alice"]  # legal needs the legal skill
        pick.query_one("#pick-list").highlighted = ids.index("carol")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and "to carol" in app.screen.question
        await pilot.press("y")
        await settle(app, pilot)
        detail = task(db, ref)
        assert any(a["worker"] == "carol" and a["status"] == "active" for a in detail["assignments"])
        # forcing an ineligible worker asks again, and the event records it
        screen.query_one(DataTable).move_cursor(row=[r["external_id"] for r in screen.rows].index(ref))
        await pilot.press("r")
        await settle(app, pilot)
        pick = app.screen
        pick.query_one("#pick-list").highlighted = [k for k, _ in pick.items].index("bob")
        await pilot.press("enter")
        await pilot.pause()
        assert "anyway (force)" in app.screen.question and "Not eligible" in app.screen.detail
        await pilot.press("y")
        await settle(app, pilot)
        events = task(db, ref)["events"]
        assert events[-1]["kind"] == "reassigned" and events[-1]["detail"]["to"] == "bob"
        assert "forced" in events[-1]["detail"]
        assert [m.action for m in rec.of(ActionDone)] == ["reassign", "reassign"]


async def test_escalate_priority_and_release_from_task_detail(db):
    [ref] = open_task_refs(db, 1, status="open", queue="triage")
    rec = Recorder()
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await open_tasks_on(app, pilot, status="open", queue="triage")
        await pilot.press("enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, TaskDetailScreen) and detail.ref == id_ref(db, ref)
        body = str(detail.query_one("#detail-body", Static).render())
        assert "data" in body and "prediction" in body and "votes" in body
        assert "on_create" in str(detail.query_one("#detail-history", Static).render())
        # priority
        await pilot.press("P")
        await pilot.pause()
        await pilot.press(*"0.9", "enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        assert task(db, ref)["task"]["priority"] == 0.9
        assert "priority 0.90" in str(detail.query_one("#detail-head", Static).render())
        # escalate to experts
        await pilot.press("e")
        await pilot.pause()
        pick = app.screen
        pick.query_one("#pick-list").highlighted = [k for k, _ in pick.items].index("experts")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        t = task(db, ref)["task"]
        assert (t["stage"], t["queue"]) == ("escalated", "experts")
        assert "escalated in experts" in str(detail.query_one("#detail-head", Static).render())
        # release: frank (expert) claims it, the lead releases the slot
        engine = Engine.open(db)
        view = engine.claim("frank", "experts")
        engine.close()
        await pilot.press("l")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        slots = {a["id"]: a["status"] for a in task(db, ref)["assignments"]}
        assert slots[view["assignment"]] == "released"
        assert [m.action for m in rec.of(ActionDone)] == ["priority", "escalate", "release"]
        await pilot.press("escape")
        assert isinstance(app.screen, TasksScreen)


async def test_refused_action_is_reported_and_changes_nothing(db):
    [ref] = open_task_refs(db, 1, status="done")
    rec = Recorder()
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await open_tasks_on(app, pilot, status="done")
        await pilot.press("h", "enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        [failed] = rec.of(ActionFailed)
        assert "only open tasks can be held" in failed.error
        assert task(db, ref)["task"]["status"] == "done"


async def test_a_worker_without_the_lead_role_is_refused(db):
    [ref] = open_task_refs(db, 1, status="open")
    rec = Recorder()
    app = LabelyardApp(db, "alice", poll_interval=None)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await open_tasks_on(app, pilot, status="open")
        await pilot.press("l", "y")
        await settle(app, pilot)
        assert "needs the lead role" in rec.of(ActionFailed)[0].error
        assert task(db, ref)["task"]["status"] == "open"


async def test_workers_screen_pauses_and_resumes(db):
    rec = Recorder()
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await pilot.press("w")
        await settle(app, pilot)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 8  # the demo's six, the lead and a senior
        table.move_cursor(row=[str(k.value) for k in table.rows].index("bob"))
        await pilot.press("x")
        await pilot.pause()
        await pilot.press(*"too fast", "enter")
        await settle(app, pilot)
        q = queries(db)
        assert q.store.worker("bob")["paused"] == 1 and q.store.worker("bob")["pause_reason"] == "too fast"
        q.close()
        assert "paused: too fast" in str(app.screen.query_one(DataTable).get_row("bob")[-1])
        await pilot.press("x", "y")
        await settle(app, pilot)
        q = queries(db)
        assert q.store.worker("bob")["paused"] == 0
        q.close()
        assert [m.action for m in rec.of(ActionDone)] == ["pause", "resume"]


async def test_workflow_screen_lists_rules_with_their_counts(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f")
        await settle(app, pilot)
        q = queries(db)
        fired = {(r["section"], r["rule"]): r["n"] for r in q.store.rule_count_rows()}
        q.close()
        table = app.screen.query_one(DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        shown = {(str(r[0]), str(r[1])): int(str(r[4]).replace(",", "")) for r in rows}
        assert shown[("on_create", "default")] == fired[("on_create", "default")] > 0
        assert sum(v for (s, _), v in shown.items() if s == "on_create") == 300
        await pilot.press("y")
        assert "ticket-triage" in str(app.screen.query_one("#yaml", Static).render())


# -- live refresh -----------------------------------------------------------------------------

async def test_changes_by_another_process_appear_without_a_keypress(db):
    rec = Recorder()
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await settle(app, pilot)
        before = app.screen.query_one("#queues", DataTable).get_row("triage")
        engine = Engine.open(db)  # another connection: an annotator claiming
        engine.claim("bob", "triage")
        engine.close()
        app.check_changes()
        await settle(app, pilot)
        assert rec.of(DataChanged)
        after = app.screen.query_one("#queues", DataTable).get_row("triage")
        assert int(str(after[2])) == int(str(before[2])) + 1  # active


async def test_the_poller_thread_notices_a_commit(db):
    import asyncio

    noticed = asyncio.Event()
    app = LabelyardApp(db, LEAD, poll_interval=0.02)

    def hook(message):
        if isinstance(message, DataChanged):
            noticed.set()

    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await pilot.pause()
        engine = Engine.open(db)
        engine.set_worker_paused("bob", True, "x", actor=LEAD)
        engine.close()
        await asyncio.wait_for(noticed.wait(), timeout=30)  # an event, not a sleep: returns when it fires
        assert noticed.is_set()


# -- keyboard, help, palette ------------------------------------------------------------------

async def test_help_palette_and_bindings_have_ids(db):
    app = LabelyardApp(db, LEAD, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.query("HelpPanel")
        await pilot.press("question_mark")
        await pilot.pause()
        assert not app.screen.query("HelpPanel")
        await pilot.press("t")
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Hold")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, InputModal)  # the palette ran the screen's hold action
    for cls in (app.MODES["dashboard"], app.MODES["tasks"], app.MODES["workers"], app.MODES["workflow"],
                app.MODES["work"], TaskDetailScreen, LabelyardApp):
        assert all(b.id for b in cls.BINDINGS), cls


# -- the work screen ---------------------------------------------------------------------------

async def test_work_screen_claims_labels_with_number_keys_submits_and_skips(db):
    rec = Recorder()
    app = LabelyardApp(db, "bob", start="work", worker="bob", poll_interval=None)
    async with app.run_test(size=(80, 24), message_hook=rec) as pilot:
        await settle(app, pilot)
        screen = app.screen
        first = screen.view
        assert first is not None and first["kind"] in ("annotate", "correct")
        assert "1 billing" in str(screen.query_one("#work-choices", Static).render())
        await pilot.press("2")  # bug
        await settle(app, pilot)
        assert rec.of(Submitted)
        ann = [a for a in task(db, first["external_id"])["annotations"] if a["worker"] == "bob"]
        assert ann[-1]["label"] == "bug"
        second = screen.view
        assert second is not None and second["assignment"] != first["assignment"]
        await pilot.press("s")
        await settle(app, pilot)
        slots = {a["id"]: a["status"] for a in task(db, second["external_id"])["assignments"]}
        assert slots[second["assignment"]] in ("released", "offered")
        assert screen.view is not None and screen.view["assignment"] not in (first["assignment"], second["assignment"])
        assert len(rec.of(Claimed)) == 3
        await pilot.press("d")  # the annotator's app has no lead screens
        assert type(app.screen).__name__ == "WorkScreen"


async def _review_slot(db: str) -> str:
    """Make a task wait for review in `senior` (two different votes) and return its external id."""
    engine = Engine.open(db)
    try:
        [ref] = open_task_refs(db, 1, status="open", queue="triage")
        from router.lead import Lead

        Lead(engine, LEAD).run("escalate", [ref], queue="senior")
        return ref
    finally:
        engine.close()


async def test_review_slots_show_votes_and_take_approve_reject_and_correct(db):
    ref = await _review_slot(db)
    rec = Recorder()
    app = LabelyardApp(db, "frank", start="work", worker="frank", queue="senior", poll_interval=None)
    async with app.run_test(size=(100, 30), message_hook=rec) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert screen.view["kind"] == "escalated" and screen.view["external_id"] == ref
        assert "votes" in str(screen.query_one("#work-context", Static).render())
        await pilot.press("a")  # an expert settles with a label: approving alone is refused, and said
        await pilot.pause()
        assert any("needs its final label" in n.message for n in app._notifications)
        assert screen.view["kind"] == "escalated" and task(db, ref)["task"]["stage"] == "escalated"
        await pilot.press("3", "enter")  # corrected label: feature, with a comment
        await pilot.pause()
        assert isinstance(app.screen, InputModal)
        await pilot.press(*"clearly a request", "enter")
        await settle(app, pilot)
        t = task(db, ref)
        assert t["task"]["status"] == "done" and t["task"]["final_label"] == "feature"
        assert t["reviews"][-1]["comment"] == "clearly a request"


async def test_review_reject_with_comment_returns_the_task(db):
    # a legal task with carol's vote, escalated by the lead to `senior`, where sam (senior) judges it
    [target] = [r for r in open_task_refs(db, 300, status="open", queue="legal")
                if task(db, r)["task"]["free_slots"] == 2][:1]
    engine = Engine.open(db)
    from router.lead import Lead

    lead = Lead(engine, LEAD)
    lead.run("reassign", [target], to="carol", force=True)  # carol is at her capacity of 3
    a = [x for x in engine.store.assignments(engine.store.task(target)["id"]) if x["worker"] == "carol"][-1]
    engine.submit(a["id"], "carol", label="bug")
    lead.run("escalate", [target], queue="senior")
    engine.close()
    rec = Recorder()
    app = LabelyardApp(db, "sam", start="work", worker="sam", queue="senior", poll_interval=None)
    async with app.run_test(size=(100, 30), message_hook=rec) as pilot:
        await settle(app, pilot)
        assert app.screen.view["external_id"] == target and app.screen.view["kind"] == "escalated"
        assert "carol=bug" in str(app.screen.query_one("#work-context", Static).render())
        await pilot.press("x")
        await pilot.pause()
        await pilot.press(*"re-read it", "enter")
        await settle(app, pilot)
        d = task(db, target)
        assert d["task"]["stage"] == "correct" and d["reviews"][-1]["verdict"] == "reject"
        assert d["reviews"][-1]["comment"] == "re-read it"


MULTI = """\
workflow: tags
labels: {type: multi_choice, choices: [red, green, blue]}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 1}
on_quorum:
  - do: accept
"""

SPANS = MULTI.replace("type: multi_choice", "type: spans").replace("workflow: tags", "workflow: spans")


def _project(tmp_path, text: str) -> str:
    from router.store import Store

    path = str(tmp_path / "p.db")
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(text, "w.workflow.yaml", actor=LEAD)
    engine.add_worker("ann", ["annotator"], [], None, actor=LEAD)
    inbox = tmp_path / "in.jsonl"
    inbox.write_text("".join(json.dumps({"id": f"x{i}", "data": {"text": f"item {i}"}}) + "\n" for i in range(2)))
    from router.ingest import read_file

    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    engine.close()
    return path


async def test_multi_choice_toggles_with_numbers_and_submits_with_enter(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, MULTI)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        ref = app.screen.view["external_id"]
        await pilot.press("1", "3", "1", "2", "enter")
        await settle(app, pilot)
        t = task(path, ref)
        assert t["task"]["status"] == "done" and t["task"]["final_label"] == ["green", "blue"]


async def test_other_label_types_show_the_data_and_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = _project(tmp_path, SPANS)
    app = LabelyardApp(path, "ann", start="work", worker="ann", poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "item" in str(app.screen.query_one("#work-data", Static).render())
        assert "labeled in the tool" in str(app.screen.query_one("#work-choices", Static).render()) or \
            "labels are made in the tool" in str(app.screen.query_one("#work-choices", Static).render())
        ref = app.screen.view["external_id"]
        await pilot.press("1", "enter")
        await settle(app, pilot)
        assert not task(path, ref)["annotations"]  # nothing submitted


# -- a million tasks ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def million_db(tmp_path_factory) -> str:
    from bench.tui import build_tui_db

    path = tmp_path_factory.mktemp("million") / "m.db"
    return build_tui_db(str(path), 1_000_000, events=False)


async def test_tasks_screen_pages_through_a_million_tasks(million_db):
    app = LabelyardApp(million_db, "lead", start="tasks", poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert screen.total == 1_000_000 and len(screen.rows) == 50
        assert screen.rows[0]["id"] == 1_000_000
        for _ in range(5):
            await pilot.press("n")
            await settle(app, pilot)
        assert screen.rows[0]["id"] == 1_000_000 - 5 * 50 and screen.page_no == 6
        # jump deep by keyset (what paging 10,000 times reaches) and keep paging
        screen.show_page(("after", (None, 500_001)), 10_001)
        await settle(app, pilot)
        assert screen.rows[0]["id"] == 500_000
        await pilot.press("n")
        await settle(app, pilot)
        assert screen.rows[0]["id"] == 499_950 and screen.page_no == 10_002
        await pilot.press("p")  # the rows just above, read backwards by keyset
        await settle(app, pilot)
        assert screen.rows[0]["id"] == 500_000 and screen.page_no == 10_001
        # a filtered list counts from the counters and pages the same way
        screen.set_filter(TaskFilter(status="open", queue="triage"))
        await settle(app, pilot)
        q = queries(million_db)
        assert screen.total == q.count_for(TaskFilter(status="open", queue="triage")) > 100_000
        q.close()
        await pilot.press("n")
        await settle(app, pilot)
        assert {r["queue"] for r in screen.rows} == {"triage"} and len(screen.rows) == 50
        await pilot.press("d")
        await settle(app, pilot)
        assert "1,000,000" in str(app.screen.query_one("#summary", Static).render())


# -- snapshots (the last assertion of their tests) -----------------------------------------------

def test_snapshot_dashboard(db, snap_compare):
    app = LabelyardApp(db, LEAD, poll_interval=None)

    async def run_before(pilot):
        await settle(app, pilot)
        assert app.screen.query_one("#queues", DataTable).row_count == 4

    assert snap_compare(app, terminal_size=(100, 34), run_before=run_before)


def test_snapshot_tasks_at_80x24(db, snap_compare):
    app = LabelyardApp(db, LEAD, start="tasks", poll_interval=None)

    async def run_before(pilot):
        await settle(app, pilot)
        assert len(app.screen.rows) == 50

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_work_screen(db, snap_compare):
    app = LabelyardApp(db, "bob", start="work", worker="bob", poll_interval=None)

    async def run_before(pilot):
        await settle(app, pilot)
        assert app.screen.view is not None

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_a_comment_over_several_lines_shows_as_lines_on_the_correction_slot(db):
    [target] = [r for r in open_task_refs(db, 300, status="open", queue="legal")
                if task(db, r)["task"]["free_slots"] == 2][:1]
    engine = Engine.open(db)
    from router.lead import Lead

    lead = Lead(engine, LEAD)
    lead.run("reassign", [target], to="carol", force=True)
    a = [x for x in engine.store.assignments(engine.store.task(target)["id"]) if x["worker"] == "carol"][-1]
    engine.submit(a["id"], "carol", label="bug")
    lead.run("escalate", [target], queue="senior")
    review = engine.claim("sam", "senior")
    engine.submit(review["assignment"], "sam", verdict="reject", comment="re-read the contract\nthen clause 4")
    from router.work import skip

    for held in engine.store.worker_active_assignments("carol"):  # the screen would resume these first
        skip(engine, held["id"], "carol")
    engine.close()
    app = LabelyardApp(db, "carol", start="work", worker="carol", poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.screen.view["kind"] == "correct" and app.screen.view["external_id"] == target
        shown = str(app.screen.query_one("#work-context", Static).render())
        assert "re-read the contract\nthen clause 4" in shown and "\\x0a" not in shown
