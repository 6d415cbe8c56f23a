"""Writing final labels as JSONL or CSV, and telling the database's own files from an output."""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterable
from typing import Any

from .errors import LabelyardError
from .finite_json import is_non_finite, without_non_finite
from .output_text import utf8_stdout

CSV_FIELDS = ("id", "label", "final_by", "rule", "final_at", "category")
# What makes a spreadsheet read a cell as a formula (or, after a tab or CR, may): OWASP's list
# for CSV injection (CWE-1236). `export --spreadsheet-safe` puts a `'` before such a cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# The files beside a database that Labelyard or SQLite writes, by suffix: none of them is an output.
DATABASE_FILES = (("", "the database itself"), ("-wal", "the database's write-ahead log"),
                  ("-shm", "the database's shared-memory index"), ("-journal", "the database's rollback journal"),
                  (".lock", "the database's writer lock"), (".run-lock", "the database's run lock"))


def database_file(target: str, db_path: str) -> str | None:
    """What ``target`` is of the database at ``db_path`` ("the database itself", its write-ahead
    log…), or ``None`` when it is none of its files. Symlinks, ``..`` and hard links are seen through."""
    names: dict[str, str] = {}
    for base in (os.path.abspath(db_path), os.path.realpath(db_path)):  # SQLite names its files after the real one
        for suffix, what in DATABASE_FILES:
            names.setdefault(os.path.realpath(base + suffix), what)
    found = names.get(os.path.realpath(target))
    if found is not None or not os.path.exists(target):
        return found
    return next((what for path, what in names.items() if os.path.exists(path) and os.path.samefile(target, path)),
                None)


def refuse_database_file(target: str, db_path: str, doing: str) -> None:
    """Raise a :class:`LabelyardError` when ``target`` is one of the database's files."""
    what = database_file(target, db_path)
    if what is not None:
        raise LabelyardError(f"{target} is {what} ({os.path.realpath(db_path)}): {doing} somewhere else")


# What an output file's name says its contents are (lower case): a JSON file is read back by `ingest`
# as JSON Lines when it does not open with `[`, so JSON Lines fit it.
EXPORT_EXTENSIONS = ((".csv", "csv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"))


def export_format(fmt: str | None, output: str) -> str:
    """The format an export writes: ``fmt`` (``--format``) when given, else what ``output``'s
    extension names (``.csv``; ``.jsonl``, ``.ndjson``, ``.json``), else ``jsonl``. A ``--format``
    that contradicts the extension is refused: a ``.csv`` of JSON Lines opens in a spreadsheet as
    one column of JSON."""
    named = next((kind for ext, kind in EXPORT_EXTENSIONS if output.lower().endswith(ext)), None) \
        if output != "-" else None
    if fmt is None:
        return named or "jsonl"
    if named is not None and named != fmt:
        ext = os.path.splitext(output)[1]
        raise LabelyardError(f"-o {output}: a {ext} file holds {_FORMAT_NAMES[named]}, not {_FORMAT_NAMES[fmt]}; "
                             f"leave --format {fmt} out (the name chooses {named}) or give the file another name")
    return fmt


_FORMAT_NAMES = {"csv": "CSV", "jsonl": "JSON Lines"}


def spreadsheet_safe(cell: Any) -> Any:
    """``cell`` as a spreadsheet shows and never runs: text that starts with ``=``, ``+``,
    ``-``, ``@``, a tab or a CR gets a leading ``'``, so the spreadsheet shows it as text
    (with the ``'``) instead of reading a formula; anything else is returned as it is.
    Plugins have it as ``router.plugin_api.spreadsheet_safe`` (the ``csv`` sink's setting)."""
    return "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell


def write_export(rows: Iterable[dict[str, Any]], fmt: str, output: str, db_path: str | None = None, *,
                 safe: bool = False, not_finite: list[tuple[str, list[str]]] | None = None) -> int:
    """Write ``rows`` to ``output`` (``-`` for standard output); returns how many were written.

    A file is written beside its target and renamed into place, so a crash
    never leaves half an export behind; an existing file keeps its mode, and a
    symlink keeps pointing where it did (its target is replaced). A target
    that is not a regular file (a FIFO, ``/dev/null``; a link to a pipe, as
    ``/dev/stdout`` or bash's ``>(gzip > f.gz)`` are) is written in place.
    ``db_path``'s own files are refused. With ``safe`` (CSV), every cell goes through
    :func:`spreadsheet_safe`; without it cells are written as stored, so that the file
    can be ingested again. A NaN or an infinity (an early Labelyard stored them) is written as
    ``null``, and a CSV label that is one as an empty cell, so that the file stays JSON (and CSV
    that ingest reads); each row that held one is added to ``not_finite`` as ``(id, fields)``,
    for a warning.
    """
    found: list[tuple[str, list[str]]] = [] if not_finite is None else not_finite
    if safe and fmt == "csv":
        rows = (_spreadsheet_safe_row(row, found) for row in rows)
    if output == "":  # `-o "$OUT"` with OUT unset
        raise LabelyardError("-o is empty: name a file, or leave -o out for standard output")
    if output == "-":  # the bytes -o FILE would hold, whatever the locale's encoding
        return _write(rows, fmt, utf8_stdout(), found)
    if db_path is not None:
        refuse_database_file(output, db_path, "export")
    try:
        mode = os.stat(output).st_mode  # through a link: /dev/stdout, /dev/fd/63 are the pipe they name
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise LabelyardError(f"{output}: cannot write: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        return _write_in_place(rows, fmt, output, output, found)  # opened by its name: a pipe's link has no path
    target = os.path.realpath(output) if os.path.islink(output) else output
    return _write_beside(rows, fmt, output, target, None if mode is None else stat.S_IMODE(mode), found)


def _write_in_place(rows: Iterable[dict[str, Any]], fmt: str, output: str, target: str, found: list) -> int:
    """Write to a target that is not a regular file (nothing to rename over)."""
    try:
        with open(target, "w", encoding="utf-8", newline="") as handle:
            return _write(rows, fmt, handle, found)
    except OSError as exc:
        raise LabelyardError(f"{output}: cannot write: {exc.strerror}") from None


TEMP_PREFIX = ".ly-"  # an export's temp file beside its target: .ly-<12 hex digits>.tmp


def new_temp_beside(target: str, mode: int, suffix: str = ".tmp") -> tuple[int, str]:
    """Create a new file (``O_EXCL``) with a short name of its own in ``target``'s folder,
    ``.ly-<12 hex digits><suffix>``, ``mode`` less the umask; returns ``(fd, path)``. Short, so
    that a target whose name is as long as the system allows (255 bytes) can still be written
    beside and renamed over (``target.tmp-PID`` was refused as too long). Plugins have it as
    ``router.plugin_api.new_temp_beside``."""
    folder = os.path.dirname(os.path.abspath(target))
    for _ in range(100):
        tmp = os.path.join(folder, f"{TEMP_PREFIX}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name in {folder}")


def is_file_at(fd: int, path: str) -> bool:
    """Whether ``path`` names the open file ``fd`` (not removed or replaced meanwhile)."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)


def _export_temp_suffix(target: str) -> str:
    """``.<8 hex digits>.export-tmp``: an export of ``target`` writes ``.ly-<random>`` and this, so
    that a later export of it finds what killed ones left (and leaves other files' temps alone)."""
    import hashlib

    name = os.path.basename(target).encode("utf-8", "surrogateescape")
    return f".{hashlib.sha1(name).hexdigest()[:8]}.export-tmp"


def _claim_export_temp(target: str, mode: int) -> tuple[int, str]:
    """A new temp file beside ``target``, locked (``flock``) for as long as it is open, so that
    other exports of the same target know it is being written; ``(fd, path)``.

    What killed exports of ``target`` left (temps nobody holds the lock of) is removed first.
    A temp another export could lock between our create and lock is being removed as stale:
    another name is taken.
    """
    import fcntl

    suffix = _export_temp_suffix(target)
    _remove_stale_export_temps(target, suffix)
    for _ in range(100):
        fd, tmp = new_temp_beside(target, mode, suffix)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if is_file_at(fd, tmp):
                return fd, tmp
        except BlockingIOError:
            pass  # another export is removing it
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise FileExistsError(f"no free temp file name beside {target}")


def _remove_stale_export_temps(target: str, suffix: str) -> None:
    """Remove the temp files of ``target`` whose export was killed (nobody holds their lock)."""
    import fcntl
    import glob

    folder = os.path.dirname(os.path.abspath(target))
    for tmp in glob.glob(os.path.join(glob.escape(folder), f"{TEMP_PREFIX}*{glob.escape(suffix)}")):
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if stat.S_ISREG(os.fstat(fd).st_mode) and is_file_at(fd, tmp):
                os.unlink(tmp)
        except OSError:
            pass  # locked: an export in progress
        finally:
            os.close(fd)


def _write_beside(rows: Iterable[dict[str, Any]], fmt: str, output: str, target: str, mode: int | None,
                  found: list) -> int:
    """Write ``target``'s new content to a file beside it, give it ``mode``, and rename it over ``target``.

    The temp file is locked until it is renamed: an export killed meanwhile leaves it unlocked,
    and the next export of ``target`` removes it. The lock belongs to the open file, so a second
    descriptor keeps it held from the close that flushes the rows to the rename (released at the
    close, another export removed the temp as a killed one's, and the rename failed)."""
    tmp, lock = None, None
    try:
        # Private from the start when the target is: the rows are written only once the mode is set.
        fd, tmp = _claim_export_temp(target, 0o666 if mode is None else mode & 0o777)
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            lock = os.dup(fd)
            if mode is not None:
                os.fchmod(fd, mode)  # exactly the old file's mode, whatever the umask: it was chosen on purpose
            count = _write(rows, fmt, handle, found)
        os.replace(tmp, target)
    except OSError as exc:
        raise LabelyardError(f"{output}: cannot write: {exc.strerror}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if lock is not None:
            os.close(lock)
    return count


def _spreadsheet_safe_row(row: dict[str, Any], found: list) -> dict[str, Any]:
    """The CSV cells of an export row as :func:`spreadsheet_safe` makes them (a label that is
    not text is written as JSON, so a negative number gets its `'` too)."""
    label = _label_cell(row, found)
    return {name: spreadsheet_safe(label if name == "label" else row[name]) for name in CSV_FIELDS}


_encode_finite = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode  # json.dumps(ensure_ascii=False)'s


def _finite_json(value: Any, task: str, found: list, path: str = "") -> str:
    """``value`` as JSON; a NaN or an infinity in it as ``null``, noted in ``found`` with ``task``'s id
    (:mod:`router.finite_json`). Found by the encoder: a value without any is encoded once."""
    try:
        return _encode_finite(value)
    except ValueError:
        clean, fields = without_non_finite(value, path)
        if not fields:
            raise
        found.append((task, fields))
        return _encode_finite(clean)


def _label_cell(row: dict[str, Any], found: list) -> str:
    """A CSV label cell: text as it is, anything else as JSON; a NaN or an infinity is an empty cell."""
    label = row["label"]
    if isinstance(label, str):
        return label
    if is_non_finite(label):
        found.append((row["id"], ["label"]))
        return ""
    return _finite_json(label, row["id"], found, "label")


def _write(rows: Iterable[dict[str, Any]], fmt: str, handle, found: list) -> int:
    count = 0
    if fmt == "jsonl":
        for row in rows:
            handle.write(_finite_json(row, row["id"], found) + "\n")
            count += 1
        return count
    writer = csv.writer(handle)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        writer.writerow([row["id"], _label_cell(row, found), row["final_by"], row["rule"], row["final_at"],
                         row["category"] or ""])
        count += 1
    return count
