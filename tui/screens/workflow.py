"""The active workflow: its queues and its rules, section by section, with how often each fired."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static

from router.errors import NoWorkflow
from router.render import name_list

from ..messages import Loaded
from ..widgets import format as fmt
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

    @work(thread=True, exclusive=True, group="workflow", exit_on_error=False)
    def load(self) -> None:
        with self.backend.queries() as q:
            try:
                rules = q.workflow_rules()
            except NoWorkflow:
                rules = None
        self.post_message(Loaded("workflow", rules))

    @on(Loaded)
    def loaded(self, message: Loaded) -> None:
        d = message.data
        table = self.query_one(DataTable)
        table.clear()
        if d is None:
            self.query_one("#workflow-head", Static).update(fmt.line(
                ("no workflow applied", "bold"), " — `labelyard apply FILE.workflow.yaml` gives this project one"))
            self.query_one("#yaml", Static).update("")
            return
        wf = d["workflow"]
        queues = " · ".join(f"{n} ({name_list(q['roles'])}{' +' + name_list(q['skills']) if q['skills'] else ''})"
                            for n, q in wf["queues"].items())
        self.query_one("#workflow-head", Static).update(fmt.line(
            (wf["name"], "bold"), f" v{wf['version']} — {wf['description'] or ''}\n",
            f"labels: {wf['label_type']} {', '.join(wf['choices'])}\nqueues: {queues}", lines=True))
        for s in d["sections"]:
            for r in s["rules"]:
                do = r["action"] + (f" {r['target']}" if r["target"] is not None else "")
                table.add_row(fmt.plain(s["section"]), fmt.plain(r["name"]), fmt.plain(r["when"] or "(always)"),
                              fmt.plain(do), Text(f"{r['fired']:,}", style="" if r["fired"] else "dim"),
                              fmt.plain(r["last_at"] or ""))
        for r in d["retired"]:
            table.add_row(fmt.plain(r["section"]), fmt.plain(r["rule"], "dim"),
                          Text("(not in this version)", style="dim"), "", f"{r['fired']:,}",
                          fmt.plain(r["last_at"] or ""))
        self.query_one("#yaml", Static).update(fmt.plain(d["yaml"], lines=True))

    def action_toggle_yaml(self) -> None:
        self.query_one("#yaml-box").toggle_class("hidden")
