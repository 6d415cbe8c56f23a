"""Small text helpers for screens: ages, labels, numbers, bands, safe text, and a task's data cut to
what a screen lays out (:func:`shown_data`, :func:`data_block`).

Every string that comes from the database or the workflow (ids, labels, names, reasons, rules) is
shown through :func:`plain` or :func:`line`: a rich ``Text`` built without reading markup (a stray
``[/]`` in a reason is text, not a closing tag), whose control characters are made visible by
:func:`clean` (an escape sequence in an external id must not reach the terminal) as the CLI writes
them: one definition, :mod:`rules.visible_text`, so a name reads the same on both.
"""

from __future__ import annotations

import json
from typing import Any, Union

from rich.text import Text

from router.queries import duration
from rules.visible_text import one_line, visible

BAND_STYLE = {"excellent": "green", "ok": "yellow", "alert": "bold red"}
DATA_LINES = 200  # lines of a task's data a screen (task detail, work) shows at most
DATA_CHARS = 16 * 1024  # and characters (one long string value is one line)

Part = Union[str, Text, tuple[Any, str]]


def clean(value: Any, *, lines: bool = False) -> str:
    """``value`` as text with every control character written as a visible escape (``\\x1b``), the
    line and paragraph separators too (``\\u2028``), as the CLI writes it
    (:func:`rules.visible_text.one_line`); ``lines``: newlines and tabs kept, for multi-line blocks
    (:func:`rules.visible_text.visible`)."""
    text = value if isinstance(value, str) else str(value)
    return visible(text) if lines else one_line(text)


def plain(value: Any, style: str = "", *, lines: bool = False) -> Text:
    """``value`` as one piece of text: no markup read, control characters made visible."""
    return Text(clean("" if value is None else value, lines=lines), style=style, end="")


def cut(value: Any, width: int, style: str = "") -> Text:
    """``value`` as :func:`plain`, cut to ``width`` terminal cells (double-width characters count
    two) with an ellipsis: a table column that one long value must not widen past the screen."""
    text = plain(value, style)
    text.truncate(width, overflow="ellipsis")
    return text


def line(*parts: Part, lines: bool = False) -> Text:
    """Text from parts, each a string (plain), a ``(value, style)`` pair or a ready ``Text``
    (kept as built): how screens mix their own bold words with data."""
    out = Text(end="")
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        elif isinstance(part, tuple):
            out.append_text(plain(part[0], part[1], lines=lines))
        else:
            out.append_text(plain(part, lines=lines))
    return out


def join(texts: list[Text], separator: str = "\n") -> Text:
    """``texts`` one after another with ``separator`` between them."""
    return Text(separator, end="").join(texts)


def worker_state(w: dict[str, Any]) -> str:
    """A worker's state column (the dashboard's and the workers screen's): ``paused`` (with its
    reason) and ``flagged``, both when both ("paused: too fast · flagged")."""
    paused = ("paused" + (f": {w['pause_reason']}" if w["pause_reason"] else "")) if w["paused"] else ""
    return " · ".join(part for part in (paused, "flagged" if w["flagged"] else "") if part)


def age(seconds: float | None) -> str:
    """How long ago, for every age a screen shows (the task list's, a queue's oldest task): ``0s``
    when the clock is behind the stored time (``LABELYARD_NOW`` set back, a corrected system
    clock), never a negative count of seconds."""
    return "-" if seconds is None else duration(max(0.0, seconds))


def label(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def banded(value: float | None, band: str | None) -> Text:
    return Text(num(value), style=BAND_STYLE.get(band or "", ""))


def count(n: int, style_if_nonzero: str = "") -> Text:
    return Text(f"{n:,}", style=style_if_nonzero if n else "dim")


def shown_data(data: Any, task_id: int) -> tuple[str, str | None]:
    """A task's ``data`` as the task detail and the work screen show it: indented JSON, cut to its
    first :data:`DATA_LINES` lines and :data:`DATA_CHARS` characters; and, when it was cut, the line
    that says how big it is and that ``labelyard show`` prints it whole. Called in the thread that
    read the task: writing out and laying out an object of 40,000 keys on the event loop froze the
    app for seconds."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    shown = text[:DATA_CHARS]
    end = -1
    for _ in range(DATA_LINES):
        end = shown.find("\n", end + 1)
        if end < 0:
            break
    else:
        shown = shown[:end]
    if len(shown) == len(text):
        return text, None
    lines = text.count("\n") + 1
    return shown, (f"… cut here: the data is {len(text):,} characters in {lines:,} lines; "
                   f"`labelyard show id:{task_id}` prints it whole")


def data_block(shown: tuple[str, str | None]) -> list[Text]:
    """The lines a screen shows for :func:`shown_data`'s answer: a bold ``data``, the text, and the
    yellow line that says it was cut (when it was)."""
    text, cut_note = shown
    block = [line(("data", "bold")), plain(text, lines=True)]
    if cut_note:
        block.append(plain(cut_note, "yellow"))
    return block
