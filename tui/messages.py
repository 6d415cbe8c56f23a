"""Messages the TUI's thread workers post back to the screens (the only way data crosses threads)."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class DataChanged(Message):
    """Another process (or this app) committed to the database: visible data should be reloaded."""


class TimePassed(Message):
    """The app's clock ticked (``LabelyardApp.clock_interval``): figures that age with time should be
    refreshed, though nothing was written."""


class Loaded(Message):
    """A screen's data was read: ``what`` names the part, ``data`` is plain data from ``router.queries``."""

    def __init__(self, what: str, data: Any) -> None:
        super().__init__()
        self.what = what
        self.data = data


class Searching(Message):
    """A task list's search is under way: ``read`` tasks read so far for the page ``asked`` of
    ``task_filter``, ``found`` of them matching."""

    def __init__(self, task_filter: Any, asked: Any, read: int, found: int) -> None:
        super().__init__()
        self.task_filter = task_filter
        self.asked = asked
        self.read = read
        self.found = found


class ActionDone(Message):
    """A lead action went through ``router.lead``: ``report`` is its ``BulkReport.as_dict()``."""

    def __init__(self, action: str, report: dict[str, Any]) -> None:
        super().__init__()
        self.action = action
        self.report = report


class ActionFailed(Message):
    """An action or a read was refused or failed; ``error`` is the user-facing message."""

    def __init__(self, action: str, error: str) -> None:
        super().__init__()
        self.action = action
        self.error = error


class Claimed(Message):
    """The work screen got a slot (``view`` is ``Engine.claim``'s view) or none (``view`` is None)."""

    def __init__(self, view: dict[str, Any] | None, note: str | None = None, resumed: bool = False) -> None:
        super().__init__()
        self.view = view
        self.note = note
        self.resumed = resumed  # a slot the worker already held (the screen was quit mid-task)


class SlotGone(Message):
    """The work screen's slot was taken away (a lead released, reassigned or held it; a timer expired it)."""

    def __init__(self, assignment: int, why: str, *, sending: bool = False) -> None:
        super().__init__()
        self.assignment = assignment
        self.why = why
        self.sending = sending  # found when its submission or skip failed (else by a check on reload)


class Submitted(Message):
    """The work screen's submission (or skip) went through."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__()
        self.result = result
