"""One task in full: data, prediction, votes, annotations and review comments, assignments, and the
decision history with the rules that decided (as ``labelyard explain`` tells it), all read in one read
transaction (:meth:`router.queries.Queries.task_detail`): one state of the task, though others write.

The data is written out (indented JSON) in the thread that reads it, and only its first
:data:`~tui.widgets.format.DATA_LINES` lines and :data:`~tui.widgets.format.DATA_CHARS` characters
are shown, with a line that says how big it is and that ``labelyard show`` prints it whole
(:func:`tui.widgets.format.shown_data`, which the work screen uses too): laying out an object of
40,000 keys on the event loop froze the app for seconds."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from router.errors import LabelyardError

from ..messages import ActionFailed, Loaded
from ..widgets import format as fmt
from .base import BaseScreen

class TaskDetailScreen(BaseScreen):
    """Everything about one task; the lead actions apply to it."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="detail.back"),
        Binding("r", "lead('reassign')", "Reassign", id="detail.reassign"),
        Binding("e", "lead('escalate')", "Escalate", id="detail.escalate"),
        Binding("h", "lead('hold')", "Hold", id="detail.hold"),
        Binding("H", "lead('unhold')", "Unhold", id="detail.unhold"),
        Binding("l", "lead('release')", "Release", id="detail.release"),
        Binding("P", "lead('priority')", "Priority", id="detail.priority"),
    ]

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref
        self.detail: dict[str, Any] | None = None
        self._asked = 0  # the number of the newest load (see `reload`)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail-scroll"):
            yield Static(fmt.plain(f"task {self.ref}: loading…"), id="detail-head")
            yield Static("", id="detail-body")
            yield Static("", id="detail-history")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        # A thread worker that a newer load replaces still runs to its end: its numbered answer
        # is dropped in `loaded`, so an older read (begun before a lead's action committed)
        # never overwrites a newer one that arrived first.
        self._asked += 1
        self.load(self.ref, self._asked)

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def load(self, ref: str, asked: int = 0) -> None:
        try:
            with self.backend.queries() as q:
                data = q.task_detail(ref)
        except LabelyardError as exc:
            self.post_message(ActionFailed("show", str(exc)))
            return
        self.post_message(Loaded("detail", (data, fmt.shown_data(data["task"]["data"], data["task"]["id"]), asked)))

    def selected_refs(self) -> list[str]:
        return [self.ref]

    def ref_name(self, ref: str) -> str:
        task = (getattr(self, "detail", None) or {}).get("task")
        return f"{task['external_id']} ({ref})" if task and ref == f"id:{task['id']}" else ref

    def action_lead(self, action: str) -> None:
        self.lead_action(action)

    @on(Loaded)
    def loaded(self, message: Loaded) -> None:
        d, shown, asked = message.data
        if asked != self._asked:
            return  # a load a newer one replaced
        self.detail = d
        t = d["task"]
        head = fmt.line((f"task {t['id']}", "bold"), " (", t["external_id"], ")  ", (t["status"], "bold"))
        if t["status"] == "open":
            head.append_text(fmt.line(f"  {t['stage']} in {t['queue']}, {t['needed']} more needed"))
        head.append(f"  priority {t['priority']:.2f}")
        head.append_text(fmt.line("\n", d["explain"]["summary"], lines=True))
        if t.get("reason"):
            head.append_text(fmt.line("\nreason: ", str(t["reason"]), lines=True))
        self.query_one("#detail-head", Static).update(head)

        lines = fmt.data_block(shown)
        p = d["prediction"] or {}
        if any(p.get(key) is not None for key in ("label", "confidence", "model")):  # a confidence alone routes too
            model = f" model {p['model']}" if p.get("model") is not None else ""  # none given: not "model None"
            said = "(no label)" if p.get("label") is None else fmt.label(p["label"])
            lines.append(fmt.line(("prediction", "bold"), f" {said} confidence {fmt.num(p.get('confidence'))}{model}"))
        if t["final_label"] is not None:
            lines.append(fmt.line(("final", "bold"), f" {fmt.label(t['final_label'])} by {t['final_by']} "
                                  f"(rule {t['final_rule']})"))
        lines.append(fmt.line(("votes", "bold"), f" ({len(d['votes'])})"))
        for v in d["votes"]:
            lines.append(fmt.line(f"  {v['worker']}: {fmt.label(v['label'])}",
                                  (" (flagged)", "yellow") if v["flagged"] else ""))
        if d["reviews"]:
            lines.append(fmt.line(("reviews", "bold")))
            for r in d["reviews"]:
                text = f"  {fmt.clean(r['worker'])} ({r['stage']}): {r['verdict'] or ''} {fmt.label(r['label'])}"
                if r.get("comment"):
                    text += f" — “{r['comment']}”"
                lines.append(fmt.line(text, lines=True))  # a comment may run over several lines
        lines.append(fmt.line(("assignments", "bold")))
        for a in d["assignments"]:
            lines.append(fmt.line(f"  #{a['id']} {a['worker']} {a['stage']} round {a['round']}: {a['status']}"))
        self.query_one("#detail-body", Static).update(fmt.join(lines))

        from router.explain import render_explanation

        history = render_explanation(d["explain"])
        self.query_one("#detail-history", Static).update(
            fmt.line(("history", "bold"), "\n", "\n".join(history[2:] if len(history) > 2 else history), lines=True))
