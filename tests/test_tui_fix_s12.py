"""The TUI where the twelfth session's tester left it, on real SQLite files, through Textual's pilot
(``LABELYARD_NOW`` for the time, no sleeps but pilot pauses); costs are SQLite's VM steps, never time.

1. The workers screen joined roles with bare commas: the one role `qa, senior` read like two roles.
   It writes roles and skills as ``labelyard workers list`` does (``router.render.name_list``).
2. The task list sorted by priority, age or last change sorted every task the filter listed for each
   page (~0.3 s a page at 1M tasks). Each order walks its own index now (migration m014), with a
   keyset in two parts so that the many tasks sharing a priority or a stage time are not stepped
   through again on each page.
3. A search with no cheap match called Python on every row, and read the whole table before its
   first page (~1.6 s at 1M tasks). SQL decides plain ASCII text (``LIKE``, ``json_tree``), a
   search page reads at most ``SEARCH_ROWS`` tasks and says how far it got, and `n` searches on.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from textual.widgets import DataTable, Input, Static

import router.queries as queries_module
from router.engine import Engine
from router.queries import Queries, SearchStopped, TaskFilter
from router.store import Store
from test_scale_paths import steps  # SQLite VM steps a call takes, never time
from test_tui import LEAD, NOW, anyio_backend, settle  # noqa: F401
from tui.app import LabelyardApp
from tui.messages import Searching
from tui.screens.tasks import TasksScreen
from tui.widgets.modals import InputModal

HOUR = 3600

WORKFLOW = """\
workflow: s12
labels: {type: choice, choices: [cat, dog]}
queues:
  q: {roles: [annotator]}
  review: {roles: ["qa, senior", lead], skills: ["x,y"]}
on_create:
  - do: {annotate: q, overlap: 1}
"""

TASK_SQL = ("INSERT INTO tasks (id, external_id, category, data, status, stage, queue, needed, free_slots, priority, "
            "created_at, updated_at, stage_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 1, ?, ?, ?, ?)")


def project(path: str) -> None:
    """An empty project with the workflow applied and the lead LEAD."""
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(WORKFLOW, "s12.workflow.yaml", actor=LEAD)
    engine.add_worker(LEAD, ["lead"], [], None, actor=LEAD)
    engine.close()


def fill(path: str, rows: list[tuple]) -> None:
    """Tasks written around the store, as a bulk load does: one transaction, then the counters recounted.
    Each row: (id, external id, category, data, status, priority, updated_at, stage_at)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(TASK_SQL, [(i, ext, cat, data, status, "annotate" if status == "open" else None,
                                 "q" if status == "open" else None, prio, 0.0, upd, stage)
                                for i, ext, cat, data, status, prio, upd, stage in rows])
    conn.execute("COMMIT")
    conn.close()
    store = Store.open(path)
    store.recount_counters()
    store.close()


def tasks(n: int, start: int = 1) -> list[tuple]:
    """``n`` tasks from id ``start``: most share priority 0 and one stage time (an ingest's), a few
    stand out; every fifth is done; the data's keys are ``subject`` and ``customer``."""
    out = []
    for i in range(start, start + n):
        prio = float(i % 7) if i % 97 == 0 else 0.0
        out.append((i, f"T-{i:06d}", "ticket", json.dumps({"subject": f"ticket {i}", "customer": f"c{i % 13}"}),
                    "done" if i % 5 == 0 else "open", prio, 1000.0 + (i % 3), 500.0 + (i % 11 == 0)))
    return out


@pytest.fixture
def db(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = str(tmp_path / "labelyard.db")
    project(path)
    return path


def row(table: DataTable, key: str) -> list[str]:
    return [str(cell) for cell in table.get_row(key)]


def status_line(app) -> str:
    return str(app.screen.query_one("#task-status", Static).render())


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


# -- 2. sorted pages by index ----------------------------------------------------------------------

def _deep_after(q: Queries, f: TaskFilter, pages: int):
    """The ``after`` of page ``pages + 1`` (walking ``n`` there)."""
    after = None
    for _ in range(pages):
        after = q.task_page(f, after, with_total=False).next_after
    return after


@pytest.mark.parametrize("order", ["priority", "updated", "age"])
def test_a_sorted_page_costs_the_same_at_ten_times_the_tasks(tmp_path, monkeypatch, order):
    """VM steps of the first page and of a page 40 pages deep (in the block of tasks that share
    priority 0 or a stage time), at 2,500 and at 25,000 tasks. Before: each page sorted every task."""
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    costs = {}
    for n in (2_500, 25_000):
        path = str(tmp_path / f"{order}-{n}.db")
        project(path)
        fill(path, tasks(n))
        q = Queries.open(path)
        for descending in (True, False):
            f = TaskFilter(order=order, descending=descending)
            deep = _deep_after(q, f, 40)
            costs[n, descending] = (steps(q.store.conn, lambda: q.task_page(f, with_total=False)),
                                    steps(q.store.conn, lambda: q.task_page(f, deep, with_total=False)))
        q.store.close()
    for descending in (True, False):
        small, large = costs[2_500, descending], costs[25_000, descending]
        assert large[0] <= small[0] + 3 and large[1] <= small[1] + 3, (order, descending, small, large)
        assert large[1] <= 2 * large[0] + 3, (order, descending, large)  # deep within ties costs a first page


def test_sorted_pages_list_every_task_once_in_order_forward_and_back(db):
    fill(db, tasks(700))
    q = Queries.open(db)
    for order, field in (("priority", 5), ("updated", 6), ("age", 7)):
        for status in (None, "open", "done"):
            for descending in (True, False):
                f = TaskFilter(order=order, descending=descending, status=status)
                rows = [t for t in tasks(700) if status is None or t[4] == status]
                # age↓ is the oldest first: stage_at ascending
                turned = descending != (order == "age")
                expected = [t[0] for t in sorted(rows, key=lambda t: (t[field], t[0]), reverse=turned)]
                seen, after, firsts = [], None, []
                while True:
                    page = q.task_page(f, after, with_total=False)
                    seen += [r["id"] for r in page.rows]
                    firsts.append((after, page.first_key))
                    if page.next_after is None:
                        break
                    after = page.next_after
                assert seen == expected, (order, status, descending)
                # `p` from each page reads the page before it
                for (previous_after, _), (_, first_key) in zip(firsts, firsts[1:]):
                    above_after, above = q.task_page_above(f, first_key)
                    assert above_after == previous_after
    q.store.close()


def test_a_narrow_filter_sorts_its_few_tasks_and_a_wide_one_walks_the_index(db):
    """Which read the counters choose: 140 held tasks of the lowest priority among 25,000 are sorted
    (walking the priority index down to them would read every other task first); the ~20,000 open
    ones walk it."""
    fill(db, tasks(24_860) + [(i, f"H-{i}", "x", "{}", "held", -1.0, 0.0, 0.0) for i in range(30_000, 30_140)])
    store = Store.open(db)
    q = Queries(store)
    plans = []
    store.conn.set_trace_callback(plans.append)
    held = q.task_page(TaskFilter(order="priority", status="held"), with_total=False)
    opened = q.task_page(TaskFilter(order="priority", status="open"), with_total=False)
    store.conn.set_trace_callback(None)
    assert [r["id"] for r in held.rows] == list(range(30_139, 30_089, -1))
    assert all(r["status"] == "open" for r in opened.rows) and len(opened.rows) == 50
    listed = [s for s in plans if "FROM tasks AS t" in s]
    assert "INDEXED BY tasks_list_priority" not in listed[0] and "INDEXED BY tasks_list_priority" in listed[1]
    few = steps(store.conn, lambda: q.task_page(TaskFilter(order="priority", status="held"), with_total=False))
    wide = steps(store.conn, lambda: q.task_page(TaskFilter(order="priority", status="open"), with_total=False))
    assert few < 300 and wide < 100, (few, wide)
    store.close()


def test_the_migration_gives_an_existing_database_the_order_indexes(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = str(tmp_path / "old.db")
    project(path)
    conn = sqlite3.connect(path)
    for name in ("tasks_list_priority", "tasks_list_age", "tasks_list_updated"):
        conn.execute(f"DROP INDEX {name}")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm014_task_list_orders'")
    conn.execute("UPDATE schema_version SET version = 13")
    conn.commit()
    conn.close()
    store, applied = Store.init(path)
    names = {r[1] for r in store.conn.execute("PRAGMA index_list(tasks)")}
    store.close()
    assert "m014_task_list_orders" in applied
    assert {"tasks_list_priority", "tasks_list_age", "tasks_list_updated"} <= names


@pytest.mark.anyio
async def test_the_tui_pages_through_tasks_sharing_a_priority_by_n_and_p(db):
    fill(db, tasks(260))
    app = LabelyardApp(db, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        await pilot.press("o")  # sort: priority↓
        await settle(app, pilot)
        assert screen.filter.order == "priority"
        expected = [t[0] for t in sorted(tasks(260), key=lambda t: (t[5], t[0]), reverse=True)]
        pages = [[r["id"] for r in screen.rows]]
        while screen.next_after is not None:
            await pilot.press("n")
            await settle(app, pilot)
            pages.append([r["id"] for r in screen.rows])
        assert sum(pages, []) == expected and len(pages) == 6
        assert "(last page)" in status_line(app)
        for back in range(len(pages) - 2, -1, -1):
            await pilot.press("p")
            await settle(app, pilot)
            assert [r["id"] for r in screen.rows] == pages[back]
        assert status_line(app).startswith("page 1 ·")


# -- 3. search: in SQL where it can, bounded pages, progress -------------------------------------------

@pytest.fixture
def python_calls(monkeypatch) -> list[str]:
    """The rows the search's Python functions read (patched before any connection registers them)."""
    import router.task_search as task_search

    calls: list[str] = []
    matches, contains = task_search.matches, task_search.contains

    def counted_matches(external_id, data, needle):
        calls.append(data)
        return matches(external_id, data, needle)

    def counted_contains(text, needle):
        calls.append(text)
        return contains(text, needle)

    monkeypatch.setattr(task_search, "matches", counted_matches)
    monkeypatch.setattr(task_search, "contains", counted_contains)
    return calls


def found(path: str, text: str, **filters) -> list[str]:
    store = Store.open(path)
    try:
        return sorted(r["external_id"] for r in store.task_page(text=text, limit=1000, **filters))
    finally:
        store.close()


def test_a_key_name_in_every_rows_data_is_turned_down_in_sql(db, python_calls):
    """`customer` is a key of every task's data and no value: before, Python read every row."""
    fill(db, tasks(400) + [(900, "odd", "x", json.dumps({"note": "the customer called"}), "open", 0, 0, 0)])
    assert found(db, "customer") == ["odd"]
    assert found(db, "CUSTOMER") == ["odd"]
    assert found(db, "subject") == []
    assert python_calls == []
    assert found(db, "ticket 39") == ["T-000039", "T-000390", "T-000391", "T-000392", "T-000393", "T-000394",
                                      "T-000395", "T-000396", "T-000397", "T-000398", "T-000399"]
    assert python_calls == []
    # where SQL cannot decide, Python still does: a number's text, and text beyond ASCII
    fill(db, [(901, "num", None, json.dumps({"amount": 4.50}), "open", 0, 0, 0),
              (902, "café", "Straße", json.dumps({"shop": "CAFÉ"}), "open", 0, 0, 0)])
    assert found(db, "4.5") == ["num"] and found(db, "café") == ["café"] and found(db, "STRASSE") == ["café"]
    assert python_calls


def test_search_finds_a_task_by_its_category(db):
    fill(db, [(1, "a", "Medical", "{}", "open", 0, 0, 0), (2, "b", "billing", "{}", "open", 0, 0, 0),
              (3, "c", None, "{}", "open", 0, 0, 0), (4, "d", "Straße", "{}", "open", 0, 0, 0)])
    assert found(db, "medic") == ["a"] and found(db, "BILL") == ["b"] and found(db, "strasse") == ["d"]


@pytest.fixture
def small_search(monkeypatch):
    """Search pages of at most 1,000 tasks, progress every 250."""
    monkeypatch.setattr(queries_module, "SEARCH_ROWS", 1_000)
    monkeypatch.setattr(queries_module, "SEARCH_STEP", 250)


def test_a_search_page_reads_at_most_search_rows_tasks_however_many_there_are(tmp_path, monkeypatch, small_search):
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    costs = {}
    for n in (3_000, 30_000):
        path = str(tmp_path / f"s{n}.db")
        project(path)
        fill(path, tasks(n))
        q = Queries.open(path)
        for order in ("id", "priority"):
            f = TaskFilter(text="customer", order=order)
            page = q.task_page(f)
            assert page.rows == [] and page.searched == 1_000 and page.next_after is not None
            costs[n, order] = steps(q.store.conn, lambda: q.task_page(f))
        q.store.close()
    for order in ("id", "priority"):
        # before: every task, ten times more; ~1% more at 30,000: the index is a level deeper
        assert costs[30_000, order] <= 1.02 * costs[3_000, order] + 3, costs


def test_n_searches_on_from_where_a_page_stopped_and_p_goes_back(db, small_search):
    fill(db, tasks(4_000) + [(5_000 + i, f"M-{i}", None, json.dumps({"note": "needle"}), "open", 0, 0, 0)
                             for i in range(3)])
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET data = json_object('note', 'needle') WHERE id IN (1200, 1100, 5)")
    conn.commit()
    conn.close()
    q = Queries.open(db)
    f = TaskFilter(text="NEEDLE")
    pages, after, afters = [], None, []
    while True:
        page = q.task_page(f, after)
        pages.append(([r["id"] for r in page.rows], page.searched))
        afters.append(after)
        if page.next_after is None:
            break
        after = page.next_after
    # id↓ from 5002: 5002-5000 and 4000-3004, then 3003-2004, 2003-1004, 1003-4 and 3-1
    assert pages == [([5002, 5001, 5000], 1_000), ([], 1_000), ([1200, 1100], 1_000), ([5], 1_000), ([], 3)]
    for i in range(1, len(pages)):  # `p` reads the page before again
        first = q.task_page(f, afters[i]).first_key
        above_after, above = q.task_page_above(f, first)
        assert above_after == afters[i - 1] and [r["id"] for r in above.rows] == pages[i - 1][0]
    # a page full of matches stops at its page
    page = q.task_page(TaskFilter(text="ticket"))
    assert len(page.rows) == 50 and page.searched is None and page.next_after == (None, page.rows[-1]["id"])
    q.store.close()


def test_a_search_whose_progress_says_stop_stops_reading(db, small_search):
    fill(db, tasks(3_000))
    q = Queries.open(db)
    told = []

    def progress(read: int, hits: int) -> bool:
        told.append((read, hits))
        return read < 500

    with pytest.raises(SearchStopped):
        q.task_page(TaskFilter(text="zzz"), progress=progress)
    assert told == [(250, 0), (500, 0)]
    q.store.close()


@pytest.mark.anyio
async def test_the_tui_search_shows_its_progress_and_searches_on_with_n(db, small_search):
    fill(db, tasks(2_400))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET data = json_object('note', 'rare find') WHERE id = 900")
    conn.commit()
    conn.close()
    progress: list[tuple[int, int]] = []

    def hook(message) -> None:
        if isinstance(message, Searching):
            progress.append((message.read, message.found))

    app = LabelyardApp(db, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(140, 40), message_hook=hook) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.screen, InputModal)
        app.screen.query_one(Input).value = "rare"
        await pilot.press("enter")
        await settle(app, pilot)
        assert screen.rows == [] and progress[:4] == [(250, 0), (500, 0), (750, 0), (1000, 0)]
        assert status_line(app) == "page 1 · 0 rows in the 1,000 tasks searched; n searches on"
        await pilot.press("n")
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == [900]
        assert status_line(app) == "page 2 · 1 row in the 1,000 tasks searched; n searches on"
        await pilot.press("n")
        await settle(app, pilot)
        assert screen.rows == [] and status_line(app) == "page 3 · 0 rows of ? (last page)"
        await pilot.press("p")
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == [900]
        # the status line while a page is read says how far the search got
        screen.asked = ("after", (None, 10**9))  # a page not on screen yet
        screen.post_message(Searching(screen.filter, screen.asked, 250, 1))
        await pilot.pause()
        assert status_line(app) == "page 2 · searching: 250 tasks read, 1 found (at most 1,000 a page)"


@pytest.mark.anyio
async def test_a_write_while_a_search_page_loads_does_not_start_it_over(db, monkeypatch, small_search):
    """Every poll that saw a write reloaded the list: a search slower than the polls started over each
    second and never showed. The page on its way is left to come."""
    import threading

    from tui.messages import DataChanged

    fill(db, tasks(2_400))
    gate, calls = threading.Event(), []
    original = Queries.task_page

    def held(q, f, *args, **kwargs):
        if f.text:
            calls.append(f.text)
            assert gate.wait(60), "the gate was never opened"
        return original(q, f, *args, **kwargs)

    monkeypatch.setattr(Queries, "task_page", held)
    app = LabelyardApp(db, LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        screen.set_filter(screen.filter.with_(text="ticket 23"))
        for _ in range(3):
            await pilot.pause(0.05)
            screen.post_message(DataChanged())
        await pilot.pause(0.05)
        assert screen.page_loading()
        gate.set()
        await settle(app, pilot)
        assert calls == ["ticket 23"]
        assert [r["id"] for r in screen.rows][:3] == [2399, 2398, 2397]
        screen.post_message(DataChanged())  # the page on screen refreshes as before
        await settle(app, pilot)
        assert calls == ["ticket 23", "ticket 23"]
