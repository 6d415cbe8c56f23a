"""The annotator's screen: claim → show → label → submit → next, keyboard first.

Annotate and correct slots: number keys pick a choice (``choice``: submits at once; ``multi_choice``:
toggles, Enter submits). Review and escalated slots show the prediction, the votes and earlier
reviews: ``a`` approves, ``x`` rejects with a comment, a number key picks a corrected label and
Enter submits it with a comment. ``s`` skips (the slot goes back). Other label types show the data
and say where they are labeled.
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from router.errors import LabelyardError, NothingToDo

from ..messages import ActionFailed, Claimed, Submitted
from ..widgets import format as fmt
from ..widgets.modals import InputModal
from .base import BaseScreen

CHOICE_TYPES = ("choice", "multi_choice")


class WorkScreen(BaseScreen):
    """One slot of work at a time for ``worker``."""

    BINDINGS = [
        *[Binding(str(i), f"choose({i})", str(i), id=f"work.choose{i}", show=False) for i in range(1, 10)],
        Binding("enter", "submit", "Submit", id="work.submit"),
        Binding("a", "approve", "Approve", id="work.approve"),
        Binding("x", "reject", "Reject", id="work.reject"),
        Binding("s", "skip", "Skip", id="work.skip"),
        Binding("n", "next", "Claim", id="work.claim"),
    ]

    def __init__(self, worker: str | None = None, queue: str | None = None) -> None:
        super().__init__()
        self.worker = worker or ""
        self.queue = queue
        self.view: dict[str, Any] | None = None
        self.picked: list[str] = []
        self.note = ""
        self.busy = False

    def compose(self) -> ComposeResult:
        self.worker = self.worker or self.app.worker
        self.queue = self.queue or getattr(self.app, "queue", None)
        yield Header()
        yield Static(f"[b]{escape(self.worker)}[/b] — claiming…", id="work-head")
        with VerticalScroll(id="work-scroll"):
            yield Static("", id="work-data")
            yield Static("", id="work-context")
        yield Static("", id="work-choices")
        yield Footer()

    def on_mount(self) -> None:
        self.action_next()

    def reload(self) -> None:
        if self.view is None and not self.busy:
            self.action_next()  # idle: new work may have arrived

    # -- claiming and submitting ------------------------------------------------------------
    def action_next(self) -> None:
        if self.view is not None or self.busy:
            return
        self.busy = True
        self.claim()

    # Not exclusive: `busy` already serialises claim and send, and an exclusive
    # claim started from the Submitted handler would cancel the send that posted it.
    @work(thread=True, group="work")
    def claim(self) -> None:
        try:
            view = self.backend.claim(self.worker, self.queue)
        except NothingToDo as exc:
            self.post_message(Claimed(None, str(exc)))
            return
        except LabelyardError as exc:
            self.post_message(Claimed(None, str(exc)))
            return
        self.post_message(Claimed(view))

    @work(thread=True, group="work")
    def send(self, assignment: int, kwargs: dict[str, Any], skip: bool = False) -> None:
        try:
            if skip:
                result = self.backend.skip(assignment, self.worker)
            else:
                result = self.backend.submit(assignment, self.worker, **kwargs)
        except LabelyardError as exc:
            self.post_message(ActionFailed("skip" if skip else "submit", str(exc)))
            return
        self.post_message(Submitted(result))

    @on(Claimed)
    def claimed(self, message: Claimed) -> None:
        self.busy = False
        self.view = message.view
        self.picked = []
        self.note = message.note or ""
        self.render_view()

    @on(Submitted)
    def submitted(self, message: Submitted) -> None:
        self.busy = False
        decision = message.result.get("decision")
        text = f"submitted #{message.result.get('assignment')}"
        if message.result.get("status") in ("released", "offered"):
            text = f"skipped #{message.result.get('assignment')}"
        if decision:
            text += f" → rule `{decision['rule']}`: {decision['action']}"
        self.notify(text)
        self.view = None
        self.action_next()

    def after_action(self) -> None:  # pragma: no cover - the work screen posts no lead actions
        pass

    # -- what the worker sees ----------------------------------------------------------------
    @property
    def kind(self) -> str | None:
        return None if self.view is None else self.view["kind"]

    def render_view(self) -> None:
        head = self.query_one("#work-head", Static)
        data = self.query_one("#work-data", Static)
        context = self.query_one("#work-context", Static)
        choices = self.query_one("#work-choices", Static)
        v = self.view
        if v is None:
            head.update(f"[b]{escape(self.worker)}[/b] — no work right now"
                        + (f": {escape(self.note)}" if self.note else "")
                        + "\nNew work shows up here by itself; [b]n[/b] tries again.")
            data.update("")
            context.update("")
            choices.update("")
            return
        head.update(f"[b]{escape(self.worker)}[/b] — {v['kind']} task {escape(v['external_id'])} "
                    f"in {v['queue']} (assignment #{v['assignment']})")
        data.update("[b]data[/b]\n" + escape(json.dumps(v["data"], ensure_ascii=False, indent=2)))
        lines = []
        if v["kind"] in ("review", "escalated"):
            p = v.get("prediction") or {}
            lines.append(f"[b]prediction[/b] {escape(fmt.label(p.get('label')))} ({fmt.num(p.get('confidence'))})")
            lines.append("[b]votes[/b] " + ", ".join(f"{escape(x['worker'])}={escape(fmt.label(x['label']))}"
                                                    for x in v.get("votes", [])))
            for r in v.get("reviews", []):
                lines.append(f"[b]earlier {r['stage']}[/b] {escape(r['worker'])}: {r['verdict'] or ''} "
                             f"{escape(fmt.label(r['label']))} {escape(r.get('comment') or '')}")
        if v["kind"] == "correct":
            lines.append(f"[b]returned for correction[/b]: {escape(v.get('comment') or '(no comment)')}")
            lines.append(f"your label was {escape(fmt.label(v.get('your_label')))}")
        context.update("\n".join(lines))
        choices.update(self.choices_text())

    def choices_text(self) -> str:
        v = self.view
        if v is None:
            return ""
        if v["label_type"] not in CHOICE_TYPES:
            return (f"[yellow]`{v['label_type']}` labels are made in the tool this workflow's sources come "
                    "from; this screen shows the data only.[/] [b]s[/b] skips.")
        parts = []
        for i, c in enumerate(v["choices"][:9], start=1):
            on_ = c in self.picked
            parts.append(f"[reverse]{i} {escape(c)}[/reverse]" if on_ else f"[b]{i}[/b] {escape(c)}")
        keys = "   ".join(parts)
        if v["kind"] in ("review", "escalated"):
            hint = ("a approve · x reject · number = corrected label, Enter submits it · s skip"
                    if v["kind"] == "review" else "number = the final label, Enter submits · s skip")
        elif v["label_type"] == "multi_choice":
            hint = "numbers toggle · Enter submits · s skip"
        else:
            hint = "a number submits that label · s skip"
        return keys + "\n" + hint

    # -- keys -------------------------------------------------------------------------------
    def action_choose(self, number: int) -> None:
        v = self.view
        if v is None or self.busy or v["label_type"] not in CHOICE_TYPES or number > len(v["choices"]):
            return
        choice = v["choices"][number - 1]
        if v["kind"] in ("annotate", "correct") and v["label_type"] == "choice":
            self._send({"label": choice})
            return
        if v["label_type"] == "multi_choice":
            self.picked = [c for c in v["choices"] if (c in self.picked) != (c == choice)]
        else:
            self.picked = [choice]
        self.query_one("#work-choices", Static).update(self.choices_text())

    def _label(self) -> Any:
        v = self.view
        if v is None or not self.picked:
            return None
        return list(self.picked) if v["label_type"] == "multi_choice" else self.picked[0]

    def action_submit(self) -> None:
        v = self.view
        if v is None or self.busy:
            return
        label = self._label()
        if v["kind"] in ("annotate", "correct"):
            if label is None and v["label_type"] == "multi_choice":
                label = []  # "none of these" is a multi_choice answer
            if label is not None:
                self._send({"label": label})
            return
        if label is None:
            self.notify("pick the label with a number key first", severity="warning")
            return
        self.app.push_screen(InputModal("Comment (optional)"),
                             lambda c: c is not None and self._send({"label": label, "comment": c or None}))

    def action_approve(self) -> None:
        if self.kind == "review" and not self.busy:
            self._send({"verdict": "approve"})

    def action_reject(self) -> None:
        if self.kind in ("review", "escalated") and not self.busy:
            self.app.push_screen(InputModal("Reject: comment for the annotators"),
                                 lambda c: c is not None and self._send({"verdict": "reject", "comment": c or None}))

    def action_skip(self) -> None:
        if self.view is not None and not self.busy:
            self.busy = True
            self.send(self.view["assignment"], {}, skip=True)

    def _send(self, kwargs: dict[str, Any]) -> None:
        assert self.view is not None
        self.busy = True
        self.send(self.view["assignment"], kwargs)

    @on(ActionFailed)
    def failed(self, message: ActionFailed) -> None:
        self.busy = False
