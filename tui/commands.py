"""The command palette offers every action: screens, filters, lead actions, work keys.

One registry (:data:`COMMANDS`): each entry names the binding's action on the app or on the current
screen, so a palette command does exactly what its key does.
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, help, action, screen class name or None for the app)
COMMANDS: list[tuple[str, str, str, str | None]] = [
    ("Dashboard", "queues, workers, throughput, alerts", "app.switch_mode('dashboard')", None),
    ("Tasks", "every task, filtered and paged", "app.switch_mode('tasks')", None),
    ("Workers", "roster, load, quality; pause, resume, flag", "app.switch_mode('workers')", None),
    ("Workflow", "rules and how often each fired", "app.switch_mode('workflow')", None),
    ("Refresh", "reload what is on screen now", "app.refresh_now", None),
    ("Help", "keys of this screen", "app.help", None),
    ("Quit", "leave Labelyard", "app.quit", None),
    ("Reassign", "give the selected task(s) to a worker", "lead('reassign')", "TasksScreen TaskDetailScreen"),
    ("Escalate", "send the selected task(s) to a queue for adjudication", "lead('escalate')",
     "TasksScreen TaskDetailScreen"),
    ("Hold", "pause the selected task(s)", "lead('hold')", "TasksScreen TaskDetailScreen"),
    ("Unhold", "reopen held task(s) in their stage", "lead('unhold')", "TasksScreen TaskDetailScreen"),
    ("Release", "end the active slots of the selected task(s)", "lead('release')", "TasksScreen TaskDetailScreen"),
    ("Set priority", "of the selected task(s)", "lead('priority')", "TasksScreen TaskDetailScreen"),
    ("Filter: search", "id, external id, category or data", "filter_text", "TasksScreen"),
    ("Filter: status", "open, held, done, invalid", "filter_status", "TasksScreen"),
    ("Filter: queue", "one queue", "filter_queue", "TasksScreen"),
    ("Filter: stage", "annotate, review, correct, escalated", "filter_stage", "TasksScreen"),
    ("Filter: worker", "tasks a worker had a slot of", "filter_worker", "TasksScreen"),
    ("Clear filters", "all tasks", "clear_filters", "TasksScreen"),
    ("Sort", "id, priority, age, updated", "sort", "TasksScreen"),
    ("Reverse sort", "ascending / descending", "reverse", "TasksScreen"),
    ("Next page", "", "next_page", "TasksScreen"),
    ("Previous page", "", "prev_page", "TasksScreen"),
    ("Select", "toggle the task under the cursor", "toggle_select", "TasksScreen"),
    ("Pause / resume worker", "the worker under the cursor", "toggle_pause", "WorkersScreen"),
    ("Flag / unflag worker", "the worker under the cursor (votes.any_flagged)", "toggle_flag", "WorkersScreen"),
    ("Agreement now", "recompute agreement", "agreement", "DashboardScreen"),
    ("Show YAML", "the workflow's text", "toggle_yaml", "WorkflowScreen"),
    ("Approve", "the review slot", "approve", "WorkScreen"),
    ("Reject", "the review slot, with a comment", "reject", "WorkScreen"),
    ("Skip", "give the slot back", "skip", "WorkScreen"),
    ("Claim", "take the next slot", "next", "WorkScreen"),
]


class LabelyardCommands(Provider):
    """Palette entries for the current screen and the app."""

    def _available(self):
        screen = self.screen
        name = type(screen).__name__
        work_only = getattr(self.app, "start", "dashboard") == "work"
        for title, help_, action, screens in COMMANDS:
            if screens is None:
                if work_only and "switch_mode" in action:
                    continue
                yield title, help_, action, None
            elif name in screens.split():
                yield title, help_, action, screen

    async def _run(self, action: str, screen) -> None:
        if screen is None:
            await self.app.run_action(action)
        else:
            await self.app.run_action(action, screen)

    async def discover(self) -> Hits:
        for title, help_, action, screen in self._available():
            yield DiscoveryHit(title, partial(self._run, action, screen), help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_, action, screen in self._available():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, action, screen), help=help_)
