"""The dashboard: queues (waiting, active, oldest, SLA breaches, agreement), workers (load, throughput,
gold accuracy, agreement), throughput per hour as a chart, and alerts."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Sparkline, Static

from router.errors import NoWorkflow

from ..messages import Loaded
from ..widgets import format as fmt
from ..widgets.tables import NAME_WIDTH, cursor_key, restore_cursor
from .base import BaseScreen

SLOW_EVERY = 30.0  # seconds between agreement recomputations


class DashboardScreen(BaseScreen):
    """Where work stands and what is going wrong, at a glance."""

    AUTO_FOCUS = "#queues"  # the arrows move the queue cursor at once (the page scroll took them)
    BINDINGS = [
        # priority: the focused table's own (hidden) Enter would take it, and the footer would lose the key
        Binding("enter", "open_queue", "Queue's tasks", id="dashboard.open_queue", priority=True),
        Binding("a", "agreement", "Agreement now", id="dashboard.agreement"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] | None = None
        self.slow: dict[str, Any] | None = None
        self._slow_at = -1e9

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("loading…", id="summary")
            yield DataTable(id="queues", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="charts"):
                yield Static("submissions / hour (24 h)", id="chart-label")
                yield Sparkline([], id="throughput")
            yield DataTable(id="workers", cursor_type="row", zebra_stripes=True)
            yield Static("", id="alerts")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#queues", DataTable).add_columns("queue", "waiting", "active", "open", "held", "oldest",
                                                         "SLA late", "agreement")
        self.query_one("#workers", DataTable).add_columns("worker", "load", "24h", "gold", "agree", "state")
        self.reload()

    def reload(self) -> None:
        self.load()

    def on_screen_resume(self) -> None:
        """Back on the dashboard, the keys go to a table again: the one the lead left, else the queues
        (the page scroll, when a click gave it the focus, would take the arrows and Enter). The
        reload is :class:`BaseScreen`'s own handler (Textual calls each class's)."""
        if self.focused not in (self.query_one("#queues"), self.query_one("#workers")):
            self.query_one("#queues", DataTable).focus()

    def time_passed(self) -> None:
        """Ages, SLA breaches and the 24 h figures move with the clock: the cheap read again, without
        agreement (which only a write changes)."""
        self.load(slow=False)

    @work(thread=True, exclusive=True, group="dashboard", exit_on_error=False)
    def load(self, slow: bool = True) -> None:
        import time

        with self.backend.queries() as q:
            self.post_message(Loaded("dashboard", q.dashboard()))
            if slow and time.monotonic() - self._slow_at > SLOW_EVERY:
                self._slow_at = time.monotonic()
                try:
                    slow = q.slow_stats()
                except NoWorkflow:
                    slow = None  # nothing to measure yet; the summary says "no workflow applied"
                self.post_message(Loaded("agreement", slow))

    def action_agreement(self) -> None:
        self._slow_at = -1e9
        self.reload()

    @on(Loaded)
    def loaded(self, message: Loaded) -> None:
        if message.what == "dashboard":
            self.data = message.data
        elif message.what == "agreement":
            self.slow = message.data
        self.render_data()

    def render_data(self) -> None:
        d = self.data
        if d is None:
            return
        wf = d["workflow"]
        t = d["counts"]["tasks"]
        if wf:
            head = fmt.line((wf["name"], "bold"), f" v{wf['version']}   ")
        else:
            head = fmt.line(("no workflow applied", "bold"), "   ")
        head.append(f"tasks {d['counts']['total']:,}: open {t['open']:,} · held {t['held']:,} · done {t['done']:,}"
                    f" · invalid {t['invalid']:,}")
        if self.slow and self.slow["overall"].get(self.slow["metric"]) is not None:
            o = self.slow["overall"]
            head.append_text(fmt.line(f"   {self.slow['metric']} {fmt.num(o[self.slow['metric']])} ({o['band']})"))
        self.query_one("#summary", Static).update(head)

        queues = self.query_one("#queues", DataTable)
        key, cursor = cursor_key(queues), queues.cursor_row
        queues.clear()
        slow_q = (self.slow or {}).get("queues", {})
        metric = (self.slow or {}).get("metric", "fleiss_kappa")
        for q in d["queues"]:
            agree = slow_q.get(q["name"])
            late = Text("-" if q["sla"] is None else f"{q['breaches']:,}{'+' if q['breaches_capped'] else ''}",
                        style="bold red" if q["breaches"] else "")
            queues.add_row(fmt.plain(q["name"]), fmt.count(q["waiting"]), fmt.count(q["active"]),
                           fmt.count(q["open"]),
                           fmt.count(q["held"], "yellow"), fmt.age(q["oldest_age"]), late,
                           fmt.banded(agree.get(metric), agree.get("band")) if agree else Text("-", style="dim"),
                           key=q["name"])
        restore_cursor(queues, key, cursor)

        self.query_one("#throughput", Sparkline).data = d["throughput"]["submitted"]
        total = sum(d["throughput"]["submitted"])
        finals = sum(d["throughput"]["final"])
        self.query_one("#chart-label", Static).update(f"24 h: {total:,} submissions, {finals:,} final ")

        workers = self.query_one("#workers", DataTable)
        key, cursor = cursor_key(workers), workers.cursor_row
        workers.clear()
        annot = (self.slow or {}).get("annotators", {})
        for w in d["workers"]:
            cap = "∞" if w["capacity"] is None else w["capacity"]
            state = fmt.worker_state(w)
            a = annot.get(w["id"], {})
            workers.add_row(fmt.cut(w["id"], NAME_WIDTH), f"{w['active']}/{cap}", f"{w['submitted_recent']:,}",
                            fmt.pct(w["gold_accuracy"]),
                            fmt.pct(a.get("agreement")), fmt.plain(state, "yellow" if state else ""), key=w["id"])
        restore_cursor(workers, key, cursor)

        alerts = d["alerts"]
        lines = [fmt.plain(f"▲ {a['text']}", "red" if a["level"] == "error" else "yellow") for a in alerts]
        self.query_one("#alerts", Static).update(fmt.join(lines) if lines else Text("no alerts", style="green"))

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if event.data_table.id == "workers":
            self.app.open_tasks(worker=key)
        else:
            self.app.open_tasks(queue=key, status="open")

    def action_open_queue(self) -> None:
        """Enter: the tasks of the worker under the cursor when the workers table has the focus, else
        the open tasks of the queue under the queues' cursor."""
        workers = self.query_one("#workers", DataTable)
        if self.focused is workers:
            worker = cursor_key(workers)
            if worker is not None:
                self.app.open_tasks(worker=worker)
            return
        queue = cursor_key(self.query_one("#queues", DataTable))
        if queue is not None:
            self.app.open_tasks(queue=queue, status="open")
