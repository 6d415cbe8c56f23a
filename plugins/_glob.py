"""Glob patterns matched below one folder, never through a symlink to a folder (private to this package).

``glob.glob(recursive=True)`` follows symlinked folders: ``**`` under a link to
``.`` lists every file again at each depth (two such links: an exponential
walk), and a link to ``..`` leaves the folder. Here the folder a pattern starts
from is taken as given (a symlink there is followed: it is where the user
points), and below it only real folders are entered, whatever the pattern.
A symlink to a file is a file. Otherwise the pattern reads as ``glob`` reads
it: ``*``, ``?`` and ``[…]`` within one name, ``**`` for any number of folders
(none included), names starting with ``.`` matched only by a part that starts
with ``.`` (``**`` does not enter such folders), and a literal ``[`` written
``[[]`` (``glob.escape``).
"""

from __future__ import annotations

import fnmatch
import glob
import os

from router.plugin_api import PluginError


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot match below a folder (absolute, or going up with ``..``), or ``None``
    (the check of the ``folder`` source's ``pattern:`` setting)."""
    if os.path.isabs(pattern) or pattern.startswith(("/", os.sep)):
        return f"{pattern!r} is absolute; a pattern matches files below its folder"
    if ".." in pattern.replace(os.sep, "/").split("/"):
        return f"{pattern!r} goes up a folder (`..`); a pattern matches files below its folder"
    return None


def pattern_parts(pattern: str) -> list[str]:
    """The names of a relative ``pattern``, ``.`` and empty ones left out (see :func:`pattern_problem`)."""
    problem = pattern_problem(pattern)
    if problem:
        raise PluginError(f"pattern {problem}")
    return [part for part in pattern.replace(os.sep, "/").split("/") if part not in ("", ".")]


def files_below(root: str, parts: list[str]) -> list[str]:
    """The files below the folder ``root`` whose path relative to it matches the pattern ``parts``
    (from :func:`pattern_parts`), as ``/``-joined relative names, sorted, each once."""
    if not parts:
        return []
    if parts[-1] == "**":  # `dir/**`: every file below, as glob lists them (its folders are no files)
        parts = [*parts, "*"]
    found: set[str] = set()
    _match(root, "", parts, found)
    return sorted(found)


def _match(folder: str, rel: str, parts: list[str], found: set[str]) -> None:
    part, rest = parts[0], parts[1:]
    if part == "**":
        _match(folder, rel, rest, found)  # no folder at all
        for entry in _entries(folder):
            if not entry.name.startswith(".") and _real_folder(entry):
                _match(entry.path, f"{rel}{entry.name}/", parts, found)
        return
    if not glob.has_magic(part):  # one name: looked at, not searched for
        path = os.path.join(folder, part)
        if rest and os.path.isdir(path) and not os.path.islink(path):
            _match(path, f"{rel}{part}/", rest, found)
        elif not rest and os.path.isfile(path):
            found.add(rel + part)
        return
    entries = [e for e in _entries(folder)
               if fnmatch.fnmatch(e.name, part) and (part.startswith(".") or not e.name.startswith("."))]
    for entry in entries:
        if rest:
            if _real_folder(entry):
                _match(entry.path, f"{rel}{entry.name}/", rest, found)
        elif _is_file(entry):
            found.add(rel + entry.name)


def _entries(folder: str) -> list[os.DirEntry]:
    """The entries of ``folder``; none when it cannot be listed (as ``glob`` skips it)."""
    try:
        with os.scandir(folder) as listing:
            return list(listing)
    except OSError:
        return []


def _real_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # a symlink to a file is one
    except OSError:
        return False
