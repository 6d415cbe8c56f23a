"""Helpers the file-based built-in plugins share (private to this package)."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from router.plugin_api import CursorEntries, PluginError, PluginRun, Setting, SourcePart

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


def forget_gone(run: PluginRun, state: dict[str, Any], files: list[str]) -> Iterator[SourcePart]:
    """A part without rows that drops the cursor entries (``state``, by path) of the files ``path:``
    no longer names (moved away, deleted): none when every entry's file is among ``files``. Such a
    file, should it come back, is read again from its start, known ids skipped."""
    names = set(files)
    gone = [path for path in state if path not in names]
    if gone:
        yield SourcePart(run.require("path", str), [], CursorEntries(drop=gone))


def signature(path: str | os.stat_result) -> dict[str, int]:
    """What tells whether a file changed (given by its path or its ``os.stat``): its inode, size and
    modification time."""
    st = os.stat(path) if isinstance(path, str) else path
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def finished(run: PluginRun, st: os.stat_result) -> bool:
    """Whether the file ``st`` describes is finished, so that a last line without its line break is
    read as it is: under ``labelyard ingest NAME:FILE`` (``run.one_shot``: no later run), or when
    the file has not been modified for ``finished_after:`` seconds (an hour by default; by
    ``run.now()``, so ``LABELYARD_NOW`` moves it in tests; ``0`` waits for nothing, whatever the
    clocks say). Otherwise such a line may be a row still being written, and waits for its line
    break (the ``folder`` source's file, for a later run)."""
    if run.one_shot:
        return True
    after = run.setting("finished_after", FINISHED_AFTER_DEFAULT_S, kind=FINISHED_AFTER)
    return after == 0 or run.now() - st.st_mtime >= after


def chunks(items: Iterable[Any], size: int = PART_ROWS) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Output:
    """An output file a sink appends to (:func:`open_append`), locked while it is open: ``pending``
    is what to write to it (``write(output.pending)``), and :func:`finish` gives the sink's state."""

    def __init__(self, handle, pending: bytes, sink: str, size: int | None = None):
        self.handle, self.pending, self.sink, self.size = handle, pending, sink, size

    def write(self, data: bytes) -> int:
        return self.handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def open_append(path: str, state: Any, batch: bytes = b"", header: bytes = b"", newline: bytes = b"\n") -> Output:
    """Open an output file to append ``batch`` (a sink's rows) after the last acknowledged write.

    The file is locked (``flock``) until :func:`finish` closes it, so two sinks appending to one
    file (two projects' databases) take turns. ``state`` is the sink's stored ``{"size": n,
    "dev": …, "ino": …, "sink": …}``; when the file is the one it describes, bytes after ``n``
    may be a batch a run wrote and died before Labelyard recorded it, offered again now. They
    are cut off only when they **are** that batch, or the start of it (a run killed while
    writing): the bytes this call would write there. When they start with the whole batch (the
    run died after writing it), nothing is written again. Anything else after ``n`` (another
    writer's rows: a second project's sink, a logger) is left as it is and the batch goes after
    it. A state from before files were told apart (no ``dev``/``ino``) is taken to describe this
    file, as it always was.

    Another file (new, rotated in, or what a named sink's new ``path:`` points at) is never cut
    below the size it had before the sink first wrote to it: that size and the file's identity
    are written to a **start mark** beside it (:func:`start_mark_path`, one per sink) before
    anything is appended, since the state that will describe the file is stored only once the
    batch is delivered; the next write checks the bytes after it the same way. The mark goes
    with the first write that finds the file in the state. An empty ``batch`` (the sink's first
    call, ``write(run, [])``) makes no mark.

    What goes in front of the batch: ``newline`` when the file does not end with a line break
    (a spreadsheet's export, ``printf``: the first row is not glued onto its last line), and
    ``header`` when the file is empty. The returned :class:`Output` is positioned at the end,
    ``pending`` the bytes to write.
    """
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    handle = open(path, "ab+")
    _lock(handle)
    end = handle.seek(0, os.SEEK_END)
    st = os.fstat(handle.fileno())
    sink = state.get("sink") if isinstance(state, dict) and isinstance(state.get("sink"), str) else ""
    mark = start_mark_path(path, sink)
    started = _start_mark(mark)
    started = started if started and same_file(started, st) else {}
    recorded = state.get("size") if isinstance(state, dict) and same_file(state, st) else None
    kept = recorded
    if started and (recorded is None or (isinstance(recorded, int) and recorded < started.get("end", end + 1)
                                         and started["size"] >= recorded)):
        kept = started["size"]  # a batch went in after another writer's rows (or into a file new to the state)
    sink = sink or secrets.token_hex(8)
    output = None
    if batch and isinstance(kept, int) and 0 <= kept < end:
        expected = _before(handle, kept, header, newline) + batch
        tail = os.pread(handle.fileno(), end - kept, kept)
        if expected.startswith(tail):  # this sink's unrecorded batch, or the start of it: cut, written again
            handle.truncate(kept)
            output = Output(handle, expected, sink)
        elif tail.startswith(expected):  # the whole batch is there already (its run died before recording it)
            return Output(handle, b"", sink, size=kept + len(expected))
    if output is None:
        end = handle.seek(0, os.SEEK_END)
        output = Output(handle, _before(handle, end, header, newline) + batch if batch else b"", sink)
    at = handle.seek(0, os.SEEK_END)
    if not batch:
        pass
    elif at == recorded:
        _remove(mark)  # right after the recorded rows: a killed batch is told from the state alone
    else:  # after rows the state does not know: where this batch starts is marked first
        _write_start_mark(mark, st, at, at + len(output.pending))
    return output


def _before(handle, at: int, header: bytes, newline: bytes) -> bytes:
    """What goes before rows written at byte ``at``: the header in an empty file, a line break
    after a last line that has none."""
    if at == 0:
        return header
    return b"" if os.pread(handle.fileno(), 1, at - 1) in (b"\n", b"\r") else newline


def _lock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def start_mark_path(path: str, sink: str = "") -> str:
    """The start mark of the output file ``path`` for the sink ``sink`` (the token in its state):
    beside it, a short hidden name of its own (``.ly-<hash of the name and the
    sink>.labelyard-start``, within NAME_MAX however long ``path`` is)."""
    name = os.path.basename(path).encode("utf-8", "surrogateescape") + (f"\0{sink}".encode() if sink else b"")
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


def _write_start_mark(mark: str, st: os.stat_result, size: int, end: int) -> None:
    with open(mark, "wb") as handle:
        handle.write(json.dumps({"dev": st.st_dev, "ino": st.st_ino, "size": size, "end": end}).encode("ascii"))
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


def finish(output: Output) -> dict[str, Any]:
    """Flush, sync and close an output file (:func:`open_append`, ``pending`` written); the size the
    sink's rows reach and the file's identity (device, inode) are the sink's new state, with the
    token that names its start marks."""
    output.flush()
    os.fsync(output.fileno())
    size = output.size if output.size is not None else output.seek(0, os.SEEK_END)
    st = os.fstat(output.fileno())
    output.close()
    return {"size": size, "dev": st.st_dev, "ino": st.st_ino, "sink": output.sink}
