"""The annotator's screen: claim → show → label → submit → next, keyboard first.

Annotate and correct slots: number keys pick a choice (``1``–``9``, ``0`` the tenth; ``c`` lists every
choice to pick with the arrows and Enter) (``choice``: submits at once; ``multi_choice``: toggles,
Enter submits). Review and escalated slots show the prediction, the votes and earlier reviews: ``a``
approves, ``x`` rejects with a comment, a choice picks a corrected label and Enter submits it with a
comment (``multi_choice``: Enter with nothing picked submits "none of these", ``[]``, as for
annotators; the comment box names the label and Escape goes back). ``s`` skips (the slot goes
back). Other label types show the data and say where they are labeled.

A slot the worker still holds (the screen was quit mid-task) is shown again before new work is
claimed. A slot taken away meanwhile (released, reassigned, held, expired) is noticed when the
database changes or a submission fails, and the screen moves on to new work. A slot still held is
read again on those occasions too: a workflow applied since the claim may have changed its choices,
which the screen then shows (and says so).

The task's data is written out and cut in the thread that read the slot, as the task detail does
(:func:`tui.widgets.format.shown_data`: its first 200 lines / 16 KiB, then a line that says how big it
is and that ``labelyard show`` prints it whole): laid out whole on the event loop, an object of 40,000
keys took no key for seconds.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from router.errors import LabelyardError, NothingToDo

from ..messages import ActionFailed, Claimed, Loaded, SlotGone, Submitted
from ..widgets import format as fmt
from ..widgets.modals import InputModal, PickModal
from .base import BaseScreen

CHOICE_TYPES = ("choice", "multi_choice")


CORRECTION_STAYS = ("a correction comes back to you: label it (s would offer it to you again; a lead can "
                    "escalate the task instead)")
ESCALATED_NEEDS_LABEL = "an escalated task needs its final label: {how}"


def with_shown_data(view: dict[str, Any] | None) -> dict[str, Any] | None:
    """``view`` (a claim's view of a slot) with its data as the screen shows it (``shown_data``:
    :func:`tui.widgets.format.shown_data`); called in the worker thread that read the slot."""
    return None if view is None else {**view, "shown_data": fmt.shown_data(view["data"], view["task"])}


def choice_key(index: int) -> str | None:
    """The key that picks choice ``index`` (0-based): ``1``–``9``, ``0`` for the tenth, else none."""
    return str(index + 1) if index < 9 else ("0" if index == 9 else None)


class WorkScreen(BaseScreen):
    """One slot of work at a time for ``worker``."""

    BINDINGS = [
        *[Binding(str(i), f"choose({i})", str(i), id=f"work.choose{i}", show=False) for i in range(1, 10)],
        Binding("0", "choose(10)", "10", id="work.choose10", show=False),
        Binding("c", "pick_choice", "Choices", id="work.choices", show=False),
        Binding("enter", "submit", "Submit", id="work.submit"),
        Binding("a", "approve", "Approve", id="work.approve"),
        Binding("x", "reject", "Reject", id="work.reject"),
        Binding("s", "skip", "Skip", id="work.skip"),
        Binding("n", "next", "Claim", id="work.claim"),
        # The same keys where the slot gives them nothing to do (check_action turns the bindings above
        # off, which keeps them out of the footer): they say why. `system` keeps them out of the key panel.
        *[Binding(str(i % 10), "why('choose')", str(i % 10), id=f"work.why_choose{i}", show=False, system=True)
          for i in range(1, 11)],
        Binding("c", "why('pick_choice')", "Choices", id="work.why_choices", show=False, system=True),
        Binding("enter", "why('submit')", "Submit", id="work.why_submit", show=False, system=True),
        Binding("a", "why('approve')", "Approve", id="work.why_approve", show=False, system=True),
        Binding("x", "why('reject')", "Reject", id="work.why_reject", show=False, system=True),
        Binding("s", "why('skip')", "Skip", id="work.why_skip", show=False, system=True),
    ]

    def __init__(self, worker: str | None = None, queue: str | None = None) -> None:
        super().__init__()
        self.worker = worker or ""
        self.queue = queue
        self.view: dict[str, Any] | None = None
        self.picked: list[str] = []
        self.note = ""
        self.busy = False
        self.unsent: dict[str, Any] | None = None  # a submission that failed: its comment is offered again

    def compose(self) -> ComposeResult:
        self.worker = self.worker or self.app.worker
        self.queue = self.queue or getattr(self.app, "queue", None)
        yield Header()
        yield Static(fmt.line((self.worker, "bold"), " — claiming…"), id="work-head")
        with VerticalScroll(id="work-scroll"):
            yield Static("", id="work-data")
            yield Static("", id="work-context")
        yield Static("", id="work-choices")
        yield Footer()

    def on_mount(self) -> None:
        self.action_next()

    def reload(self) -> None:
        if self.busy:
            return
        if self.view is None:
            self.action_next()  # idle: new work may have arrived
        else:
            self.check_slot(self.view["assignment"])  # a lead or a timer may have taken it

    # -- claiming and submitting ------------------------------------------------------------
    def action_next(self) -> None:
        if self._still_busy():
            return
        if self.view is not None:
            self.check_slot(self.view["assignment"], say_held=True)
            return
        self.busy = True
        self.claim()

    @work(thread=True, group="work-check", exit_on_error=False)
    def check_slot(self, assignment: int, say_held: bool = False) -> None:
        """Whether the slot is still the worker's; if it is, read it again (its choices may have changed)."""
        why = self.backend.slot_gone(assignment, self.worker)
        if why is not None:
            self.post_message(SlotGone(assignment, why))
            return
        self.post_message(Loaded("slot", with_shown_data(self.backend.slot_view(assignment, self.worker))))
        if say_held:
            self.app.call_from_thread(self.notify, "finish this slot first, or give it back with s")

    # Not exclusive: `busy` already serialises claim and send, and an exclusive
    # claim started from the Submitted handler would cancel the send that posted it.
    @work(thread=True, group="work", exit_on_error=False)
    def claim(self) -> None:
        try:
            view = with_shown_data(self.backend.resume(self.worker, self.queue))
            if view is not None:
                self.post_message(Claimed(view, resumed=True))
                return
            view = with_shown_data(self.backend.claim(self.worker, self.queue))
        except NothingToDo as exc:
            self.post_message(Claimed(None, str(exc)))
            return
        except LabelyardError as exc:
            self.post_message(Claimed(None, str(exc)))
            return
        except Exception as exc:  # a disk I/O error, a damaged file, a bug: told, and `n` or a refresh tries again
            error = f"{type(exc).__name__}: {exc}"
            self.post_message(ActionFailed("claim", error))
            self.post_message(Claimed(None, f"the claim failed ({error})"))
            return
        self.post_message(Claimed(view))

    @work(thread=True, group="work", exit_on_error=False)
    def send(self, assignment: int, kwargs: dict[str, Any], skip: bool = False) -> None:
        what = "skip" if skip else "submit"
        try:
            if skip:
                result = self.backend.skip(assignment, self.worker)
            else:
                result = self.backend.submit(assignment, self.worker, **kwargs)
        except LabelyardError as exc:
            try:
                why = self.backend.slot_gone(assignment, self.worker)
            except Exception:  # the check failed too: the refusal is what there is to tell
                why = None
            if why is not None:
                self.post_message(SlotGone(assignment, f"{why} ({exc})", sending=True))
            else:
                self.post_message(ActionFailed(what, str(exc)))
                try:  # refused (a label no longer among the choices?): show the slot as it is now
                    view = with_shown_data(self.backend.slot_view(assignment, self.worker))
                    self.post_message(Loaded("slot", view))
                except Exception:  # the refusal is what there is to tell
                    pass
            return
        except Exception as exc:  # not sent: the slot is still the worker's, and the screen takes keys again
            self.post_message(ActionFailed(what, f"not sent ({type(exc).__name__}: {exc}); the slot is still "
                                                 f"yours: press the key again to {'skip' if skip else 'send'} it"))
            return
        self.post_message(Submitted(result))

    @on(Claimed)
    def claimed(self, message: Claimed) -> None:
        self.busy = False
        self.view = message.view
        self.picked = []
        self.unsent = None
        self.note = message.note or ""
        self.render_view()
        if message.resumed and message.view is not None:
            self.notify(f"back to assignment #{message.view['assignment']}, which you still hold")

    @on(Loaded)
    def slot_read(self, message: Loaded) -> None:
        """The slot in view, read again: show it as it is now, saying so when its choices changed."""
        view = message.data
        if message.what != "slot" or view is None or self.view is None or view["assignment"] != self.view["assignment"]:
            return  # gone (SlotGone says so), or an answer about a slot already left
        old, self.view = self.view, view
        if view == old:
            return
        self.picked = [c for c in self.picked if c in view["choices"]]
        self.render_view()
        if (old["label_type"], old["choices"]) != (view["label_type"], view["choices"]):
            if view["label_type"] in CHOICE_TYPES:
                shown = ", ".join(view["choices"][:10]) + (" …" if len(view["choices"]) > 10 else "")
                now = f"the choices are now {shown}"
            else:
                now = f"its labels are now `{view['label_type']}`"
            self.notify(f"the workflow changed: {now}", title="Choices changed", severity="warning", timeout=8)

    @on(SlotGone)
    def slot_gone(self, message: SlotGone) -> None:
        if self.view is None or self.view["assignment"] != message.assignment:
            return  # an answer about a slot already left
        if self.busy and not message.sending:
            return  # a submission is on its way: its own outcome decides
        self.busy = False
        self.view = None
        self.unsent = None
        after = "claiming it again" if "offered to you again" in message.why else "moving on to new work"
        self.notify(f"{message.why}; {after}", title="Slot taken back", severity="warning", timeout=8)
        self.action_next()

    @on(Submitted)
    def submitted(self, message: Submitted) -> None:
        self.busy = False
        self.unsent = None
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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer shows only the keys that do something on the slot in view."""
        v = self.view
        choices = v is not None and v["label_type"] in CHOICE_TYPES
        if action == "approve":
            return self.kind == "review"  # an expert is told (`why`) that a final label is needed
        if action == "reject":
            return self.kind in ("review", "escalated")
        if action in ("submit", "pick_choice", "choose"):
            return choices
        if action == "skip":
            return v is not None and self.kind != "correct"  # a correction is not given back (`why` says so)
        return True  # `why` among them: it runs only where the binding before it on the same key is off

    def action_why(self, action: str) -> None:
        """Say why ``action``'s key does nothing on the slot in view."""
        self.notify(self.why_not(action), severity="warning")

    def why_not(self, action: str) -> str:
        v = self.view
        if v is None:
            return "claiming…" if self.busy else "no slot in view: n claims work"
        how = f"`{v['label_type']}` labels are submitted with `labelyard submit {v['assignment']} --value JSON`"
        if action == "skip" and v["kind"] == "correct":
            return CORRECTION_STAYS
        if action == "approve" and v["kind"] == "escalated":
            return ESCALATED_NEEDS_LABEL.format(how="pick it with the number keys" if v["label_type"] in CHOICE_TYPES
                                                else f"submit it with `labelyard submit {v['assignment']} --value JSON`")
        if action in ("approve", "reject"):
            pick = "pick a label" if v["label_type"] in CHOICE_TYPES else how
            return f"{action} is for review slots: {pick}"
        return f"{how}; this screen shows the data only"

    def render_view(self) -> None:
        head = self.query_one("#work-head", Static)
        data = self.query_one("#work-data", Static)
        context = self.query_one("#work-context", Static)
        choices = self.query_one("#work-choices", Static)
        v = self.view
        self.refresh_bindings()  # the keys that apply follow the slot
        if v is None:
            head.update(fmt.join([fmt.line((self.worker, "bold"), " — no work right now",
                                           f": {self.note}" if self.note else ""),
                                  fmt.line("New work shows up here by itself; ", ("n", "bold"), " tries again.")]))
            data.update("")
            context.update("")
            choices.update("")
            return
        head.update(fmt.line((self.worker, "bold"), f" — {v['kind']} task ", v["external_id"],
                             f" in {v['queue']} (assignment #{v['assignment']})"))
        data.update(fmt.join(fmt.data_block(v["shown_data"])))
        lines = []
        if v["kind"] in ("review", "escalated"):
            p = v.get("prediction") or {}
            lines.append(fmt.line(("prediction", "bold"),
                                  f" {fmt.label(p.get('label'))} ({fmt.num(p.get('confidence'))})"))
            lines.append(fmt.line(("votes", "bold"), " ", ", ".join(f"{x['worker']}={fmt.label(x['label'])}"
                                                                    for x in v.get("votes", []))))
            for r in v.get("reviews", []):
                said = f" {r['worker']}: {r['verdict'] or ''} {fmt.label(r['label'])} {r.get('comment') or ''}"
                lines.append(fmt.line((f"earlier {r['stage']}", "bold"), said, lines=True))  # multi-line comments
        if v["kind"] == "correct":
            lines.append(fmt.line(("returned for correction", "bold"), f": {v.get('comment') or '(no comment)'}",
                                  lines=True))
            lines.append(fmt.line(f"your label was {fmt.label(v.get('your_label'))}"))
        context.update(fmt.join(lines))
        choices.update(self.choices_text())

    def choices_text(self) -> Text:
        """Every choice with the key that picks it (``c`` lists them all to pick from), and what keys do."""
        v = self.view
        if v is None:
            return Text("")
        if v["label_type"] not in CHOICE_TYPES:
            keys: list[Any] = [("a", "bold"), " approves · ", ("x", "bold"), " rejects · "] if v["kind"] == "review" else []
            return fmt.line((f"`{v['label_type']}` labels are made in the tool this workflow's sources come "
                             f"from, or with `labelyard submit {v['assignment']} --value JSON`; this screen shows "
                             "the data only.", "yellow"), " ", *keys,
                            *([("s", "bold"), " skips."] if v["kind"] != "correct" else []))
        parts = []
        for i, c in enumerate(v["choices"]):
            key = choice_key(i) or "·"
            parts.append(fmt.plain(f"{key} {c}", "reverse") if c in self.picked
                         else fmt.line((key, "bold"), " ", c))
        keys = fmt.join(parts, "   ")
        if v["kind"] in ("review", "escalated"):
            hint = ("a approve (with the picked choice as the corrected label, if any) · x reject · "
                    "a choice = corrected label, Enter submits it · c list · s skip"
                    if v["kind"] == "review" else "a choice = the final label, Enter submits · c list · s skip")
            if v["label_type"] == "multi_choice":
                hint += " · Enter with none picked = none of these"
        elif v["label_type"] == "multi_choice":
            hint = "a choice's key toggles it · Enter submits · c list · s skip"
        else:
            hint = "a choice's key submits that label · c list · s skip"
        if v["kind"] == "correct":  # a skipped correction would come straight back: no skip
            hint = hint.replace(" · s skip", "")
        return fmt.join([keys, fmt.plain(hint)])

    # -- keys -------------------------------------------------------------------------------
    def action_pick_choice(self) -> None:
        """Every choice in a list (arrows and Enter pick one, as its number key would)."""
        v = self.view
        if v is None or self._still_busy() or v["label_type"] not in CHOICE_TYPES:
            return
        items = [(str(i), f"{'●' if c in self.picked else ' '} {choice_key(i - 1) or ' '}  {c}")
                 for i, c in enumerate(v["choices"], start=1)]
        self.app.push_screen(PickModal("Pick a label", items), lambda i: i is not None and self.action_choose(int(i)))

    def action_choose(self, number: int) -> None:
        v = self.view
        if v is None or self._still_busy() or v["label_type"] not in CHOICE_TYPES:
            return
        if number > len(v["choices"]):
            self.notify(f"no choice {number % 10}: this task has {len(v['choices'])} (c lists them)",
                        severity="warning")
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
        if v is None or self._still_busy():
            return
        if v["label_type"] not in CHOICE_TYPES:
            self.action_why("submit")
            return
        label = self._label()
        if label is None and v["label_type"] == "multi_choice":
            label = []  # "none of these" is a multi_choice answer, for annotators, reviewers and experts
        if v["kind"] in ("annotate", "correct"):
            if label is not None:
                self._send({"label": label})
            else:
                self.notify("pick a label: a choice's key submits it (c lists them)", severity="warning")
            return
        if label is None:
            self.notify("pick the label first (its key, or c for the list)", severity="warning")
            return
        shown = "none of these" if label == [] else fmt.label(label)
        self.app.push_screen(InputModal(f"Submit {shown} — comment (optional), Escape goes back",
                                        value=self._unsent_comment("label")),
                             lambda c: c is not None and self._send({"label": label, "comment": c or None}))

    def action_approve(self) -> None:
        if self.kind == "escalated":  # an expert settles the task: a label, not a verdict
            self.action_why("approve")
        elif self.kind == "review" and not self._still_busy():
            label = self._label()  # a picked choice is the reviewer's correction, as `submit --approve --label`
            self._send({"verdict": "approve"} if label is None else {"verdict": "approve", "label": label})
        elif self.kind not in ("review", "escalated"):
            self.action_why("approve")

    def action_reject(self) -> None:
        if self.kind not in ("review", "escalated"):
            self.action_why("reject")
        elif not self._still_busy():
            self.app.push_screen(InputModal("Reject: comment for the annotators",
                                            value=self._unsent_comment("verdict")),
                                 lambda c: c is not None and self._send({"verdict": "reject", "comment": c or None}))

    def action_skip(self) -> None:
        if self.kind == "correct":  # given back, it would be offered to this worker again at once
            self.action_why("skip")
        elif self.view is not None and not self._still_busy():
            self.busy = True
            self.send(self.view["assignment"], {}, skip=True)

    def _still_busy(self) -> bool:
        """Whether a claim or a submission is on its way (a key pressed meanwhile is told so)."""
        if self.busy:
            self.notify("one moment: the last claim or submission is still on its way", severity="warning")
        return self.busy

    def _unsent_comment(self, kind: str) -> str:
        """The comment of a submission of this ``kind`` (``verdict`` or ``label``) that was not sent, to send again."""
        unsent = self.unsent or {}
        return (unsent.get("comment") or "") if kind in unsent else ""

    def _send(self, kwargs: dict[str, Any]) -> None:
        assert self.view is not None
        self.busy = True
        self.unsent = kwargs  # until it went through: a failure offers it again
        self.send(self.view["assignment"], kwargs)

    @on(ActionFailed)
    def failed(self, message: ActionFailed) -> None:
        self.busy = False
