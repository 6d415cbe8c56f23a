"""CSV: a source (``path:`` a file or a glob) and a sink (``path:`` one file).

The source reads files as ``labelyard ingest file.csv`` does (``id``,
``category``, ``tags``, ``prediction_label`` read as the workflow's label
type, ``prediction_confidence``, ``prediction_model``; other columns go into
``data``). A last line without its line break may be half a row still being
written (CSV cannot tell): a run never reads it, however long it stays so;
it waits for its line break (the file is then read again, known ids
skipped). A finished file is read to its end: under ``labelyard ingest
csv:FILE`` (``run.one_shot``, as ``labelyard ingest FILE.csv`` reads it),
or once the file has not been modified for ``finished_after:`` seconds (an
hour by default) (a spreadsheet's export has no final line break). Its cursor
keeps each file's signature and the rows already ingested: an unchanged file
is skipped, an interrupted one resumes, a changed one is read again (known
ids skipped) and its rejects replaced. Each part records its own file's entry
alone (``CursorEntries``), so a part costs the same however many files the
cursor knows; a file the glob no longer matches (moved away, deleted) has its
entry dropped.

The sink writes ``id,label,final_by,rule,final_at,category,agreement`` with
(a file that is not empty must start with that header: another is refused)
a header (a line break first when the file does not end with one), and after
a crash cuts the file back to its last recorded size when what is after it
is its own unrecorded batch (another writer's rows are kept) (a
file the state does not know yet, to the size its start mark recorded before
the first batch went in: ``_files.open_append``).
Cells are written as stored; with ``spreadsheet_safe: true`` a cell that a
spreadsheet would read as a formula gets a ``'`` first, as ``labelyard export
--format csv --spreadsheet-safe`` writes it (the same function).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from itertools import islice
from typing import Any

from router import hookimpl
from router.plugin_api import (CursorEntries, FinalTask, PluginError, PluginRun, SourcePart, read_file,
                               spreadsheet_safe)

from ._files import (FINISHED_AFTER, chunks, finish, finished, forget_gone, matching_files, open_append,
                     signature)

COLUMNS = ("id", "label", "final_by", "rule", "final_at", "category", "agreement")
HEADER = (",".join(COLUMNS) + "\r\n").encode("ascii")


@hookimpl
def register_sources(register):
    register("csv", read, settings={"path": str, "finished_after": FINISHED_AFTER}, required=["path"])


@hookimpl
def register_sinks(register):
    register("csv", write, settings={"path": str, "spreadsheet_safe": bool}, required=["path"])


def read(run: PluginRun) -> Iterator[SourcePart]:
    state: dict[str, Any] = dict(run.state or {})
    files = matching_files(run, "csv")
    yield from forget_gone(run, state, files)
    for path in files:
        st = os.stat(path)
        sig = signature(st)
        done = state.get(path) or {}
        unchanged = {k: done.get(k) for k in sig} == sig
        skip = done.get("rows", 0) if unchanged else 0
        # A last line without its line break may be half a row still being written, which CSV cannot
        # tell from a whole one: it is read only once the file is finished (`ingest csv:FILE`, or
        # unmodified for `finished_after:` seconds), however many runs find it unchanged before.
        tail_whole = finished(run, st)
        if unchanged and (done.get("complete") or (done.get("held") and not tail_whole)):
            continue
        rows_done = skip
        from_start = not skip  # a file read again (or for the first time): its earlier rejects go
        rows_read = read_file(path, run.choices, "csv", label_type=run.label_type, wait_for_newline=not tail_whole)
        for rows in chunks(islice(rows_read, skip, None)):
            rows_done += len(rows)
            yield SourcePart(path, rows, CursorEntries({path: {**sig, "rows": rows_done, "complete": False}}),
                             from_start=from_start)
            from_start = False
        held = not tail_whole and _unterminated(path, sig["size"])
        entry = {**sig, "rows": rows_done, "complete": not held, **({"held": True} if held else {})}
        yield SourcePart(path, [], CursorEntries({path: entry}), from_start=from_start)


def _unterminated(path: str, size: int) -> bool:
    """Whether the file's last line has no line break (the reader held it back as still being written)."""
    if size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) not in (b"\n", b"\r")


def write(run: PluginRun, tasks: list[FinalTask]) -> dict[str, Any]:
    safe = run.setting("spreadsheet_safe", False, kind=bool)
    text = io.StringIO()
    writer = csv.writer(text)
    for t in tasks:
        label = t.label if isinstance(t.label, str) else json.dumps(t.label, ensure_ascii=False)
        cells = [t.id, label, t.final_by, t.rule or "", t.final_at, t.category or "",
                 "" if t.agreement is None else round(t.agreement, 6)]
        writer.writerow([spreadsheet_safe(cell) for cell in cells] if safe else cells)
    path = run.path(run.require("path", str))
    _check_header(path)
    output = open_append(path, run.state, text.getvalue().encode("utf-8"),
                         header=HEADER, newline=b"\r\n")
    output.write(output.pending)
    return finish(output)


def _check_header(path: str) -> None:
    """Refuse a file that is not empty and whose first row is not the sink's header (another
    export's file, say): rows appended under another header are read wrongly, or refused."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(64 * 1024)
    except FileNotFoundError:
        return
    if not first:
        return
    found = next(csv.reader([first.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")]), [])
    if tuple(found) != COLUMNS:
        raise PluginError(f"{path}: its header is {','.join(found)!r}, not the csv sink's {','.join(COLUMNS)!r}; "
                          "rows are not appended under another header (give the sink another path:, or "
                          "move that file away)")
