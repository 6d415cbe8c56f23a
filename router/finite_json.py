"""NaN and infinities in stored values, which JSON cannot carry: written as ``null``, and said where.

An early Labelyard (before ingest and submit refused them) stored ``NaN`` and ``Infinity`` in
task data, predictions, votes and final labels, and ``init`` migrates such a database as it
is. Python's ``json`` writes them as the bare words ``NaN`` and ``Infinity``, which are not
JSON: ``jq`` and other readers, Labelyard's own ingest among them, refuse or misread the whole
document. So ``export`` and every ``--json`` output write them as ``null`` and say on standard
error which task and field held one (:func:`warning`). Found by the encoder itself
(``allow_nan=False``), so a document without any costs nothing more.
"""

from __future__ import annotations

import math
from typing import Any

SHOWN_TASKS = 5  # tasks named in a warning; the rest are counted
SHOWN_FIELDS = 4  # fields named for each task


def is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def without_non_finite(value: Any, path: str = "", found: list[str] | None = None) -> tuple[Any, list[str]]:
    """``value`` with every NaN and infinity (in lists and dicts, at any depth) replaced by ``None``,
    and the paths where they were (``data.t``, ``annotations[0].label``; ``""`` for ``value`` itself)."""
    found = [] if found is None else found
    if is_non_finite(value):
        found.append(path)
        return None, found
    if isinstance(value, dict):
        return {key: without_non_finite(item, f"{path}.{key}" if path else str(key), found)[0]
                for key, item in value.items()}, found
    if isinstance(value, (list, tuple)):
        return [without_non_finite(item, f"{path}[{n}]", found)[0] for n, item in enumerate(value)], found
    return value, found


def task_fields(document: Any, found: list[str]) -> list[tuple[str | None, list[str]]]:
    """``found`` (paths in ``document``) grouped by the task they belong to: a path under a list item
    that names a task (``external_id``, or a ``task`` holding one) is that task's, with the path
    from that item; a document that names one task owns the rest."""
    owners: dict[str | None, list[str]] = {}
    for path in found:
        owner, rest = _owner(document, path)
        owners.setdefault(owner, []).append(rest)
    return list(owners.items())


def _task_name(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("external_id"), str):
        return item["external_id"]
    task = item.get("task")
    return task["external_id"] if isinstance(task, dict) and isinstance(task.get("external_id"), str) else None


def _owner(document: Any, path: str) -> tuple[str | None, str]:
    """The task that ``path`` (in ``document``) belongs to, and the path from where it is named."""
    name = _task_name(document)
    if name is not None or not isinstance(document, list) or not path.startswith("["):
        return name, path
    index, _, rest = path[1:].partition("]")
    item = document[int(index)] if index.isdigit() and int(index) < len(document) else None
    named = _task_name(item)
    return (named, rest.lstrip(".")) if named is not None else (None, path)


def warning(by_task: list[tuple[str | None, list[str]]], *, csv: bool = False) -> str:
    """One line for standard error naming the tasks and fields whose NaN or infinity was written as null."""
    from rules.visible_text import visible

    parts = []
    for task, fields in by_task[:SHOWN_TASKS]:
        shown = ", ".join(field or "the value" for field in fields[:SHOWN_FIELDS])
        more = f" and {len(fields) - SHOWN_FIELDS} more" if len(fields) > SHOWN_FIELDS else ""
        parts.append(f"task {visible(task)} ({shown}{more})" if task is not None else f"{shown}{more}")
    rest = len(by_task) - SHOWN_TASKS
    tail = f"; and {rest} more task{'s' if rest != 1 else ''}" if rest > 0 else ""
    cells = " (in CSV: an empty cell, or null inside a label written as JSON)" if csv else ""
    return (f"warning: NaN or Infinity, which JSON cannot carry, written as null{cells}: {'; '.join(parts)}{tail} "
            "(an early Labelyard stored them; ingest and submit refuse them now)")
