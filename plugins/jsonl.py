"""JSON Lines: a source (``path:`` a file or a glob) and a sink (``path:`` one file).

Source rows are ``{"id", "data", "category", "tags", "prediction"}`` objects,
as ``labelyard ingest`` reads them. The cursor keeps, per file, the byte
offset and line reached, so files that grow (an append-only inbox) are read
from where the last run stopped; a file that was replaced or shrank is read
again from the start (known ids are skipped). A last line without its newline
that is not valid JSON yet is left for the next run (it may still be written).

The sink appends one JSON object per final task (the ``labelyard export``
row plus ``votes`` and ``agreement``); after a crash it cuts the file back to
the last recorded size before appending, so each task appears once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from router import hookimpl
from router.plugin_api import FinalTask, PluginRun, RowProblem, SourcePart, TaskInput, parse_jsonl_line

from ._files import PART_ROWS, finish, matching_files, open_append


@hookimpl
def register_sources(register):
    register("jsonl", read)


@hookimpl
def register_sinks(register):
    register("jsonl", write)


def read(run: PluginRun) -> Iterator[SourcePart]:
    state: dict[str, Any] = dict(run.state or {})
    for path in matching_files(run):
        st = os.stat(path)
        done = state.get(path) or {}
        offset, line = 0, 0
        if done.get("ino") == st.st_ino and 0 <= done.get("offset", -1) <= st.st_size:
            offset, line = done["offset"], done["line"]
        if offset == st.st_size:
            continue
        yield from _parts(path, offset, line, run.choices, state, st.st_ino)


def _parts(path: str, offset: int, line: int, choices: tuple[str, ...], state: dict, ino: int) -> Iterator[SourcePart]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        rows: list[TaskInput | RowProblem] = []
        for raw in handle:
            if not raw.endswith(b"\n"):
                try:
                    json.loads(raw.decode("utf-8", errors="replace"))
                except json.JSONDecodeError:
                    break  # still being written: leave it for the next run
            line += 1
            offset += len(raw)
            if raw.strip():
                rows.append(parse_jsonl_line(raw, line, choices))
            if len(rows) >= PART_ROWS:
                state[path] = {"ino": ino, "offset": offset, "line": line}
                yield SourcePart(path, rows, dict(state))
                rows = []
        state[path] = {"ino": ino, "offset": offset, "line": line}
        yield SourcePart(path, rows, dict(state))


def write(run: PluginRun, tasks: list[FinalTask]) -> dict[str, int]:
    handle = open_append(run.path(str(run.require("path"))), run.state)
    for task in tasks:
        handle.write((json.dumps(task.as_dict(), ensure_ascii=False) + "\n").encode("utf-8"))
    return finish(handle)
