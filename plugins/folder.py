"""A folder of files, one task per file (images, text, audio…): ``labelyard ingest folder:inbox/``.

Settings: ``path`` (the folder), ``pattern`` (a glob inside it, default
``*``; ``**/*`` to descend; symlinks to folders are never entered, so each
file is read once and nothing outside the folder is: see ``_glob``),
``id_prefix`` (put before each task id), ``finished_after`` (seconds, an hour
by default, as for the ``csv`` and ``jsonl`` sources).
A task's id is the file's path relative to the folder; its ``data`` holds
``path`` (absolute), ``file`` (the relative name) and ``size``, and, for text
files (``.txt``, ``.md``, ``.text``, or ``text_extensions``; a name's case is
ignored, ``.TXT`` is ``.txt``) up to
``max_text_bytes`` (default 1 MB), ``text``: the file's content.

A file whose name is not UTF-8 is quarantined (one reject, its name with
the bad bytes written out as ``\\xe9``); the other files go in.

Files already ingested are recognised by id (``run.known``) and not read
again, so the folder is safe to scan every run; there is no other cursor.
So a file is read once, and a file still being written (copied in, saved
by a scanner) would go in cut short, for good: a run reads a file only once
it has not been modified for ``finished_after:`` seconds (by ``run.now()``,
so ``LABELYARD_NOW`` moves it); a later run takes it. ``labelyard ingest
folder:PATH`` (``run.one_shot``) reads every file at once. A file moved in
with ``mv`` keeps its modification time, so it is read at the next run
when it was finished long enough before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from router import hookimpl
from router.plugin_api import (PluginError, PluginRun, RowError, RowProblem, Setting, SourcePart, TaskInput,
                               decode_document, escaped, is_utf8)

from ._files import FINISHED_AFTER, chunks, finished
from ._glob import files_below, pattern_parts, pattern_problem

TEXT_EXTENSIONS = (".txt", ".md", ".text")
PATTERN = Setting(str, check=pattern_problem)


@hookimpl
def register_sources(register):
    register("folder", read, required=["path"], settings={
        "path": str, "pattern": PATTERN, "id_prefix": str, "text_extensions": list,
        "max_text_bytes": Setting(int, min=0), "finished_after": FINISHED_AFTER})


def read(run: PluginRun) -> Iterator[SourcePart]:
    folder = run.path(run.require("path", str))
    if not os.path.isdir(folder):
        raise PluginError(f"{folder}: no such folder")
    pattern = run.setting("pattern", kind=PATTERN) or "*"
    prefix = run.setting("id_prefix", "")
    text_ext = tuple(ext.lower() for ext in run.setting("text_extensions", kind=list) or TEXT_EXTENSIONS)
    limit = run.setting("max_text_bytes", 1 << 20, kind=int)
    names = [name for name in files_below(folder, pattern_parts(pattern))
             if not name.rsplit("/", 1)[-1].startswith(".")]
    count = 0
    # The folder is scanned whole every time: the first part replaces the rejects of the scan before
    # (a file's line is its place in the sorted list, which moves as files come and go).
    for batch in chunks(names, 1000):
        known = run.known(prefix + n for n in batch if is_utf8(n))
        rows: list[TaskInput | RowProblem] = []
        for name in batch:
            count += 1
            if not is_utf8(name):  # an id, a path in `data`: text that the database and JSON can hold
                rows.append(RowProblem(count, f"{escaped(name)}: file name is not UTF-8", None))
            elif prefix + name not in known and _finished(run, os.path.join(folder, name)):
                rows.append(_task(folder, name, prefix, count, text_ext, limit))
        yield SourcePart(folder, rows, {"files": count}, from_start=count <= len(batch))
    if not names:
        yield SourcePart(folder, [], {"files": 0}, from_start=True)


def _finished(run: PluginRun, path: str) -> bool:
    """Whether the file is taken this run: unmodified for ``finished_after:`` seconds (a file still
    being written waits for a later run), or ``labelyard ingest folder:…``; one that cannot be
    read is taken too, for its reject to say why."""
    try:
        return finished(run, os.stat(path))
    except OSError:
        return True


def _task(folder: str, name: str, prefix: str, line: int, text_ext: tuple, limit: int) -> TaskInput | RowProblem:
    path = os.path.join(folder, name)
    try:
        size = os.path.getsize(path)
        data: dict = {"path": os.path.abspath(path), "file": name, "size": size}
        if name.lower().endswith(text_ext):
            if size > limit:
                return RowProblem(line, f"{name}: text file larger than {limit} bytes", None)
            with open(path, "rb") as handle:
                data["text"] = decode_document(handle.read())
    except OSError as exc:
        return RowProblem(line, f"{name}: {exc.strerror}", None)
    except RowError as exc:
        return RowProblem(line, f"{name}: {exc}", None)
    return TaskInput(line, prefix + name, data)
