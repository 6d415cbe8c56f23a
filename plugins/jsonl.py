"""JSON Lines: a source (``path:`` a file or a glob) and a sink (``path:`` one file).

Source rows are ``{"id", "data", "category", "tags", "prediction"}`` objects,
as ``labelyard ingest`` reads them. The cursor keeps, per file, the byte
offset and line reached, so files that grow (an append-only inbox) are read
from where the last run stopped (each part records its own file's entry
alone, ``CursorEntries``, so a part costs the same however many files the
cursor knows; a file the glob no longer matches, moved away or deleted, has
its entry dropped). A file read again from the start (known ids
are skipped): one replaced (another inode), shrunk below the offset, or
rewritten in place (``>`` keeps the inode) — told by a fingerprint of the
first and the last 4 KiB before the offset, checked whenever the file's
size or modification time changed. A file read from the start replaces its
rejects (``SourcePart.from_start``); one read on from its offset adds to them.

A last line without its newline is read when it is a complete JSON object
(half a row never is one), or when it holds a carriage return followed by
more (lines ended by a lone CR, which ``labelyard ingest`` quarantines the
same way, saying so); anything else there is taken as still being written
and waits for its newline, the cursor before it, however many runs find it
so. A finished file is read as it is, a cut-off line quarantined as
``ingest`` does: under ``labelyard ingest jsonl:FILE`` (``run.one_shot``: no
next run), or once the file has not been modified for ``finished_after:``
seconds (an hour by default). Line numbers (of rejects) stay right when that
newline comes later. A line longer than a row may be (64 MiB, ``MAX_ROW_BYTES``) is read
through in pieces, never held, and quarantined with its size, as ``labelyard ingest`` does
(``lines_within``).

The sink appends one JSON object per final task (the ``labelyard export``
row plus ``votes`` and ``agreement``), a line break first when the file does
not end with one; after a crash it cuts the file back to the last recorded
size before appending, when what is after it is its own unrecorded batch
(another writer's rows are kept), so each task appears once (a file
the state does not know yet, to the size its start mark recorded before the
first batch went in: ``_files.open_append``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

from router import hookimpl
from router.plugin_api import (CursorEntries, FinalTask, LongLine, PluginRun, RowProblem, SourcePart, TaskInput,
                               lines_within, parse_jsonl_line)

from ._files import FINISHED_AFTER, PART_ROWS, finish, finished, forget_gone, matching_files, open_append

FINGERPRINT_BYTES = 4096


@hookimpl
def register_sources(register):
    register("jsonl", read, settings={"path": str, "finished_after": FINISHED_AFTER}, required=["path"])


@hookimpl
def register_sinks(register):
    register("jsonl", write, settings={"path": str}, required=["path"])


def read(run: PluginRun) -> Iterator[SourcePart]:
    state: dict[str, Any] = dict(run.state or {})
    files = matching_files(run, "jsonl")
    yield from forget_gone(run, state, files)
    for path in files:
        st = os.stat(path)
        done = state.get(path) or {}
        offset, line, open_line = 0, 0, False
        if _continues(path, st, done):
            offset, line, open_line = done["offset"], done["line"], bool(done.get("open"))
        if offset == st.st_size:
            continue
        yield from _parts(path, offset, line, open_line, run.choices, st, wait=not finished(run, st))


def _continues(path: str, st: os.stat_result, done: dict[str, Any]) -> bool:
    """Whether ``path`` is the file the cursor ``done`` read, grown at most (not replaced or rewritten)."""
    offset = done.get("offset", -1)
    if done.get("ino") != st.st_ino or not isinstance(offset, int) or not 0 <= offset <= st.st_size:
        return False
    if "fp" not in done or (done.get("size"), done.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
        return True  # untouched since (or a cursor from before fingerprints)
    with open(path, "rb") as handle:
        return _fingerprint(handle.fileno(), offset) == done["fp"]


def _fingerprint(fd: int, offset: int) -> str:
    """A hash of the first and the last ``FINGERPRINT_BYTES`` before ``offset``."""
    head = os.pread(fd, min(offset, FINGERPRINT_BYTES), 0)
    tail_start = max(0, offset - FINGERPRINT_BYTES)
    tail = os.pread(fd, offset - tail_start, tail_start)
    return hashlib.sha1(head + b"|" + tail).hexdigest()[:16]


_SYNTAX = json.JSONDecoder(parse_int=str)  # whether a line is whole; its values are read by parse_jsonl_line


def _complete_object(raw: bytes) -> bool:
    """Whether a line without its newline is a whole JSON object (its numbers however long)."""
    try:
        return isinstance(_SYNTAX.decode(raw.decode("utf-8")), dict)
    except (ValueError, RecursionError):  # not UTF-8, not JSON (yet)
        return False


def _finished(raw: bytes) -> bool:
    """Whether a last line without its newline is all there is to it: a whole object, or lines
    ended by a lone CR (a CR with more after it), which no newline will come to end."""
    return _complete_object(raw) or b"\r" in raw.rstrip(b" \t\r")


def _parts(path: str, offset: int, line: int, open_line: bool, choices: tuple[str, ...], st: os.stat_result,
           wait: bool = True) -> Iterator[SourcePart]:
    """The file's rows from ``offset`` in parts; with ``wait``, a last line without its newline
    that is not yet whole is left for the next run (else it is read as it is: a finished file)."""
    from_start = offset == 0  # the file read again (or for the first time): its earlier rejects go
    with open(path, "rb") as handle:
        handle.seek(offset)
        rows: list[TaskInput | RowProblem] = []

        def mark() -> CursorEntries:  # this file's entry alone: the others are as they were
            return CursorEntries({path: {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                         "offset": offset, "line": line, "open": open_line,
                                         "fp": _fingerprint(handle.fileno(), offset)}})

        for raw in lines_within(handle):  # a line longer than a row may be is read through, never held
            long = isinstance(raw, LongLine)
            ended = raw.ended if long else raw.endswith(b"\n")
            if not ended and wait and (long or not _finished(raw)):
                break  # still being written: left for the next run
            if not open_line:  # else the rest of a line read without its newline last time
                line += 1
            open_line = not ended
            if long:
                offset += raw.length
                rows.append(raw.problem(line))
                continue
            offset += len(raw)
            if raw.strip():
                rows.append(parse_jsonl_line(raw, line, choices))
            if len(rows) >= PART_ROWS:
                yield SourcePart(path, rows, mark(), from_start=from_start)
                rows, from_start = [], False
        yield SourcePart(path, rows, mark(), from_start=from_start)


def write(run: PluginRun, tasks: list[FinalTask]) -> dict[str, int]:
    batch = "".join(json.dumps(task.as_dict(), ensure_ascii=False) + "\n" for task in tasks).encode("utf-8")
    output = open_append(run.path(run.require("path", str)), run.state, batch)
    output.write(output.pending)
    return finish(output)
