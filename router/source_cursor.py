"""A source entry's cursor as ``labelyard run`` keeps it while the source's parts go in.

A part's cursor is stored once its rows went in (``router.runner.ingest_parts``). A whole cursor
is stored as it comes. A :class:`~router.plugin_api.CursorEntries` cursor (what the part changes
in an object of entries, one per file) is applied to the object held here, and the object is
stored once the parts since it was last stored hold ``CURSOR_STORE_ROWS`` rows, or changed as
many entries as a ``CURSOR_STORE_SHARE`` th of it holds, and at the end of the read
(:meth:`SourceCursor.flush`): storing costs in proportion to the entries, so a part of one file
of thousands costs no more than one of a single file. A run killed before a store reads the parts
since again; ingest skips their known ids and finds their rejects.
"""

from __future__ import annotations

from typing import Any

from . import clock
from .plugin_api import CURSOR_STORE_ROWS, CURSOR_STORE_SHARE, CursorEntries
from .plugin_values import json_value_problem


def cursor_problem(cursor: Any) -> str | None:
    """Why a part's cursor cannot be stored (a :class:`CursorEntries`: its entries and keys alone)."""
    if not isinstance(cursor, CursorEntries):
        return json_value_problem(cursor, "cursor")
    if not isinstance(cursor.entries, dict):
        return f"CursorEntries.entries must be an object (a dict), not {type(cursor.entries).__name__}"
    drop = cursor.drop
    if isinstance(drop, (str, bytes, dict)) or not isinstance(drop, (list, tuple, set, frozenset)) \
            or not all(isinstance(key, str) for key in drop):
        return "CursorEntries.drop must be a list of text keys"
    return json_value_problem(cursor.entries, "cursor")


class SourceCursor:
    """The cursor ``name`` of a source entry: :meth:`take` each part's cursor once its rows went in,
    :meth:`flush` at the end of the read. ``value`` is the cursor as the parts taken make it."""

    def __init__(self, store, name: str, value: Any):
        self.store, self.name, self.value = store, name, value
        self.rows, self.changed = 0, set()  # since the cursor was last stored: rows, keys of entries set
        self.dirty = False

    def take(self, cursor: Any, rows: int) -> None:
        if not isinstance(cursor, CursorEntries):
            self.value = cursor
            self._store()
            return
        if not isinstance(self.value, dict):
            self.value = {}
        for key in cursor.drop:
            if key in self.value:
                del self.value[key]
                self.dirty = True
        self.value.update(cursor.entries)
        self.dirty |= bool(cursor.entries)
        self.changed.update(cursor.entries)
        self.rows += rows
        if self.dirty and (self.rows >= CURSOR_STORE_ROWS or len(self.changed) * CURSOR_STORE_SHARE >= len(self.value)):
            self._store()

    def flush(self) -> None:
        """Store what the parts taken changed and is not stored yet."""
        if self.dirty:
            self._store()

    def _store(self) -> None:
        with self.store.transaction():
            self.store.set_cursor(self.name, self.value, clock.now())
        self.rows, self.changed = 0, set()
        self.dirty = False

