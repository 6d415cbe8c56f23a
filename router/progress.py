"""Progress bars for long work on a terminal (rich); the caller decides when to show one (when
standard error is a terminal). A bar is drawn on standard error, with the messages: standard output
holds the command's report alone, whatever it is redirected to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


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
