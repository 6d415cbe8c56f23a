"""The roster: roles, skills, state, load, throughput, gold accuracy and agreement; pause and resume,
flag and unflag (``F``: as ``labelyard workers set NAME --flag/--unflag``, the same event).

Names, roles and skills read as ``labelyard workers list`` writes them (:func:`router.render.name_list`): a
role that holds a comma, such as ``qa, senior``, is in double quotes, never like two roles, and a name
an older version stored with a control character is quoted with it escaped (``"ev\\u001b]0;x"``)."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from router.render import listed_name, name_list

from ..messages import ActionDone, ActionFailed, Loaded
from ..widgets import format as fmt
from ..widgets.modals import ConfirmModal, InputModal
from ..widgets.tables import NAME_WIDTH, cursor_key, restore_cursor
from .base import BaseScreen


class WorkersScreen(BaseScreen):
    """Every worker and how they are doing."""

    BINDINGS = [
        Binding("x", "toggle_pause", "Pause/resume", id="workers.pause"),
        Binding("F", "toggle_flag", "Flag/unflag", id="workers.flag"),
        Binding("enter", "tasks", "Their tasks", id="workers.tasks", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("[b]Workers[/b]  load = active slots / capacity · 24h = submissions · "
                     "agree = votes equal to the final label", id="workers-head")
        yield DataTable(id="roster", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("worker", "roles", "skills", "load", "24h", "gold", "gold n",
                                              "agree", "decided", "state")
        self.reload()

    def reload(self) -> None:
        self.load()

    def time_passed(self) -> None:
        self.load()  # the 24h column counts the last 24 hours

    @work(thread=True, exclusive=True, group="workers", exit_on_error=False)
    def load(self) -> None:
        with self.backend.queries() as q:
            self.post_message(Loaded("workers", q.worker_rows()))

    @on(Loaded)
    def loaded(self, message: Loaded) -> None:
        self.rows = message.data
        table = self.query_one(DataTable)
        key, cursor = cursor_key(table), table.cursor_row
        table.clear()
        for w in self.rows:
            cap = "∞" if w["capacity"] is None else w["capacity"]
            state = fmt.worker_state(w)
            table.add_row(fmt.cut(listed_name(w["id"]), NAME_WIDTH), fmt.plain(name_list(w["roles"])),
                          fmt.plain(name_list(w["skills"], "-")),
                          f"{w['active']}/{cap}", f"{w['submitted_recent']:,}", fmt.pct(w["gold_accuracy"]),
                          str(w["gold_answered"]), fmt.pct(w["agreement"]), str(w["decided"] or 0),
                          fmt.plain(state, "yellow" if state else ""), key=w["id"])
        restore_cursor(table, key, cursor)

    def current(self) -> dict[str, Any] | None:
        key = cursor_key(self.query_one(DataTable))
        return next((w for w in self.rows if w["id"] == key), None)

    def action_toggle_pause(self) -> None:
        w = self.current()
        if w is None:
            return
        if w["paused"]:
            self.app.push_screen(ConfirmModal(f"Resume {w['id']}?"),
                                 lambda yes: yes and self.run_pause(w["id"], False, None))
        else:
            self.app.push_screen(InputModal(f"Pause {w['id']}: reason (optional; Escape cancels)"),
                                 lambda r: r is not None and self.run_pause(w["id"], True, r or None))

    def action_toggle_flag(self) -> None:
        w = self.current()
        if w is None:
            return
        name, flag = listed_name(w["id"]), not w["flagged"]
        if flag:
            question = (f"Flag {name}?", "Their votes show as votes.any_flagged to the on_quorum rules.")
        else:
            question = (f"Unflag {name}?", "Their votes no longer show as votes.any_flagged.")
        self.app.push_screen(ConfirmModal(*question), lambda yes: yes and self.run_flag(w["id"], flag))

    @work(thread=True, group="action", exit_on_error=False)
    def run_flag(self, worker: str, flagged: bool) -> None:
        from router.errors import LabelyardError

        action = "flag" if flagged else "unflag"
        try:
            changed = self.backend.set_flagged(worker, flagged)
        except LabelyardError as exc:
            self.post_message(ActionFailed(action, str(exc)))
            return
        done = {"worker": worker}
        report = ({"done": [done], "skipped": []} if changed else
                  {"done": [], "skipped": [{**done, "reason": "already flagged" if flagged else "not flagged"}]})
        self.post_message(ActionDone(action, report))

    @on(DataTable.RowSelected)
    def selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_tasks(worker=event.row_key.value)

    def action_tasks(self) -> None:
        w = self.current()
        if w:
            self.app.open_tasks(worker=w["id"])

