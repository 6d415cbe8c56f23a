"""Helpers the file-based built-in plugins share (private to this package)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from router.plugin_api import PluginError, PluginRun

PART_ROWS = 5000  # rows per part: an interrupted run resumes within this many rows


def matching_files(run: PluginRun) -> list[str]:
    """The files that ``path:`` names (a glob pattern, or one file), sorted; none is an error for a plain path."""
    pattern = run.path(run.require("path", str))
    if glob.has_magic(pattern):
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not os.path.isfile(pattern):
        raise PluginError(f"{pattern}: no such file")
    return [pattern]


def signature(path: str) -> dict[str, int]:
    """What tells whether a file changed: its inode, size and modification time."""
    st = os.stat(path)
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def chunks(items: Iterable[Any], size: int = PART_ROWS) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def open_append(path: str, state: Any):
    """Open an output file for appending after the last acknowledged write.

    ``state`` is the sink's stored ``{"size": n}``: anything after ``n`` bytes was
    written by a run that died before Labelyard recorded it, so it is cut off
    and written again. Returns the open binary file, positioned at its end.
    """
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    handle = open(path, "ab+")
    end = handle.seek(0, os.SEEK_END)
    if isinstance(state, dict) and isinstance(state.get("size"), int) and state["size"] < end:
        handle.truncate(state["size"])
        handle.seek(0, os.SEEK_END)
    return handle


def finish(handle) -> dict[str, int]:
    """Flush and sync an output file; its size is the sink's new state."""
    handle.flush()
    os.fsync(handle.fileno())
    size = handle.seek(0, os.SEEK_END)
    handle.close()
    return {"size": size}
