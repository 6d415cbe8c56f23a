"""Helpers the file-based built-in plugins share (private to this package)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from router.plugin_api import PluginError, PluginRun

from ._glob import files_below, pattern_parts

PART_ROWS = 5000  # rows per part: an interrupted run resumes within this many rows


def matching_files(run: PluginRun, ext: str = "") -> list[str]:
    """The files that ``path:`` names (a glob pattern, or one file), sorted; none is an error for a
    plain path, and so is a directory (said as one, with a glob of its ``*.ext`` files to give instead)."""
    given = run.require("path", str)
    pattern = run.path(given)
    if glob.has_magic(pattern):
        return glob_files(pattern)
    if os.path.isdir(pattern):
        example = os.path.join(given, f"*.{ext}" if ext else "*")
        raise PluginError(f"{pattern}: is a directory, not a file (a glob such as {example} reads the files in it)")
    if not os.path.isfile(pattern):
        raise PluginError(f"{pattern}: no such file")
    return [pattern]


def glob_files(pattern: str) -> list[str]:
    """The files an absolute glob ``pattern`` matches, sorted: its folders before the first name
    with a wildcard are taken as written, and below them no symlink to a folder is entered."""
    parts = pattern.replace(os.sep, "/").split("/")
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = "/".join(parts[:first]) or "/"
    return [os.path.join(root, name) for name in files_below(root, pattern_parts("/".join(parts[first:])))]


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
