"""The task list: filter (queue, status, stage, worker, text), sort, page by keyset through any number
of rows, select several, and act on them."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState, get_current_worker

from router import queries
from router.queries import ORDERS, PAGE_SIZE, STAGES, TASK_STATUSES, SearchStopped, TaskFilter
from router.render import name_list

from ..messages import Loaded, Searching
from ..widgets import format as fmt
from ..widgets.modals import InputModal, PickModal
from ..widgets.tables import LABEL_WIDTH, cursor_key, restore_cursor
from .base import BaseScreen

STATUS_STYLE = {"open": "", "held": "yellow", "done": "green", "invalid": "red"}
EXTERNAL_WIDTH = 40  # cells of the external id column (a UUID fits); longer ids end in "…" (the detail shows them)


ANY = "*"  # the pick key of "(any)"; every real value's key is VALUE + value, so none is ANY
VALUE = "="


def picked_value(key: str) -> str | None:
    """The filter value a pick key stands for: ``None`` for "(any)", else the value itself."""
    return None if key == ANY else key.removeprefix(VALUE)


Key = tuple[Any, int]  # a row's keyset position in the list's order: (sort value, id)
Ask = tuple[str, Key | None]  # the page a load reads: ("after", key) the page after a key, ("above", key) above a row


def page_number(rows_before: int) -> int:
    """The page number of a page with ``rows_before`` rows above it: page 1 only at the top. A page the
    list followed its task to need not start on a multiple of the page size."""
    return 1 if rows_before <= 0 else -(-rows_before // PAGE_SIZE) + 1


def names_of(names: list[str]) -> str:
    return ("the selected task " if len(names) == 1 else "the selected tasks ") + ", ".join(names)


def task_ref(row: dict[str, Any]) -> str:
    """The reference the table keys a row by and acts with: ``id:N`` (an external id may be a number
    that is another task's id)."""
    return f"id:{row['id']}"


class TasksScreen(BaseScreen):
    """Tasks, one page at a time."""

    BINDINGS = [
        Binding("space", "toggle_select", "Select", id="tasks.select"),
        Binding("n", "next_page", "Next page", id="tasks.next_page"),
        Binding("p", "prev_page", "Prev page", id="tasks.prev_page"),
        # priority: the focused table would otherwise take them to scroll one screen
        Binding("pagedown", "next_page", "Next page", id="tasks.next_page_key", show=False, priority=True),
        Binding("pageup", "prev_page", "Prev page", id="tasks.prev_page_key", show=False, priority=True),
        Binding("slash", "filter_text", "Search", id="tasks.search"),
        Binding("s", "filter_status", "Status", id="tasks.status"),
        Binding("u", "filter_queue", "Queue", id="tasks.queue"),
        Binding("g", "filter_stage", "Stage", id="tasks.stage"),
        Binding("k", "filter_worker", "Worker", id="tasks.worker", show=False),
        Binding("o", "sort", "Sort", id="tasks.sort"),
        Binding("O", "reverse", "Reverse", id="tasks.reverse", show=False),
        Binding("c", "clear_filters", "Clear", id="tasks.clear", show=False),
        Binding("r", "lead('reassign')", "Reassign", id="tasks.reassign"),
        Binding("e", "lead('escalate')", "Escalate", id="tasks.escalate"),
        Binding("h", "lead('hold')", "Hold", id="tasks.hold"),
        Binding("H", "lead('unhold')", "Unhold", id="tasks.unhold", show=False),
        Binding("l", "lead('release')", "Release", id="tasks.release", show=False),
        Binding("P", "lead('priority')", "Priority", id="tasks.priority", show=False),
    ]

    def __init__(self, task_filter: TaskFilter | None = None) -> None:
        super().__init__()
        self.filter = task_filter or TaskFilter()
        self.after: Key | None = None  # the keyset of the page on screen (None: the first page)
        self.page_no = 1  # its number, as the status line says it
        self.asked: Ask = ("after", None)  # the page being read: `after` once it is on screen
        self.next_after: Key | None = None
        self.first_key: Key | None = None  # the first row's keyset position: `p` reads the rows above it
        self.rows: list[dict[str, Any]] = []
        self.total: int | None = None
        self.searched: int | None = None  # a search page: how many tasks it read
        self.selected: set[str] = set()
        self.names: dict[str, str] = {}  # how each selected task was named when the lead selected it
        self._top = False  # put the cursor on the first row at the next render (new filter or page)
        self.shown: tuple[TaskFilter, Ask] | None = None  # the filter and page on screen
        self.shown_page = 1  # that page's number
        self.in_flight: tuple[tuple[TaskFilter, Ask], Worker] | None = None  # the last load started, and for what
        # The task under the cursor (or every selected task) left the list at the last refresh: (what
        # left, the ref the cursor was left on). An action on the latter is asked once more, so it never
        # goes silently to another task.
        self.gone: tuple[str, str | None] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="task-filter")
        yield DataTable(id="tasks", cursor_type="row", zebra_stripes=True)
        yield Static("", id="task-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("", "id", "external", "status", "stage", "queue", "need", "prio",
                                              "pred", "conf", "final", "holders", "age")
        self.reload()

    # -- loading ----------------------------------------------------------------------------
    def set_filter(self, task_filter: TaskFilter) -> None:
        """Show ``task_filter``'s list from its first page. The selection stays: the load checks it
        against the new filter, and the tasks it no longer lists are unselected and named."""
        self.filter = task_filter
        self.asked, self.page_no = ("after", None), 1
        self._top = True
        self.reload()

    def reload(self) -> None:
        loading = self.in_flight
        if (self.page_loading() and loading is not None and loading[0] == (self.filter, self.asked)
                and loading[1].state in (WorkerState.PENDING, WorkerState.RUNNING)):
            return  # that page is on its way: a refresh (a write, the modal closing) would only start it over
        keep = None
        ref = None if self._top or self.page_loading() else self.current_ref()
        if ref is not None:  # a refresh of the page on screen: the task under the cursor stays under it
            keep = (int(ref[3:]), self.query_one(DataTable).cursor_row)
        worker = self.load(self.filter, self.asked, keep, sorted(int(ref[3:]) for ref in self.selected))
        self.in_flight = ((self.filter, self.asked), worker)

    @work(thread=True, exclusive=True, group="tasks", exit_on_error=False)
    def load(self, task_filter: TaskFilter, asked: Ask, keep: tuple[int, int] | None = None,
             selected: list[int] | None = None) -> None:
        """Read the page ``asked`` (after a key, or above a row); with ``keep`` = (task id, row), when
        tasks written meanwhile pushed that task off the page, the page that shows it on that row
        instead. ``selected``: the selected task ids; those the filter no longer lists are posted (``left``).
        A search posts its progress as it reads (``Searching``) and stops when a newer load replaced it."""
        me = get_current_worker()

        def progress(read: int, found: int) -> bool:
            if me.is_cancelled:
                return False
            self.post_message(Searching(task_filter, asked, read, found))
            return True

        how, key = asked
        before = None  # rows above the page, counted when the page followed its task
        try:
            with self.backend.queries() as q:
                if how == "above":
                    after, page = q.task_page_above(task_filter, key, progress=progress)
                else:
                    after, page = key, q.task_page(task_filter, key, progress=progress)
                if keep is not None and all(r["id"] != keep[0] for r in page.rows):
                    moved = q.task_page_at(task_filter, *keep, progress=progress)
                    if moved is not None:
                        after, page, before = moved
                listed = q.tasks_listed(task_filter, selected) if selected else set()
        except SearchStopped:
            return  # the list asked for another page, or another filter, meanwhile
        left = [f"id:{i}" for i in selected or [] if i not in listed]
        self.post_message(Loaded("tasks", (task_filter, asked, after, page, before, keep, left)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The last page asked for could not be read (:class:`BaseScreen`'s handler tells the error)."""
        if event.state == WorkerState.ERROR and self.in_flight is not None and event.worker is self.in_flight[1]:
            self.page_failed()

    def page_failed(self) -> None:
        """The list goes back to the filter and page on screen: the status line says that page again
        and `n`/`p` page from it (they waited for the failed page for good, "loading…"); the next
        refresh, `n` or filter reads again."""
        self.in_flight = None
        self._top = False
        if self.shown is None:  # nothing read yet: nothing to page from
            self.query_one("#task-status", Static).update(
                f"page {self.page_no:,} · not read (the error is in the notice); ctrl+r reads it again")
            return
        (self.filter, self.asked), self.page_no = self.shown, self.shown_page
        self.render_status_only()

    @on(Searching)
    def searching(self, message: Searching) -> None:
        """How far the search of the page being read got, on the status line."""
        if (message.task_filter, message.asked) == (self.filter, self.asked) and self.page_loading():
            self.query_one("#task-status", Static).update(
                f"page {self.page_no:,} · searching: {message.read:,} tasks read, {message.found:,} found "
                f"(at most {queries.SEARCH_ROWS:,} a page)")

    @on(Loaded)
    def loaded(self, message: Loaded) -> None:
        task_filter, asked, after, page, before, keep, left = message.data
        if task_filter != self.filter or asked != self.asked:
            return  # an answer to an older question
        gone = None
        if before is not None:  # the page followed the cursor's task
            self.page_no = page_number(before)
        elif asked[0] == "above":  # while it loaded the counter said one less; 1 only at the top
            self.page_no = 1 if after is None else max(2, self.page_no)
        elif keep is not None and all(r["id"] != keep[0] for r in page.rows):
            # Not when the lead's own action took it off the list (every reload until their next
            # action: the action's own reload and a poll's may both see it go).
            if f"id:{keep[0]}" not in self.app.acted:
                gone = next((r for r in self.rows if r["id"] == keep[0]), {"id": keep[0], "external_id": None})
        self.asked = ("after", after)
        self.after, self.rows, self.next_after, self.total = after, page.rows, page.next_after, page.total
        self.first_key, self.searched = page.first_key, page.searched
        self.shown, self.shown_page = (task_filter, self.asked), self.page_no
        unselected = self.unselect(left)
        self.render_rows()
        if gone is not None:
            name = f"task {fmt.clean(gone['external_id'])} (id:{gone['id']})" if gone["external_id"] is not None \
                else f"task id:{gone['id']}"
            landed = self.current_ref()
            self.gone = (name, landed)
            where = f"; the cursor is on {self.ref_name(landed)}" if landed else ""
            self.notify(f"{name} left this list{where}", severity="warning")
        if unselected:
            what = names_of(unselected)
            self.notify(f"{what} left this list and {'is' if len(unselected) == 1 else 'are'} no longer selected",
                        severity="warning")
            if not self.selected and gone is None:  # the next action would go to the cursor's task instead
                self.gone = (what, self.current_ref())

    def unselect(self, left: list[str]) -> list[str]:
        """Take the tasks in ``left`` (which the filter no longer lists) out of the selection; the
        names of those that went by someone else's hand, to tell the lead."""
        told = []
        for ref in left:
            if ref in self.selected:
                self.selected.discard(ref)
                name = self.names.pop(ref, ref)
                if ref not in self.app.acted:
                    told.append(name)
        return told

    def render_rows(self) -> None:
        table = self.query_one(DataTable)
        key, cursor = (None, 0) if self._top else (cursor_key(table), table.cursor_row)
        if self._top:
            self.gone = None
        self._top = False
        table.clear()
        now = self.now()
        for r in self.rows:
            ref = task_ref(r)
            mark = Text("●", style="bold cyan") if ref in self.selected else ""
            table.add_row(mark, str(r["id"]), fmt.cut(r["external_id"], EXTERNAL_WIDTH),
                          Text(r["status"], style=STATUS_STYLE.get(r["status"], "")),
                          fmt.plain(r["stage"]), fmt.plain(r["queue"]),
                          str(r["needed"]) if r["status"] == "open" else "",
                          f"{r['priority']:.2f}", fmt.cut(fmt.label(r["pred_label"]), LABEL_WIDTH),
                          fmt.num(r["pred_confidence"]),
                          fmt.cut(fmt.label(r["final_label"]), LABEL_WIDTH), fmt.cut(name_list(r["holders"]), LABEL_WIDTH),
                          self.age_cell(r, now), key=ref)
        restore_cursor(table, key, cursor)
        self.query_one("#task-filter", Static).update(fmt.line(("Tasks", "bold"), "  ", self.filter.describe()))
        self.render_status_only()

    def now(self) -> float:
        import time

        return self.app.now() if hasattr(self.app, "now") else time.time()

    @staticmethod
    def age_cell(row: dict[str, Any], now: float) -> str:
        """The age column: how long an open task has been in its stage."""
        return fmt.age(now - row["stage_at"]) if row["status"] == "open" else ""

    def time_passed(self) -> None:
        """The age column counts from now: its cells are written again from the rows on screen (no
        read; the list's order does not change with the clock)."""
        if self.page_loading():
            return  # the page asked for is on its way, with its own ages
        table = self.query_one(DataTable)
        column = table.ordered_columns[-1].key
        now = self.now()
        for r in self.rows:
            ref = task_ref(r)
            if ref in table.rows:
                table.update_cell(ref, column, self.age_cell(r, now))

    # -- paging -----------------------------------------------------------------------------
    def page_loading(self) -> bool:
        """Whether the page asked for (a new filter, `n`, `p`) is not on screen yet."""
        return self.shown != (self.filter, self.asked)

    def show_page(self, asked: Ask, page_no: int) -> None:
        """Read the page ``asked`` with the cursor on its first row; the status line says ``page_no``
        while it loads."""
        self.asked, self.page_no = asked, page_no
        self._top = True
        self.render_status_only()
        self.reload()

    def action_next_page(self) -> None:
        if self.page_loading():
            return  # the rows on screen are not the page asked for: their next key would repeat a page
        if self.next_after is None:
            self.notify("last page")
            return
        self.show_page(("after", self.next_after), self.page_no + 1)

    def action_prev_page(self) -> None:
        """The rows just above the first one shown (by keyset backwards, not a page remembered: after
        the list followed its task, "what came above" is what is above it now)."""
        if self.page_loading() or self.after is None:
            return  # the first page has nothing above it
        self.show_page(("above", self.first_key), max(1, self.page_no - 1))

    # -- selection ---------------------------------------------------------------------------
    def current_ref(self) -> str | None:
        return cursor_key(self.query_one(DataTable))

    def action_toggle_select(self) -> None:
        ref = self.current_ref()
        if ref is None:
            return
        if ref in self.selected:
            self.selected.discard(ref)
            self.names.pop(ref, None)
        else:
            self.selected.add(ref)
            self.names[ref] = self.ref_name(ref)
        table = self.query_one(DataTable)
        table.update_cell(ref, table.ordered_columns[0].key,
                          Text("●", style="bold cyan") if ref in self.selected else "")
        table.action_cursor_down()
        self.render_status_only()

    def render_status_only(self) -> None:
        """The status line: page, rows, total, whether this is the last page, and the selection."""
        page = self.page_no
        if self.page_loading():
            self.query_one("#task-status", Static).update(f"page {page:,} · loading…")
            return
        sel = f"   selected {len(self.selected)}" if self.selected else ""
        if self.searched is not None and self.next_after is not None and len(self.rows) < PAGE_SIZE:
            # a search page whose matches are rare: it stopped after SEARCH_ROWS tasks
            found = f"{len(self.rows)} row{'' if len(self.rows) == 1 else 's'}"
            self.query_one("#task-status", Static).update(
                f"page {page:,} · {found} in the {self.searched:,} tasks searched; n searches on{sel}")
            return
        total = "?" if self.total is None else f"{self.total:,}"
        more = "" if self.next_after is not None else " (last page)"
        self.query_one("#task-status", Static).update(f"page {page:,} · {len(self.rows)} rows of {total}{more}{sel}")

    def selected_refs(self) -> list[str]:
        if self.selected:
            return sorted(self.selected, key=lambda ref: int(ref[3:]))
        ref = self.current_ref()
        return [ref] if ref else []

    def ref_name(self, ref: str) -> str:
        shown = next((r["external_id"] for r in self.rows if f"id:{r['id']}" == ref), None)
        return ref if shown is None else f"{shown} ({ref})"

    def action_lead(self, action: str) -> None:
        if self.gone is not None and not self.selected:
            (name, landed), self.gone = self.gone, None
            if landed is not None and self.current_ref() == landed:
                self.notify(f"{name} left this list: the cursor is on {self.ref_name(landed)} now; "
                            "press again to act on it", severity="warning")
                return
        self.lead_action(action)

    def after_action(self) -> None:
        self.selected.clear()  # a failed action keeps the selection, to try again
        self.names.clear()

    @on(DataTable.RowSelected)
    def open_detail(self, event: DataTable.RowSelected) -> None:
        from .detail import TaskDetailScreen

        self.app.push_screen(TaskDetailScreen(event.row_key.value))

    # -- filters ------------------------------------------------------------------------------
    def action_filter_text(self) -> None:
        self.app.push_screen(InputModal("Search id, external id, category or data values, any case (empty: no search)",
                                        value=self.filter.text or ""),
                             lambda t: t is not None and self.set_filter(self.filter.with_(text=t.strip() or None)))

    def _pick(self, title: str, field: str, values: list[str]) -> None:
        """Filter ``field`` on one of ``values`` ("" is "(none)") or on any value."""
        items = [(ANY, "(any)")] + [(VALUE + v, v or "(none)") for v in values]

        def picked(key: str | None) -> None:
            if key is not None:
                self.set_filter(self.filter.with_(**{field: picked_value(key)}))

        self.app.push_screen(PickModal(title, items), picked)

    def action_filter_status(self) -> None:
        self._pick("Status", "status", list(TASK_STATUSES))

    def action_filter_stage(self) -> None:
        self._pick("Stage", "stage", list(STAGES))

    def action_filter_queue(self) -> None:
        queues = list(((self.app.workflow or {}).get("queues") or {}))
        self._pick("Queue", "queue", queues + [""])

    def action_filter_worker(self) -> None:
        self._pick("Worker (tasks they had a slot of)", "worker", list(self.app.worker_names))

    def action_sort(self) -> None:
        i = ORDERS.index(self.filter.order)
        self.set_filter(self.filter.with_(order=ORDERS[(i + 1) % len(ORDERS)]))

    def action_reverse(self) -> None:
        self.set_filter(self.filter.with_(descending=not self.filter.descending))

    def action_clear_filters(self) -> None:
        self.set_filter(TaskFilter())
