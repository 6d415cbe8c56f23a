"""Hook specifications: every way a plugin can extend Labelyard.

A plugin is a module (or any object) with functions marked ``@hookimpl``::

    from router import hookimpl

    @hookimpl
    def register_sources(register):
        register("tickets_api", read_tickets)

Each hook here is a *registration* hook in the manner of llm's
``register_models``: Labelyard builds the ``register`` callback, so names are
checked and duplicates refused in one place, and a workflow entry such as
``sources: [{plugin: tickets_api, since: 7d}]`` finds what was registered
under that name. A hook implementation may take fewer arguments than its
spec. ``docs/plugins.md`` documents each hook with an example; a test fails
when one is missing there.

Failures never spread: a plugin that raises while loading, registering or
working is recorded with its error (``labelyard plugins``, ``labelyard run``,
``labelyard status``) and every other plugin goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from .plugin_api import FinalTask, Notification, PluginRun, ReviewItem, SourcePart, Verdict

hookspec = pluggy.HookspecMarker("labelyard")

SourceReader = Callable[["PluginRun"], Iterable["SourcePart"]]
SinkWriter = Callable[["PluginRun", list["FinalTask"]], Any]
Reviewer = Callable[["PluginRun", "ReviewItem"], "Verdict | None"]
Notifier = Callable[["PluginRun", "Notification"], None]


@hookspec
def register_sources(register: Callable[[str, SourceReader], None]) -> None:
    """Register task sources: where new tasks come from.

    Called once when the plugin manager is built. Call
    ``register(name, read)`` for each source; ``name`` is what a workflow's
    ``sources: [{plugin: NAME, ...}]`` entry and ``labelyard ingest
    NAME:ARG`` use (``ARG`` arrives as ``run.config["path"]``).

    ``read(run: PluginRun) -> Iterable[SourcePart]`` is called by each
    ``labelyard run`` (and each ``labelyard ingest NAME:ARG``). ``run.config``
    holds the entry's settings, ``run.state`` the cursor the source stored
    last time (``None`` the first time). Yield :class:`SourcePart` values:
    each has ``rows`` (``TaskInput`` or ``RowProblem``, see
    ``router.plugin_api.check_row``), the ``origin`` they came from, and the
    ``cursor`` to store once they are ingested. Yield a part per file or per
    few thousand rows so an interrupted run resumes near where it stopped.

    Every row gets the checks of ``labelyard ingest`` (a bad one is
    quarantined, the others go in). Ingest is idempotent (a known external id
    is skipped), so a source may yield a row twice; ``run.known(ids)`` tells
    which ids exist already. A row's ``line`` is its number in ``origin`` as
    the source counts (need not be unique: each bad row is a reject of its
    own); a part with ``from_start=True`` begins a new read of its origin and
    replaces the origin's earlier rejects.
    Raise :class:`~router.plugin_api.PluginError` for a failure the user can
    fix; nothing of the part being read is kept.
    """


@hookspec
def register_sinks(register: Callable[[str, SinkWriter], None]) -> None:
    """Register sinks: where final labels go.

    Call ``register(name, write)``; a workflow's ``sinks: [{plugin: NAME,
    ...}]`` entry uses ``name``.

    ``write(run: PluginRun, tasks: list[FinalTask]) -> state`` receives a batch
    of newly final tasks (each task once per sink; again only if it is
    finalised again later) and returns the sink's new state, any JSON value,
    which Labelyard stores together with the record that these tasks were
    delivered, in one transaction. The next call gets it back as
    ``run.state``. Before the first batch ever, ``write`` is called with an
    empty list so the sink can say where it starts (an append-only file
    returns its size).

    A run may be killed between ``write`` returning and that transaction: the
    next call then gets the older state and the same tasks again. Make that
    safe: a file sink truncates back to the size in ``run.state`` before
    appending, a sink that rewrites its output replaces rows by task id, a
    remote sink sends ``task.id`` as an idempotency key. Raise to fail the
    batch; nothing is recorded and the tasks are offered again next run.

    ``register(name, write, finish=finish)`` also gives ``finish(run:
    PluginRun) -> state``, called once at the end of each run's sink step
    (after the batches, or alone when there were none; not after a failed
    batch); its state is stored alone. A sink whose output is costly to
    rewrite keeps each batch where it is cheap to append (the built-in
    ``labelstudio`` sink: a journal beside its file) and writes its output
    there, once per run; a run killed before ``finish`` leaves it to the next.
    """


@hookspec
def register_reviewers(register: Callable[[str, Reviewer], None]) -> None:
    """Register automatic reviewers: verdicts on submissions waiting for review.

    Call ``register(name, review)``; a workflow's ``reviewers: [{plugin:
    NAME, queues: [...]}]`` entry uses ``name``.

    ``labelyard run`` calls ``review(run: PluginRun, item: ReviewItem)`` for
    each task in a review stage (of the entry's ``queues``, default all) that
    nobody holds a slot of and this reviewer has not judged in the task's
    current round. Return :func:`~router.plugin_api.approve` (optionally with
    a corrected label), :func:`~router.plugin_api.reject` with a reason, or
    ``None`` to abstain and leave the task to human reviewers. A verdict
    enters ``on_review`` exactly as a human's does, with ``review.automatic``
    true and ``review.reviewer`` ``auto:NAME``; the entries are asked in the
    workflow's order and the first verdict decides. Raising fails that task
    only (the run names it); it is asked about again at the next run.
    """


@hookspec
def register_notifiers(register: Callable[[str, Notifier], None]) -> None:
    """Register notifiers: who hears about events.

    Call ``register(name, send)``; a workflow's ``notify: [{plugin: NAME,
    events: [done, escalated], ...}]`` entry uses ``name``.

    Events the entry asks for are put in an outbox (in the same run that
    sees them); ``send(run: PluginRun, notification: Notification)`` is then
    called for each, oldest first. Returning means delivered: it is never
    sent again. Raising leaves it in the outbox; later runs retry it with a
    growing delay (1 minute, doubling, at most an hour), and the rest of that
    entry's queue waits, so order is kept.
    """


@hookspec
def register_functions(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register functions that workflow expressions can call.

    Call ``register(name, function)``; ``when: is_weekend(now)`` then calls
    ``function(now)``. Names are plain identifiers that clash with no built-in
    function or context root. Functions get plain values (numbers, text,
    lists, objects, ``None``) and should return one; they must be pure and
    fast, as they run inside routing transactions. An exception inside one
    holds the task with the error as its reason.
    """


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add commands to the ``labelyard`` CLI.

    ``cli`` is the top-level click group; decorate functions with
    ``@cli.command()``. Plugin commands are loaded only when a command name
    is not a built-in one (and for ``--help``), so they never slow down
    ``labelyard claim``.
    """
