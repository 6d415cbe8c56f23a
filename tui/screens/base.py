"""What every screen shares: reload on :class:`DataChanged`, report action outcomes, and the lead
actions (reassign, escalate, hold, unhold, release, priority) with their confirmations."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from ..messages import ActionDone, ActionFailed, DataChanged, TimePassed
from ..widgets.modals import ConfirmModal, InputModal, PickModal

ACTION_VERBS = {"reassign": "Reassign", "escalate": "Escalate", "hold": "Hold", "unhold": "Unhold",
                "release": "Release", "priority": "Set the priority of"}


def worker_failed(app, event: Worker.StateChanged) -> None:
    """Tell the lead that a background read or action failed (``exit_on_error=False`` on every
    worker): the app stays up on the screen they were using, and the next refresh tries again."""
    if event.state == WorkerState.ERROR:
        error = event.worker.error
        app.notify(f"{type(error).__name__}: {error}", title=f"{event.worker.group} failed", severity="error",
                   timeout=10)


class BaseScreen(Screen):
    """A screen whose data comes from a thread worker and is reloaded when the database changes."""

    def reload(self) -> None:  # pragma: no cover - every screen overrides it
        """Start the thread worker that reads this screen's data."""

    def on_screen_resume(self) -> None:
        self.reload()

    @on(DataChanged)
    def _data_changed(self) -> None:
        self.reload()

    def time_passed(self) -> None:
        """Refresh what time alone changes (ages, breaches, recent counts); nothing by default."""

    @on(TimePassed)
    def _time_passed(self) -> None:
        self.time_passed()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A read or action that failed in its thread is told, not fatal (see :func:`worker_failed`)."""
        worker_failed(self.app, event)

    @property
    def backend(self):
        return self.app.backend

    # -- results of actions --------------------------------------------------------------
    def after_action(self) -> None:
        """Called when an action went through (before the reload)."""

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        self.after_action()
        report = message.report
        done, skipped = len(report.get("done", [])), len(report.get("skipped", []))
        text = f"{message.action}: {done} done" + (f", {skipped} skipped" if skipped else "")
        if skipped == 1 and report["skipped"][0].get("reason"):  # one: say why ("already flagged")
            text += f" ({report['skipped'][0]['reason']})"
        self.notify(text, title="Done")
        self.app.changed_here()

    @on(ActionFailed)
    def _action_failed(self, message: ActionFailed) -> None:
        self.notify(message.error, title=f"{message.action} failed", severity="error", timeout=8)

    def send_lead(self, action: str, refs: list[str], options: dict[str, Any]) -> None:
        """Run a confirmed lead action. Its tasks are the lead's own last action (``app.acted``) from
        now on, whichever screen it came from: the task list lets them leave without a word."""
        self.app.acted = set(refs)
        self.run_lead(action, refs, options)

    @work(thread=True, group="action", exit_on_error=False)
    def run_lead(self, action: str, refs: list[str], options: dict[str, Any]) -> None:
        """Run a lead action through ``router.lead`` and post what happened."""
        from router.errors import LabelyardError

        try:
            report = self.backend.lead(action, refs, **options)
        except LabelyardError as exc:
            self.post_message(ActionFailed(action, str(exc)))
            return
        self.post_message(ActionDone(action, report))

    @work(thread=True, group="action", exit_on_error=False)
    def run_pause(self, worker: str, paused: bool, reason: str | None) -> None:
        from router.errors import LabelyardError

        action = "pause" if paused else "resume"
        try:
            self.backend.set_paused(worker, paused, reason)
        except LabelyardError as exc:
            self.post_message(ActionFailed(action, str(exc)))
            return
        self.post_message(ActionDone(action, {"done": [{"worker": worker}], "skipped": []}))

    # -- lead actions, confirmed ----------------------------------------------------------
    def selected_refs(self) -> list[str]:
        """The tasks an action applies to (the selection, else the task under the cursor)."""
        return []

    def ref_name(self, ref: str) -> str:
        """How a dialog names the task ``ref`` (``id:N``): its external id beside it when the screen knows it."""
        return ref

    def _what(self, refs: list[str]) -> str:
        return f"task {self.ref_name(refs[0])}" if len(refs) == 1 else f"{len(refs)} tasks"

    def lead_action(self, action: str) -> None:
        refs = self.selected_refs()
        if not refs:
            self.notify("no task selected", severity="warning")
            return
        if action == "reassign":
            self._pick_worker(refs)
        elif action == "escalate":
            queues = list(((self.app.workflow or {}).get("queues") or {}))
            self.app.push_screen(PickModal(f"Escalate {self._what(refs)} to which queue?",
                                           [(q, q) for q in queues]),
                                 lambda q: q and self._confirm(action, refs, {"queue": q}, f" to {q}"))
        elif action == "hold":
            self.app.push_screen(InputModal(f"Hold {self._what(refs)}: reason (optional)"),
                                 lambda r: r is not None and self._confirm(action, refs, {"reason": r or None}))
        elif action == "priority":
            def set_priority(value: str | None) -> None:
                from router.lead import priority_problem

                if value is None:
                    return
                try:
                    number = float(value)
                except ValueError:  # asked again, with what was typed, so nothing typed is lost
                    self.notify(f"not a number: {value!r}", severity="error")
                    ask(value)
                    return
                problem = priority_problem(number)  # NaN, infinities, past the rules' bounds: as the CLI
                if problem:  # refused before the question, not after the lead said yes
                    self.notify(problem, severity="error")
                    ask(value)
                    return
                self._confirm(action, refs, {"value": number}, f" to {number:g}")

            def ask(typed: str = "") -> None:
                self.app.push_screen(InputModal(f"Priority for {self._what(refs)} (higher is claimed first)",
                                                placeholder="e.g. 0.9", value=typed), set_priority)

            ask()
        else:  # unhold, release
            self._confirm(action, refs, {})

    def _confirm(self, action: str, refs: list[str], options: dict[str, Any], suffix: str = "",
                 detail: str = "") -> None:
        question = f"{ACTION_VERBS[action]} {self._what(refs)}{suffix}?"
        self.app.push_screen(ConfirmModal(question, detail),
                             lambda yes: yes and self.send_lead(action, refs, options))

    def _pick_worker(self, refs: list[str]) -> None:
        self._load_candidates(refs)

    @work(thread=True, group="candidates", exit_on_error=False)
    def _load_candidates(self, refs: list[str]) -> None:
        from router.errors import LabelyardError

        try:
            with self.backend.queries() as q:
                candidates = q.reassign_candidates(refs)
        except LabelyardError as exc:
            self.post_message(ActionFailed("reassign", str(exc)))
            return
        self.app.call_from_thread(self._show_candidates, refs, candidates)

    def _show_candidates(self, refs: list[str], candidates: list[dict[str, Any]]) -> None:
        by_id = {c["id"]: c for c in candidates}
        items = []
        for c in candidates:
            cap = "∞" if c["capacity"] is None else c["capacity"]
            text = f"{c['id']:<14} load {c['active']}/{cap}"
            text += "" if c["eligible"] else f"  ✗ {c['reason']}"
            items.append((c["id"], text))

        def picked(worker: str | None) -> None:
            if worker is None:
                return
            c = by_id[worker]
            if not c["forceable"]:  # reassign refuses it even with force: no question to ask
                self.notify(f"cannot reassign {self._what(refs)} to {worker}: {c['reason']}", severity="error")
            elif c["eligible"]:
                self._confirm("reassign", refs, {"to": worker}, f" to {worker}")
            else:
                self._confirm("reassign", refs, {"to": worker, "force": True}, f" to {worker} anyway (force)",
                              detail=f"Not eligible: {c['reason']}. The event records the override.")

        self.app.push_screen(PickModal(f"Reassign {self._what(refs)} to (eligible first, with load)", items),
                             picked)
