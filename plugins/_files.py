"""Helpers the file-based built-in plugins share (private to this package)."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from router.plugin_api import PluginError, PluginRun, Setting

from ._glob import files_below, pattern_parts

PART_ROWS = 5000  # rows per part: an interrupted run resumes within this many rows
# `finished_after:` of the line sources: seconds a file must stay unmodified before its last line,
# if it has no line break, is taken as all there is. An hour by default: a spreadsheet's export
# without a final line break loses no row, and a writer pausing mid-row that long is rare.
FINISHED_AFTER = Setting(float, min=0)
FINISHED_AFTER_DEFAULT_S = 3600.0


def matching_files(run: PluginRun, ext: str = "") -> list[str]:
    """The files that ``path:`` names, sorted: the file it names as written when there is one (a
    ``[`` in its name is then no wildcard), else the files it matches as a glob when it has one, else
    none, which is an error; and so is a directory (said as one, with a glob of its ``*.ext`` files
    to give instead). Only what the user wrote is a pattern: the folder it starts from is not."""
    given = run.require("path", str)
    path = run.path(given)
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        example = os.path.join(given, f"*.{ext}" if ext else "*")
        raise PluginError(f"{path}: is a directory, not a file (a glob such as {example} reads the files in it)")
    parts = given.replace(os.sep, "/").split("/")
    first = next((i for i, part in enumerate(parts) if glob.has_magic(part)), None)
    if first is None:
        raise PluginError(f"{path}: no such file")
    # the folders before the first wildcard, taken as written (`proj[1]/inbox/*.jsonl`)
    root = run.path("/".join(parts[:first]) or ("/" if given.startswith("/") else "."))
    return [os.path.join(root, name) for name in files_below(root, pattern_parts("/".join(parts[first:])))]


def signature(path: str | os.stat_result) -> dict[str, int]:
    """What tells whether a file changed (given by its path or its ``os.stat``): its inode, size and
    modification time."""
    st = os.stat(path) if isinstance(path, str) else path
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def finished(run: PluginRun, st: os.stat_result) -> bool:
    """Whether the file ``st`` describes is finished, so that a last line without its line break is
    read as it is: under ``labelyard ingest NAME:FILE`` (``run.one_shot``: no later run), or when
    the file has not been modified for ``finished_after:`` seconds (an hour by default; by
    ``run.now()``, so ``LABELYARD_NOW`` moves it in tests). Otherwise
    such a line may be a row still being written, and waits for its line break."""
    if run.one_shot:
        return True
    after = run.setting("finished_after", FINISHED_AFTER_DEFAULT_S, kind=FINISHED_AFTER)
    return run.now() - st.st_mtime >= after


def chunks(items: Iterable[Any], size: int = PART_ROWS) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def open_append(path: str, state: Any, appending: bool = True):
    """Open an output file for appending after the last acknowledged write.

    ``state`` is the sink's stored ``{"size": n, "dev": …, "ino": …}``: when the
    file is the one it describes, anything after ``n`` bytes was written by a run
    that died before Labelyard recorded it, so it is cut off and written again.
    A state from before files were told apart (no ``dev``/``ino``) is taken to
    describe this file, as it always was.

    Another file (new, rotated in, or what a named sink's new ``path:`` points
    at) is never cut below the size it had before the sink first wrote to it:
    that size and the file's identity are written to a **start mark** beside it
    (:func:`start_mark_path`) before anything is appended, since the state that
    will describe the file is stored only once the batch is delivered. A run
    killed before that leaves the mark, and the next write cuts the file back to
    it: a killed first batch is never in the file twice, nor half of it. The
    mark goes with the first write that finds the file in the state. Without
    ``appending`` (the sink's first call, ``write(run, [])``, which adds nothing
    that a next run could find twice) no mark is made.
    Returns the open binary file, positioned at its end.
    """
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    handle = open(path, "ab+")
    end = handle.seek(0, os.SEEK_END)
    st = os.fstat(handle.fileno())
    mark = start_mark_path(path)
    if isinstance(state, dict) and same_file(state, st):
        kept = state.get("size")
        _remove(mark)  # left by a first batch into this file, recorded since
    else:
        started = _start_mark(mark)
        kept = started["size"] if started and same_file(started, st) else None
        if kept is None and appending:
            _write_start_mark(mark, st, end)
    if isinstance(kept, int) and 0 <= kept < end:
        handle.truncate(kept)
        handle.seek(0, os.SEEK_END)
    return handle


def start_mark_path(path: str) -> str:
    """The start mark of the output file ``path``: beside it, a short hidden name of its own
    (``.ly-<hash of the name>.labelyard-start``, within NAME_MAX however long ``path`` is)."""
    name = os.path.basename(path).encode("utf-8", "surrogateescape")
    return os.path.join(os.path.dirname(path), f".ly-{hashlib.sha1(name).hexdigest()}.labelyard-start")


def _start_mark(mark: str) -> dict[str, Any]:
    """The start mark's ``{"dev", "ino", "size"}``; ``{}`` when there is none (or one cut short by a
    kill while it was written, before anything was appended to the file it describes)."""
    try:
        with open(mark, "rb") as handle:
            found = json.loads(handle.read())
    except (OSError, ValueError):
        return {}
    if isinstance(found, dict) and all(isinstance(found.get(k), int) for k in ("dev", "ino", "size")):
        return found
    return {}


def _write_start_mark(mark: str, st: os.stat_result, size: int) -> None:
    with open(mark, "wb") as handle:
        handle.write(json.dumps({"dev": st.st_dev, "ino": st.st_ino, "size": size}).encode("ascii"))
        handle.flush()
        os.fsync(handle.fileno())


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def same_file(state: dict[str, Any], st: os.stat_result) -> bool:
    """Whether ``st`` is the file a sink's ``state`` was written to (a state without identity: assumed)."""
    if "ino" not in state and "dev" not in state:
        return True
    return (state.get("dev"), state.get("ino")) == (st.st_dev, st.st_ino)


def finish(handle) -> dict[str, int]:
    """Flush and sync an output file; its size and identity (device, inode) are the sink's new state."""
    handle.flush()
    os.fsync(handle.fileno())
    size = handle.seek(0, os.SEEK_END)
    st = os.fstat(handle.fileno())
    handle.close()
    return {"size": size, "dev": st.st_dev, "ino": st.st_ino}
