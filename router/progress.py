"""Progress bars for long work on a terminal (rich); the caller decides when to show one (when
standard error is a terminal). A bar is drawn on standard error, with the messages: standard output
holds the command's report alone, whatever it is redirected to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def count_lines(path: str) -> int:
    """Lines in a file, counted in binary chunks (about 1 s per GB)."""
    lines = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            lines += chunk.count(b"\n")
    return lines


@contextmanager
def line_progress(path: str, label: str) -> Iterator[Callable[[int], None]]:
    """A bar over a file's lines; yields ``update(line_reached)``."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = count_lines(path)
    # the label names the user's file: escaped, so a name like `[/]x.jsonl` is not read as markup
    with Progress(TextColumn(f"[bold]{escape(label)}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task(label, total=total)
        yield lambda line: progress.update(task, completed=min(line, total))


class SearchLine:
    """A line on standard error while a ``--where`` filter searches: the tasks read of how many,
    and how many match so far (``lead.SearchProgress``: call it after each page). Drawn from the
    first page read, gone once :meth:`close` is called, when the search ends and what was found is
    acted on and printed."""

    def __init__(self, label: str = "searching"):
        self.label = label
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, read: int, total: int | None, matched: int) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("tasks read, {task.fields[matched]} matching"),
                                      transient=True, console=Console(stderr=True))
            self._task = self._progress.add_task(self.label, total=total, completed=read, matched=matched)
            self._progress.start()
        self._progress.update(self._task, completed=read, total=total, matched=matched)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
