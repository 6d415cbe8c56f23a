"""``labelyard tui`` and ``labelyard work --as W``: open the Textual app.

``router`` must not import ``tui`` (import-linter's contract): the app is loaded by name with
:func:`importlib.import_module` inside the command, the way a console entry point names its
target. The import graph keeps no ``router -> tui`` edge, the CLI stays fast (Textual is imported
only by these two commands), and a build without ``tui`` gets a clear error instead of a crash.
"""

from __future__ import annotations

import importlib
import sys

import click

TUI_MODULE = "tui.app"


def open_tui(db: str, actor: str, *, start: str = "dashboard", worker: str | None = None,
             queue: str | None = None) -> None:
    """Run the TUI on ``db`` (an initialised database) until the user quits."""
    from .errors import LabelyardError

    try:
        app = importlib.import_module(TUI_MODULE)
    except ImportError as exc:
        raise LabelyardError(f"the TUI is not available: {exc}") from None
    app.run(db, actor, start=start, worker=worker, queue=queue)


def _require_terminal() -> None:
    from .errors import LabelyardError

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise LabelyardError("the TUI needs a terminal; use `labelyard status`, `claim` and `submit` in scripts")


def register(main: click.Group) -> None:
    """Add ``tui`` and ``work`` to the ``labelyard`` group."""
    from .cli import _engine, _worker, as_option, db_option

    @main.command()
    @db_option
    @as_option
    def tui(db: str | None, worker: str | None) -> None:
        """Open the lead's dashboard: queues, tasks, workers, workflow (actions need the lead role)."""
        _require_terminal()
        engine = _engine(db)  # checks the database before the screen opens
        path = engine.store.path
        engine.close()
        open_tui(path, _worker(worker))

    @main.command("work")
    @db_option
    @as_option
    @click.option("--queue", default=None, help="Only this queue.")
    def work_(db: str | None, worker: str | None, queue: str | None) -> None:
        """Label in the terminal: claim, label with number keys, submit, next; reviews too."""
        engine = _engine(db)
        try:  # as `labelyard claim` checks them: a wrong name is one line, not a screen that waits forever
            path = engine.store.path
            who = _worker(worker)
            engine._require_worker(who)
            if queue is not None:  # one the workflow has and the worker may take (exit 1 or 3, as claim)
                engine.require_claim_queue(who, queue)
        finally:
            engine.close()
        _require_terminal()
        open_tui(path, who, start="work", worker=who, queue=queue)
