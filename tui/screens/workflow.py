"""The active workflow: its queues and its rules, section by section, with how often each fired."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static

from ..messages import Loaded
from .base import BaseScreen


class WorkflowScreen(BaseScreen):
    """Rules and their counts; ``y`` shows the YAML."""

    BINDINGS = [Binding("y", "toggle_yaml", "YAML", id="workflow.yaml")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="workflow-head")
        yield DataTable(id="rules", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="yaml-box", classes="hidden"):
            yield Static("", id="yaml")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("section", "rule", "when", "do", "fired", "last")
        self.reload()

    def reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="workflow")
    def load(self) -> None:
        with self.backend.queries() as q:
            self.post_message(Loaded("workflow", q.workflow_rules()))

    @on(Loaded)
    def loaded(self, message: Loaded) -> None:
        d = message.data
        wf = d["workflow"]
        queues = " · ".join(f"{n} ({','.join(q['roles'])}{' +' + ','.join(q['skills']) if q['skills'] else ''})"
                            for n, q in wf["queues"].items())
        self.query_one("#workflow-head", Static).update(
            f"[b]{escape(wf['name'])}[/b] v{wf['version']} — {escape(wf['description'] or '')}\n"
            f"labels: {wf['label_type']} {escape(', '.join(wf['choices']))}\nqueues: {escape(queues)}")
        table = self.query_one(DataTable)
        table.clear()
        for s in d["sections"]:
            for r in s["rules"]:
                do = r["action"] + (f" {r['target']}" if r["target"] is not None else "")
                table.add_row(s["section"], r["name"], r["when"] or "(always)", do,
                              Text(f"{r['fired']:,}", style="" if r["fired"] else "dim"), r["last_at"] or "")
        for r in d["retired"]:
            table.add_row(r["section"], Text(r["rule"], style="dim"), Text("(not in this version)", style="dim"),
                          "", f"{r['fired']:,}", r["last_at"] or "")
        self.query_one("#yaml", Static).update(escape(d["yaml"]))

    def action_toggle_yaml(self) -> None:
        self.query_one("#yaml-box").toggle_class("hidden")
