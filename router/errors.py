"""Errors raised by the core, with messages meant for people."""

from __future__ import annotations


class LabelyardError(Exception):
    """A user error: the CLI prints the message and exits 1, no traceback."""

    exit_code = 1


class NoWorkflow(LabelyardError):
    """No workflow has been applied to this database yet."""


class PluginModuleMissing(LabelyardError):
    """The active workflow calls functions of a ``plugins:`` module that does not import here."""


class FunctionsMissing(LabelyardError):
    """The active workflow calls rule functions that no plugin loaded here registers."""


class NotInitialised(LabelyardError):
    """The database file does not exist or has no Labelyard schema."""


class UnknownWorker(LabelyardError):
    """A worker name that is not registered."""


class UnknownTask(LabelyardError):
    """A task id or external id that is not in the database."""


class AssignmentError(LabelyardError):
    """An assignment that cannot be submitted (not yours, not active, wrong verdict)."""


class NothingToDo(LabelyardError):
    """No work is available (claim): exit code 3."""

    exit_code = 3
