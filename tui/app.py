"""The Labelyard TUI: team leads watch and steer the queues; annotators work.

``LabelyardApp(db, actor)`` opens the dashboard; ``start="work"`` opens the annotator's screen for
``worker``. Every database read and write runs in a thread worker through :mod:`tui.backend`
(``router``'s query API, lead actions and engine); results come back as messages. A thread polls
``PRAGMA data_version`` on a connection of its own every ``poll_interval`` seconds and, when any other
connection committed, the visible screen reloads. Every ``clock_interval`` seconds (30 by default) the
visible screen also refreshes what time alone changes (ages, SLA breaches, the last 24 hours), even
when nobody writes.

``run(db, actor, ...)`` is what ``labelyard tui`` and ``labelyard work`` call.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, get_current_worker

from router import clock
from router.queries import TaskFilter

from .backend import Backend
from .commands import LabelyardCommands
from .messages import DataChanged, TimePassed
from .screens.base import worker_failed
from .screens.dashboard import DashboardScreen
from .screens.tasks import TasksScreen
from .screens.work import WorkScreen
from .screens.workers import WorkersScreen
from .screens.workflow import WorkflowScreen
from .widgets import format as fmt

LEAD_MODES = ("dashboard", "tasks", "workers", "workflow")
CLOCK_INTERVAL = 30.0  # seconds between refreshes of time-based figures when nothing is written


class LabelyardApp(App):
    """Dashboard, tasks, workers and workflow for leads; the work screen for annotators."""

    CSS_PATH = "app.tcss"
    TITLE = "Labelyard"
    COMMANDS = App.COMMANDS | {LabelyardCommands}
    MODES: ClassVar[dict[str, Any]] = {
        "dashboard": DashboardScreen,
        "tasks": TasksScreen,
        "workers": WorkersScreen,
        "workflow": WorkflowScreen,
        "work": WorkScreen,
    }
    BINDINGS = [
        Binding("d", "switch_mode('dashboard')", "Dashboard", id="app.dashboard"),
        Binding("t", "switch_mode('tasks')", "Tasks", id="app.tasks"),
        Binding("w", "switch_mode('workers')", "Workers", id="app.workers"),
        Binding("f", "switch_mode('workflow')", "Workflow", id="app.workflow"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+r", "refresh_now", "Refresh", id="app.refresh", show=False),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, db: str, actor: str, *, start: str = "dashboard", worker: str | None = None,
                 queue: str | None = None, poll_interval: float | None = 1.0,
                 clock_interval: float | None = CLOCK_INTERVAL) -> None:
        self.DEFAULT_MODE = start  # read by App.__init__
        super().__init__()
        self.backend = Backend(db, actor)
        self.start = start
        self.worker = worker or actor
        self.queue = queue
        self.poll_interval = poll_interval
        self.clock_interval = clock_interval
        self.workflow: dict[str, Any] | None = None
        self.worker_names: list[str] = []
        self.is_lead = False
        self.last_change: tuple[Any, ...] | None = None  # check_changes' last reading of the change marker
        # The tasks (`id:N`) of the lead's last action, from any screen, until their next: a task that
        # leaves the task list by the lead's own hand goes without a warning.
        self.acted: set[str] = set()
        self._stop = threading.Event()
        import os

        who = f"working as {self.worker}" if start == "work" else f"lead {actor}"
        self.sub_title = fmt.clean(f"{os.path.basename(db)} · {who}")

    def now(self) -> float:
        return clock.now()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker_failed(self, event)  # the app's own polls and checks, as every screen's reads

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every notification as plain text: messages quote ids, names and reasons from the database,
        which must neither be read as markup nor reach the terminal with their control characters."""
        super().notify(fmt.clean(message, lines=True), title=fmt.clean(title), severity=severity, timeout=timeout,
                       markup=False)

    # -- start and stop -----------------------------------------------------------------
    def on_mount(self) -> None:
        self.load_meta()
        if self.poll_interval:
            self.watch_database()
        if self.clock_interval:
            self.set_interval(self.clock_interval, self.time_passed, name="clock")

    def on_unmount(self) -> None:
        self._stop.set()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "switch_mode" and self.start == "work" and parameters and parameters[0] != "work":
            return False  # the annotator's app shows the work screen only
        return True

    @work(thread=True, exclusive=True, group="meta", exit_on_error=False)
    def load_meta(self) -> None:
        """The workflow (queues for pickers) and worker names; whether the actor is a lead."""
        with self.backend.queries() as q:
            info = q.workflow_info()
            workers = q.store.workers()
            names = [w["id"] for w in workers]
            import json

            lead = any(w["id"] == self.backend.actor and "lead" in json.loads(w["roles"]) for w in workers)
            last = q.change_marker()
        self.call_from_thread(self._meta_loaded, info, names, lead, last)

    def _meta_loaded(self, info: dict[str, Any] | None, names: list[str], lead: bool, last: tuple[Any, ...]) -> None:
        first = self.last_change is None
        self.workflow, self.worker_names, self.is_lead = info, names, lead
        if self.last_change is None:
            self.last_change = last
        if first and not lead and self.start != "work":
            self.notify(f"{self.backend.actor} has no lead role: you can watch, but actions will be refused "
                        f"(`labelyard workers add {self.backend.actor} --role lead` by a lead)",
                        severity="warning", timeout=10)

    # -- live refresh -------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def watch_database(self) -> None:
        """Every ``poll_interval`` s: ``PRAGMA data_version`` on this thread's own connection, which moves
        whenever any other connection commits (an event, a rejected input row, a plugin run: anything)
        and reads no page; when it moved, the screen reloads."""
        me = get_current_worker()
        with self.backend.queries() as q:
            last = q.data_version()
            while not me.is_cancelled and not self._stop.wait(self.poll_interval or 1.0):
                newest = q.data_version()
                if newest != last:
                    last = newest
                    self.call_from_thread(self.data_changed)

    @work(thread=True, exclusive=True, group="check", exit_on_error=False)
    def check_changes(self) -> None:
        """One poll, for ``ctrl+r``-free tests and scripts. Each runs on a new connection, where
        ``data_version`` means nothing: it compares :meth:`Queries.change_marker` instead."""
        with self.backend.queries() as q:
            newest = q.change_marker()
        if newest != self.last_change:
            self.last_change = newest
            self.call_from_thread(self.data_changed)

    def data_changed(self) -> None:
        """Someone wrote: reload the visible screen (others reload when they are shown again)."""
        self.screen.post_message(DataChanged())
        self.load_meta()

    def time_passed(self) -> None:
        """Every ``clock_interval`` s, written or not: the visible screen refreshes its time-based
        figures (the dashboard's ages, SLA breaches and 24 h counts, the task list's ages, the
        workers' 24 h submissions), each as cheaply as it can."""
        self.screen.post_message(TimePassed())

    def changed_here(self) -> None:
        """This app acted: show the result at once."""
        self.data_changed()

    def action_refresh_now(self) -> None:
        self.data_changed()

    # -- navigation -----------------------------------------------------------------------
    def action_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def open_tasks(self, *, queue: str | None = None, status: str | None = None, worker: str | None = None) -> None:
        self.run_worker(self._open_tasks(TaskFilter(queue=queue, status=status, worker=worker)), group="nav")

    async def _open_tasks(self, task_filter: TaskFilter) -> None:
        await self.switch_mode("tasks")
        while not isinstance(self.screen, TasksScreen) and len(self.screen_stack) > 1:
            self.pop_screen()
        screen = self.screen
        if isinstance(screen, TasksScreen):
            screen.set_filter(task_filter)


def run(db: str, actor: str, *, start: str = "dashboard", worker: str | None = None,
        queue: str | None = None) -> None:
    """Open the TUI on ``db`` (``labelyard tui`` / ``labelyard work``)."""
    LabelyardApp(db, actor, start=start, worker=worker, queue=queue).run()
