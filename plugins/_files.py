"""Helpers the file-based built-in plugins share (private to this package)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from router.plugin_api import PluginError, PluginRun, Setting

from ._glob import files_below, pattern_parts

PART_ROWS = 5000  # rows per part: an interrupted run resumes within this many rows
# `finished_after:` of the line sources: seconds a file must stay unmodified before its last line,
# if it has no line break, is taken as all there is (not set: such a line waits for its line break)
FINISHED_AFTER = Setting(float, min=0)


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
    ``finished_after:`` is set and the file has not been modified for that many seconds (by
    ``run.now()``, so ``LABELYARD_NOW`` moves it in tests). Otherwise
    such a line may be a row still being written, and waits for its line break."""
    if run.one_shot:
        return True
    after = run.setting("finished_after", None, kind=FINISHED_AFTER)
    return after is not None and run.now() - st.st_mtime >= after


def chunks(items: Iterable[Any], size: int = PART_ROWS) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def open_append(path: str, state: Any):
    """Open an output file for appending after the last acknowledged write.

    ``state`` is the sink's stored ``{"size": n, "dev": …, "ino": …}``: when the
    file is the one it describes, anything after ``n`` bytes was written by a run
    that died before Labelyard recorded it, so it is cut off and written again.
    Another file (``path:`` of a named sink changed, the file replaced) is never
    cut: writing goes on at its end. A state from before files were told apart
    (no ``dev``/``ino``) is taken to describe this file, as it always was.
    Returns the open binary file, positioned at its end.
    """
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    handle = open(path, "ab+")
    end = handle.seek(0, os.SEEK_END)
    if isinstance(state, dict) and isinstance(state.get("size"), int) and state["size"] < end \
            and same_file(state, os.fstat(handle.fileno())):
        handle.truncate(state["size"])
        handle.seek(0, os.SEEK_END)
    return handle


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
