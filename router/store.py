"""The SQLite store: the only module that writes SQL.

One :class:`Store` wraps one connection (one per thread or process). Every
state change runs inside :meth:`Store.transaction`, which takes the write lock
up front (``BEGIN IMMEDIATE``) and retries while the database is busy, so a
``SQLITE_BUSY`` never reaches a user. Callers write their audit event inside
the same transaction as the change it records.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import stat
import sys
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import LabelyardError, NotInitialised
from .os_text import shell_word, utf8_problem
from .writer_lock import WriterLock

BUSY_TIMEOUT_MS = 5000
BUSY_GIVE_UP_S = 120.0
BEGIN_FIRST_SLEEP_S = 0.0002
# Labelyard writers checkpoint after their commit, outside the writer lock, once the WAL
# holds CHECKPOINT_FRAMES frames not yet copied back (see _WalBacklog); SQLite's own
# autocheckpoint, which runs while the committing writer still holds the lock, is the
# backstop for other programs writing the file. 64000 frames (~130 MB at 2 KiB pages)
# between checkpoints: the hot pages are copied back once per checkpoint, and each
# checkpoint stalls the machine for a while, which was the claim tail with 8 writers
# (p99 5.4 ms at 16000 frames, 3.3-4.1 at 64000; docs/design.md).
CHECKPOINT_FRAMES = 64000
WAL_AUTOCHECKPOINT_PAGES = 128000
# New databases use 2 KiB pages: a claim or submit rewrites ~10-15 pages, and every
# rewritten page is appended whole to the WAL; 2 KiB pages made claim+submit ~15% faster
# than the 4 KiB default here (bench/README.md), with the same page count per operation.
PAGE_SIZE = 2048
BEGIN_MAX_SLEEP_S = 0.004
SCHEMA_VERSION = 18  # keep equal to migrations.SCHEMA_VERSION (a test checks)
# The cursor of a workflow entry is `PREFIX:IDENTITY` (router.runner): one prefix per section.
ENTRY_CURSORS = {"sources": "source", "sinks": "sink", "notify": "notify"}

# Every column a new task is inserted with, in the order of the tuples given to insert_task_tuples.
TASK_INSERT_COLUMNS = (
    "id", "external_id", "source", "category", "tags", "data", "status", "stage", "queue", "needed", "free_slots",
    "priority", "attempts", "round", "workflow_version", "pred_label", "pred_confidence", "pred_model",
    "pred_scores", "final_label", "final_by", "final_rule", "final_at", "reason", "is_gold", "created_at",
    "updated_at", "stage_at",
)

TASK_COLUMNS = ", ".join(TASK_INSERT_COLUMNS)  # for SELECTs of whole task rows


def default_db_path() -> str:
    """``LABELYARD_DB`` or ``./labelyard.db`` (an empty ``LABELYARD_DB`` is unset, as click reads it)."""
    return os.environ.get("LABELYARD_DB") or "labelyard.db"


def database_path(path: str | None) -> str:
    """The database file ``path`` names; ``None`` is :func:`default_db_path`. An empty path is a
    mistake (a variable that expanded to nothing), never another project's database."""
    if path is None:
        return default_db_path()
    if not path:
        raise LabelyardError("the database path is empty")
    return path


def access_problem(exc: BaseException, path: str, *, opening: bool = False) -> str | None:
    """What to tell a user whose database SQLite may not write or open (a read-only file, a
    read-only folder, files of another user), else ``None``. SQLite writes ``DB-wal`` and
    ``DB-shm`` beside a WAL database even to read it, so a read-only folder stops every command."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    text = str(exc)
    if "readonly database" not in text and "unable to open database file" not in text:
        return None
    if opening:
        return (f"{path}: cannot open the database ({text}): SQLite writes its -wal and -shm files beside it, "
                "even to read it; check the permissions of the file and of its folder")
    if "readonly database" in text:
        return (f"{path}: cannot write to the database (the file, its -wal or -shm file or its folder is "
                "read-only; check their permissions)")
    return (f"{path}: cannot open the database's files ({text}); check the permissions of the file and of "
            "its folder, where SQLite makes its -wal and -shm files")


# Below this much free space, a "disk I/O error" is the disk being full: SQLite grows its -shm file
# 32 KiB at a time, even to read, and reports a failed growth as an I/O error.
NEARLY_FULL_BYTES = 1 << 20


def _free_bytes(folder: str) -> int | None:
    try:
        found = os.statvfs(folder)
    except (OSError, AttributeError):  # gone, or no statvfs on this system
        return None
    return found.f_bavail * found.f_frsize


def _amount(size: int) -> str:
    return f"{size // 1024} KiB" if size < 10 << 20 else f"{size >> 20} MiB"


def disk_full_problem(exc: BaseException, path: str, *, opening: bool = False) -> str | None:
    """What to tell a user whose database SQLite found no room to write in (``SQLITE_FULL``, or a
    "disk I/O error" on a disk with almost no space left), naming the database and the disk, else
    ``None``. SQLite rolls back the write that failed: the database is as its last commit left it;
    ``opening``: nothing was written yet."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    text = str(exc)
    full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "database or disk is full" in text
    if not full and "disk I/O error" not in text:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    free = _free_bytes(folder)
    done = "nothing was written" if opening else "the write that failed was rolled back"
    if free is not None and free < NEARLY_FULL_BYTES:
        return (f"{path}: the disk holding {folder} is full ({_amount(free)} free; SQLite: {text}); free some "
                f"space there and run the command again ({done})")
    if not full:
        return None  # an I/O error on a disk with room: not ours to explain
    where = "" if free is None else f" ({_amount(free)} free)"
    return (f"{path}: SQLite found no room to write ({text}): the disk holding {folder}{where}, or the one "
            "for temporary files ($TMPDIR), is full; free some space and run the command again "
            f"({done})")


_NOT_FILES = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
              (stat.S_ISFIFO, "a pipe (a fifo)"), (stat.S_ISSOCK, "a socket"))


def not_a_file_problem(path: str) -> str | None:
    """Why ``path``, which is there, can hold no database (a folder, ``/dev/null`` or another device, a
    fifo, a socket; a link to one is judged by what it leads to), else ``None``. SQLite opens such a
    path and fails at its first read or write ("disk I/O error"), and ``init`` would have made its
    ``PATH.lock``, ``-wal`` and ``-journal`` beside it (in ``/dev``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there, or not to be looked at: SQLite says why
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"{path}: is a folder, not a database file"
    kind = next((name for test, name in _NOT_FILES if test(mode)), "not a regular file")
    return f"{path}: is {kind}, not a file: it cannot hold a database (give --db or LABELYARD_DB a file's path)"


def damaged_message(path: str, what: str, *, done: str = "") -> str:
    """What to tell a user whose database file is damaged: ``what`` SQLite found, then ``done`` (what
    the command did not do), then what to do."""
    return (f"{path}: the database file is damaged ({what}); {done}stop writing to it and restore the latest "
            f"copy `labelyard backup` made (keep the damaged file: `sqlite3 {shell_word(path)} .recover` "
            "may salvage it)")


def check_problem(conn: sqlite3.Connection) -> str | None:
    """``None`` when ``PRAGMA quick_check`` finds the file behind ``conn`` sound, else its first
    finding in one line, with how many more it listed (``quick_check: On tree page 105 cell 16:
    Offset 65287 out of range 76..2044, and 16 more``). Reads every page once."""
    rows = [row[0] for row in conn.execute("PRAGMA quick_check(100)")]
    if rows == ["ok"]:
        return None
    found = [line for row in rows for line in str(row).splitlines() if line and not line.startswith("*** ")]
    more = f", and {len(found) - 1}{'+' if len(rows) >= 100 else ''} more" if len(found) > 1 else ""
    return f"quick_check: {found[0] if found else rows[0]}{more}"


def is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def locked_message(path: str, exc: BaseException, *, waited: float | None = None) -> str:
    """What to tell a user whose database another process keeps locked (``waited``: for how many
    seconds the command waited for it)."""
    wait = "" if waited is None else f" for {waited / 60:g} minutes" if waited >= 60 else f" for {waited:g} s"
    return (f"{path}: the database stayed locked by another process{wait} (SQLite: {exc}); another program "
            "(an `sqlite3` shell, a sync or backup tool) may be holding it: run the command again once it "
            "lets go")


# One encoder for every call: json.dumps with options builds a new one each time (~1 µs).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """Compact JSON for storage."""
    return _encode(value)


_encode_finite = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def dumps_finite(value: Any) -> str:
    """:func:`dumps` for input data: NaN or an infinity (which JSON cannot carry) raise ``ValueError``."""
    return _encode_finite(value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character(text: str) -> str | None:
    """The first control character (C0, DEL, C1) in ``text``, or ``None``: names shown in
    listings carry none, since an ESC would reach a lead's terminal as an escape sequence."""
    found = _CONTROL.search(text)
    return None if found is None else found.group()


def text_problem(value: Any) -> str | None:
    """Why ``value`` (text, or JSON data holding text) cannot be stored as UTF-8; ``None`` when it can.

    JSON's ``"\\ud83d"`` escape gives a lone UTF-16 surrogate, and an argument
    with bytes that are not UTF-8 reaches Python as surrogates too: neither is
    text, and SQLite would refuse the whole transaction that tried to store it.
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else dumps(value)
    return None if text.isascii() else utf8_problem(text)


def _latest_voted_tasks(in_queue: bool) -> str:
    """SQL: the non-gold tasks of the latest ``:latest`` annotate/correct submissions (in ``:queue``).

    In a queue, walked from the end of its range of the ``annotations_queue_votes`` index (the slot's
    queue kept on each annotation), so the cost follows the window, not the project: a sparse queue's
    few votes were found by reading every annotation of the others.
    """
    return ("SELECT v.task_id FROM annotations AS v "
            + ("INDEXED BY annotations_queue_votes " if in_queue else "")
            + "JOIN tasks AS vt ON vt.id = v.task_id WHERE v.stage IN ('annotate', 'correct') AND vt.is_gold = 0"
            + (" AND v.queue IS :queue" if in_queue else "") + " ORDER BY v.id DESC LIMIT :latest")


def _task_number(text: str) -> int | None:
    """``text`` as a task id when it is one (ASCII digits, small enough for SQLite)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _like(text: str) -> str:
    """A ``LIKE ? ESCAPE '\\'`` pattern that finds ``text`` anywhere, its ``%``, ``_`` and ``\\`` as themselves."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def loads(text: str | None) -> Any:
    """JSON from storage; ``None`` stays ``None``."""
    return None if text is None else json.loads(text)


class ClaimWalkTooLong(Exception):
    """A claim's walk past tasks the worker may not take outgrew its budget under the write lock
    (:meth:`Store.claim_slot`); the transaction was rolled back."""


class _WalBacklog:
    """How many WAL frames are not yet copied into the database file.

    Read from the WAL index (the ``-shm`` file) by its documented layout
    (https://www.sqlite.org/walformat.html): ``mxFrame`` at byte 16 of the
    header and ``nBackfill`` at byte 96, in native byte order. A cheap,
    lock-free peek, used only to decide when to checkpoint; ``None`` when it
    cannot be read.

    The descriptor is opened once per process and file, and never closed:
    closing *any* descriptor of a file drops every POSIX lock the process holds
    on it, among them the locks SQLite's own connections hold on ``-shm`` (its
    "someone is using this index" lock and the WAL read marks). A second
    process then rebuilt the index under a live connection, which died of
    SIGBUS (https://www.sqlite.org/howtocorrupt.html, section 2.2).
    """

    _fds: dict[str, tuple[int, int]] = {}  # -shm path: (descriptor, inode), for the life of the process

    def __init__(self, db_path: str):
        self._path = os.path.realpath(db_path) + "-shm"  # SQLite names it after the real file
        self._fd: int | None = None  # checked once per store: the -shm of an open database stays put

    def _open(self) -> int:
        known = self._fds.get(self._path)
        if known is not None and known[1] == os.stat(self._path).st_ino:
            return known[0]
        # A new -shm (the old one was removed when its last connection closed, so no connection
        # of this process holds locks on the old one): the old descriptor is kept open all the same.
        fd = os.open(self._path, os.O_RDONLY)
        self._fds[self._path] = (fd, os.fstat(fd).st_ino)
        return fd

    def frames(self) -> int | None:
        try:
            if self._fd is None:
                self._fd = self._open()
            head = os.pread(self._fd, 100, 0)
        except OSError:
            return None
        if len(head) < 100:
            return None
        max_frame = int.from_bytes(head[16:20], sys.byteorder)
        backfilled = int.from_bytes(head[96:100], sys.byteorder)
        return max_frame - backfilled

    def close(self) -> None:
        """Nothing to do: the descriptor stays open (closing it would drop SQLite's locks)."""


def _newer_schema(path: str, version: int) -> str:
    """What to tell a user whose database a newer Labelyard made or migrated."""
    return f"{path}: database schema {version} is newer than this Labelyard ({SCHEMA_VERSION}); upgrade labelyard"


def _refuse_newer_schema(conn: sqlite3.Connection, path: str) -> None:
    """Raise when a newer Labelyard migrated the file behind ``conn`` (no ``schema_version``
    table yet, or an older version, is for ``init`` to migrate)."""
    try:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return
        raise
    if row[0] is not None and row[0] > SCHEMA_VERSION:
        raise LabelyardError(_newer_schema(path, row[0]))


NOT_TAKEN_OVER = "nothing changed: choose another --db path for the project"  # init's refusal of such a file


def _other_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables and views of a SQLite file that another program made (no ``schema_version``),
    sorted; empty for a Labelyard database and for a file that holds none."""
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY name")]
    return [] if "schema_version" in names else names


def _refuse_other_tables(conn: sqlite3.Connection, path: str, then: str) -> None:
    """Raise, naming a few of them, when the file behind ``conn`` holds another program's tables."""
    names = _other_tables(conn)
    if names:
        shown = [_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name) for name in names[:3]]
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        raise LabelyardError(f"{path}: holds other tables ({', '.join(shown)}{more}), not a Labelyard database; {then}")


REJECT_RAW_CHARS = 8192  # of a reject's raw row, kept and listed; the rest is said by its size


def kept_raw(raw: str | None) -> str | None:
    """What a reject keeps of its raw row: all of it up to :data:`REJECT_RAW_CHARS` characters,
    else its start and how long it was (``… [cut: 209715200 characters in all]``)."""
    if not isinstance(raw, str) or len(raw) <= REJECT_RAW_CHARS:
        return raw
    return f"{raw[:REJECT_RAW_CHARS]}… [cut: {len(raw)} characters in all]"


# kept_raw in SQL, for rejects an older version stored whole (length() counts characters, as len());
# one kept_raw cut already (its note makes it longer than REJECT_RAW_CHARS) is listed as it is
_KEPT_RAW_SQL = (f"CASE WHEN length(raw) > {REJECT_RAW_CHARS + 64} THEN substr(raw, 1, {REJECT_RAW_CHARS}) "
                 "|| '… [cut: ' || length(raw) || ' characters in all]' ELSE raw END")


def _checkpoint_on(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.OperationalError:
        pass  # busy: another process is checkpointing


def sqlite_connect(path: str, **options: Any) -> sqlite3.Connection:
    """``sqlite3.connect`` to the file ``path`` names, whatever its name: by its absolute path, so
    that SQLite (built to read file names as URIs) never takes ``file:lab.db`` for the URI of
    ``lab.db`` nor ``:memory:`` for a database in memory. Every connection to a Labelyard file
    goes through here, so the database, its lock and the export's guards name one file."""
    return sqlite3.connect(os.path.abspath(path), **options)


def _checkpoint(path: str) -> None:
    """A ``PASSIVE`` checkpoint on a connection of its own (for a checkpoint thread)."""
    try:
        conn = sqlite_connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error:
        return
    try:
        _checkpoint_on(conn)
    finally:
        conn.close()



def _empty_file(path: str) -> bool:
    """Whether ``path`` is a regular file of no bytes (new, or made by ``touch``): a database to set
    up from the start. ``/dev/null`` is no regular file."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def empty_file_mode(path: str) -> int | None:
    """The permission bits of ``path`` when it is an existing empty regular file ``init`` would take
    (its mode is the user's and is kept), else ``None``."""
    return stat.S_IMODE(os.stat(path).st_mode) if _empty_file(path) else None


class _MadeByInit:
    """The files one ``init`` made beside a database that is not yet a project, so a failed ``init``
    removes them again: the database file itself when it made it, SQLite's ``-wal``, ``-shm`` and
    ``-journal`` with it, and the writer lock's ``DB.lock``. Nothing is removed once the file holds
    a Labelyard schema (a project, which another ``init`` may have made meanwhile), nor a file that
    is no longer the one this ``init`` made."""

    SIDECARS = ("-wal", "-shm", "-journal")

    def __init__(self, path: str):
        self.path = path
        self.database: os.stat_result | None = None  # the file this init made, as made
        self.lock_file: str | None = None
        self.emptied: os.stat_result | None = None  # the user's empty file this init set up
        self.sidecars: list[str] = []

    def create_database(self) -> bool:
        """Make the database file, 0660 (owner and group only; a team shares a group); ``False`` when
        it is there already (another init may have made it a moment ago)."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o660)
        except FileExistsError:
            return False
        try:
            self.database = os.fstat(fd)
            self.sidecars = [self.path + s for s in self.SIDECARS if not os.path.lexists(self.path + s)]
            os.fchmod(fd, 0o660)
        except BaseException:
            os.close(fd)
            self.undo(None)
            raise
        os.close(fd)
        return True

    def take_empty_file(self) -> None:
        """Note an empty file the user made (``touch``), which ``init`` sets up as a new one: a failed
        ``init`` leaves it empty again, without the ``-wal`` and ``-shm`` it made beside it."""
        if _empty_file(self.path):
            self.emptied = os.stat(self.path)
            self.sidecars = [self.path + s for s in self.SIDECARS if not os.path.lexists(self.path + s)]

    def undo(self, lock: WriterLock | None) -> bool:
        """Remove what this init made, under the writer lock (an init queued behind this one finds the
        file gone and says so), when the database holds no Labelyard schema; whether the database
        file was removed. Errors are left unsaid: the failure that brought us here is the one to report."""
        if self.database is None and self.lock_file is None and self.emptied is None:
            return False
        try:
            if lock is not None:
                with lock:
                    return self._remove()
            return self._remove()
        except (OSError, sqlite3.Error):
            return False

    def _remove(self) -> bool:
        tables = _table_names(self.path)
        if "schema_version" in tables:
            return False
        removed = False
        if self.database is not None and os.path.exists(self.path):
            now = os.stat(self.path)
            if (now.st_dev, now.st_ino) != (self.database.st_dev, self.database.st_ino):
                return False  # not the file this init made: another's, left alone with its lock
            if tables:  # another program wrote its tables into it meanwhile (init refused it): theirs
                return False
            for name in (self.path, *self.sidecars):
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass
            removed = True
        elif self.emptied is not None and os.path.exists(self.path) and not tables:
            now = os.stat(self.path)
            if (now.st_dev, now.st_ino) == (self.emptied.st_dev, self.emptied.st_ino):
                for name in self.sidecars:
                    try:
                        os.unlink(name)
                    except FileNotFoundError:
                        pass
                os.truncate(self.path, 0)  # the user's file, empty as it was
        if self.lock_file is not None:
            os.unlink(self.lock_file)
        return removed


def _table_names(path: str) -> set[str]:
    """The tables, views, indexes and triggers of the SQLite file at ``path`` (none in an empty
    file, or where there is no file); an error when it cannot be read, so nothing is removed."""
    if not os.path.exists(path):
        return set()
    try:
        wal_empty = os.path.getsize(path + "-wal") == 0
    except FileNotFoundError:
        wal_empty = True
    # With nothing in the WAL the file alone says it, read as it is: a full disk, which may have been
    # the failure, keeps SQLite from making the -shm a WAL read needs.
    if wal_empty:
        target = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, uri=True)
    else:
        conn = sqlite_connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def who_wrote(path: str) -> tuple[int, set[str], set[str]] | None:
    """The schema version of the Labelyard database at ``path``, its workers and every actor of its
    events, read without changing the file (and without migrating it, as :meth:`Store.open` would
    ask); ``None`` when it is no Labelyard database that can be read (not SQLite, another
    program's, damaged). The demo asks this of a folder without its marker (``router.demo``)."""
    try:
        wal_empty = os.path.getsize(path + "-wal") == 0
    except OSError:
        wal_empty = True
    try:
        if wal_empty:  # read as it is, making no -shm beside it
            target = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
            conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, uri=True)
        else:
            conn = sqlite_connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        workers = {row[0] for row in conn.execute("SELECT id FROM workers")}
        actors = {row[0] for row in conn.execute("SELECT DISTINCT actor FROM events")}
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return (version if isinstance(version, int) else 0), workers, actors


# Every open store of the process, so that one about to fork can close their connections first
# (connections_closed).
_OPEN_STORES: "weakref.WeakSet[Store]" = weakref.WeakSet()


@contextmanager
def connections_closed(path: str) -> Iterator[bool]:
    """Every open :class:`Store` of this process on the database file at ``path`` without its
    connection for the ``with`` block (each is connected again after it, in this process):
    for a fork, whose child must inherit none of SQLite's state for the file
    (:mod:`router.ingest_pipeline`). Yields ``False``, closing nothing, when one of them is in
    a transaction (nothing may cut it short)."""
    try:
        here = os.stat(path)
    except OSError:
        yield False
        return
    stores = []
    for store in list(_OPEN_STORES):
        try:
            there = os.stat(store.path)
        except OSError:
            continue
        if (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino):
            stores.append(store)
    if any(store._depth or store.conn.in_transaction for store in stores):
        yield False
        return
    closed = []
    try:
        for store in stores:
            store._disconnect()
            closed.append(store)
        yield True
    finally:
        for store in closed:
            store.reconnect()


class Store:
    """A Labelyard database file."""

    def __init__(self, path: str, conn: sqlite3.Connection):
        # Absolute, made so once: the file is opened again by its path (a forked ingest's child, the
        # bulk writer's connection, the checkpoint thread), and a plugin that moves the working
        # folder (`os.chdir`) must not point those at another file, or at none.
        self.path = os.path.abspath(path)
        self.shown_path = path  # as the user gave it (`--db lab.db`), for messages
        self.conn = conn
        self._depth = 0
        self._writer_lock = WriterLock(path)
        self._wal_backlog = _WalBacklog(path)
        # A bulk writer (ingest) checkpoints in a thread on its own connection: SQLite
        # releases the GIL while it copies, so the writing goes on meanwhile.
        self.checkpoint_in_thread = False
        self._checkpointer: Any = None
        self._query_only = False
        _OPEN_STORES.add(self)

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def connect(cls, path: str) -> sqlite3.Connection:
        conn = sqlite_connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        # The backstop only: Labelyard's writers checkpoint outside the lock first (Store._after_commit).
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @classmethod
    def open(cls, path: str | None = None) -> "Store":
        """Open an initialised database; raise :class:`NotInitialised` otherwise."""
        return cls._open(path, copying="")

    @classmethod
    def open_to_copy(cls, path: str | None = None, *, then: str = "nothing to back up") -> "Store":
        """Open a database for ``backup`` (or as the copy ``restore`` reads): one an older Labelyard
        made is opened too, as it is (nothing is migrated, and the connection writes nothing:
        ``query_only``), so a copy can be taken before ``init`` migrates it. A newer schema, and a
        file that is not a Labelyard database (``then`` says what that means), are refused."""
        store = cls._open(path, copying=then)
        store.read_only()
        return store

    @classmethod
    def _open(cls, path: str | None, *, copying: str) -> "Store":
        """``copying``: what a copy of a file that is no Labelyard database means ("nothing to back up");
        empty to open a database to work on (its schema must be this version's)."""
        path = database_path(path)
        if not os.path.exists(path):
            raise NotInitialised(f"{path}: no Labelyard database here; run `labelyard init` first (or pass --db)")
        problem = not_a_file_problem(path)
        if problem is not None:  # SQLite reads /dev/null as an empty database: `init` would be sent there
            raise LabelyardError(problem)
        try:
            conn, row = cls._first_read(path)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                raise LabelyardError(locked_message(path, exc, waited=BUSY_GIVE_UP_S)) from None
            if "no such table" in str(exc):  # SQLite, but not (yet) Labelyard's
                cls._refuse_other_program(path, copying or
                                          "choose another --db path (`labelyard init` makes a new project there)")
                then = copying or "run `labelyard init`"
                raise NotInitialised(f"{path}: not a Labelyard database ({exc}); {then}") from None
            problem = None if os.path.isdir(path) else (access_problem(exc, path, opening=True)
                                                        or disk_full_problem(exc, path, opening=True))
            raise LabelyardError(problem or f"{path}: cannot open it as a database ({exc}); check --db or "
                                            "LABELYARD_DB") from None
        if (row is None or row[0] < SCHEMA_VERSION) and not copying:
            conn.close()
            raise NotInitialised(f"{path}: database schema is older than this Labelyard; run `labelyard init` to "
                                 "migrate (`labelyard backup DEST` first keeps a copy as it is now)")
        if row is not None and row[0] > SCHEMA_VERSION:
            conn.close()
            raise LabelyardError(_newer_schema(path, row[0]))
        return cls(path, conn)

    @classmethod
    def _first_read(cls, path: str) -> tuple[sqlite3.Connection, sqlite3.Row | None]:
        """Connect to ``path`` and read its schema version. Another program's lock (an ``sqlite3``
        shell's ``BEGIN EXCLUSIVE``, a rollback-journal writer) is waited out like a writer waits:
        SQLite's busy handler, then a jittered back-off, for up to ``BUSY_GIVE_UP_S``; the last
        error is raised (the connection closed) when it is not a lock or the wait is over."""
        deadline = time.monotonic() + BUSY_GIVE_UP_S
        delay = BEGIN_MAX_SLEEP_S
        while True:
            conn = None
            try:
                conn = cls.connect(path)  # a file that is not SQLite fails here already (a lock, too)
                return conn, conn.execute("SELECT version FROM schema_version").fetchone()
            except BaseException as exc:
                if conn is not None:
                    conn.close()
                if not (isinstance(exc, sqlite3.OperationalError) and is_busy(exc)) \
                        or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)

    @classmethod
    def worker_roles_at(cls, path: str, worker: str, then: str) -> list[str] | None:
        """``worker``'s roles in the database at ``path`` (``[]``: no such worker), read without
        opening it as a project (any schema version up to this one's); ``None`` when it holds no
        project to read them from: missing, empty, not yet a project, or damaged. A file that is not
        SQLite, another program's database and a newer schema are refused, ``then`` saying what that
        means."""
        if not os.path.exists(path) or _empty_file(path):
            return None
        problem = not_a_file_problem(path)
        if problem is not None:
            raise LabelyardError(f"{problem}; {then}")
        conn = None
        try:
            conn = cls.connect(path)
            _refuse_other_tables(conn, path, then)
            _refuse_newer_schema(conn, path)
            row = conn.execute("SELECT roles FROM workers WHERE id = ?", (worker,)).fetchone()
            return [] if row is None else loads(row["roles"])
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "malformed" in text or "no such table" in text:
                return None
            raise LabelyardError(access_problem(exc, path, opening=True)
                                 or f"{path}: cannot open it as a database ({exc}); {then}") from None
        finally:
            if conn is not None:
                conn.close()

    @classmethod
    def _refuse_other_program(cls, path: str, then: str) -> None:
        """Raise when the SQLite file at ``path`` holds another program's tables (a read)."""
        conn = cls.connect(path)
        try:
            _refuse_other_tables(conn, path, then)
        finally:
            conn.close()

    @classmethod
    def _check_before_init(cls, path: str) -> None:
        """Refuse, having only read it, an existing file ``init`` must leave alone: a folder, a file
        that is not SQLite, another program's database, a newer Labelyard's. Done before the writer
        lock's file is made, so a refusal leaves nothing behind."""
        problem = not_a_file_problem(path)
        if problem is not None:
            raise LabelyardError(f"{problem}; nothing changed")
        conn = None
        try:
            conn = cls.connect(path)  # a file that is not SQLite fails here already
            _refuse_other_tables(conn, path, NOT_TAKEN_OVER)
            _refuse_newer_schema(conn, path)
        except sqlite3.DatabaseError as exc:
            raise LabelyardError(access_problem(exc, path, opening=True)
                                 or f"{path}: cannot initialise: {exc}; nothing changed") from None
        finally:
            if conn is not None:
                conn.close()  # a WAL file's -wal and -shm go with the last connection, as they came

    @classmethod
    def init(cls, path: str | None = None) -> tuple["Store", list[str]]:
        """Create or migrate the database file; returns the store and the migrations applied."""
        from .migrations import migrate, pending

        path = database_path(path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise LabelyardError(f"{path}: folder {parent} does not exist")
        made = _MadeByInit(path)
        existed = not made.create_database()
        if existed:
            cls._check_before_init(path)
            made.take_empty_file()
        # Queued like any writer: two `init`s of a new file at once would otherwise race to switch
        # it to WAL, and SQLite answers the loser "database is locked" without waiting. Another
        # process's last connection closing (it checkpoints and removes the WAL outside the queue)
        # can still answer "locked" at once: that is waited out like a busy write.
        try:
            lock = WriterLock(path)
        except BaseException:
            made.undo(None)
            raise
        made.lock_file = lock.made_file
        applied: list[str] = []  # kept across a retry: a WAL switch found busy follows a committed migration
        deadline = time.monotonic() + BUSY_GIVE_UP_S
        delay = BEGIN_FIRST_SLEEP_S
        try:
            while True:
                conn = None
                try:
                    with lock:
                        if existed and not os.path.exists(path):  # an init that failed removed the file it made
                            raise LabelyardError(f"{path}: removed while this init waited for another one, which "
                                                 "failed; nothing changed: run `labelyard init` again")
                        conn = cls.connect(path)
                        # A new file, or an empty one the user made (`touch`), is set up alike: only an
                        # empty file takes a page size. Seen under the lock: a queued `init` of the
                        # same new file finds it a database already.
                        fresh = _empty_file(path)
                        if fresh:
                            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
                            # our own new file is WAL from the start: a kill at any point of the first
                            # init leaves no database in another journal mode
                            conn.execute("PRAGMA journal_mode=WAL").fetchall()
                        # All pending migrations under SQLite's write lock, read and applied together
                        # (each is a savepoint): two inits that both left a slow writer queue can
                        # never apply one migration twice.
                        conn.execute("BEGIN IMMEDIATE")
                        # again under the lock: another program may have written the file meanwhile
                        _refuse_other_tables(conn, path, NOT_TAKEN_OVER)
                        _refuse_newer_schema(conn, path)
                        if existed and pending(conn):
                            # a migration rebuilds tables and counters from the rows: never from damaged ones
                            problem = check_problem(conn)
                            if problem is not None:
                                raise LabelyardError(damaged_message(path, problem, done="nothing was migrated; "))
                        done = migrate(conn)
                        conn.execute("COMMIT")
                        applied += done
                        if not fresh:
                            # A file that was there switches only once the schema is in: a refused or
                            # failed init leaves its journal mode as it was (WAL cannot be switched on
                            # inside a transaction; a second `init` switches a file a kill left between).
                            conn.execute("PRAGMA journal_mode=WAL").fetchall()
                            # A read loads the new schema in WAL mode: a checkpoint as this connection's
                            # next statement was refused ("database table is locked") while it reloaded it.
                            conn.execute("SELECT version FROM schema_version").fetchall()
                    break
                except LabelyardError:
                    if conn is not None:
                        conn.close()  # rolls back the transaction, if one was begun: nothing written
                    raise
                except sqlite3.DatabaseError as exc:
                    if conn is not None:
                        conn.close()
                    busy = isinstance(exc, sqlite3.OperationalError) and is_busy(exc)
                    if "malformed" in str(exc):
                        raise LabelyardError(damaged_message(path, str(exc), done="nothing was migrated; ")) from None
                    if not busy or time.monotonic() > deadline:
                        raise LabelyardError(access_problem(exc, path) or disk_full_problem(exc, path)
                                             or f"{path}: cannot initialise: {exc}") from None
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.05)
        except BaseException as exc:  # a write that failed (disk full), a refusal, Ctrl-C: nothing of ours is left
            if made.undo(lock) and isinstance(exc, LabelyardError):
                raise LabelyardError(f"{exc}; the files this init made are removed") from None
            raise
        finally:
            lock.close()
        return cls(path, conn), applied

    @property
    def made_lock_file(self) -> str | None:
        """The writer lock's file when opening this store made it (beside a copy only read, to remove)."""
        return self._writer_lock.made_file

    def close(self) -> None:
        _OPEN_STORES.discard(self)
        if self._checkpointer is not None:
            self._checkpointer.join()
        self.conn.close()
        self._writer_lock.close()
        self._wal_backlog.close()

    def _disconnect(self) -> None:
        """Close the connection (see :func:`connections_closed`); :meth:`reconnect` opens it again."""
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        self.conn.close()

    def reconnect(self) -> None:
        """Open the connection again after :func:`connections_closed` closed it (in the parent after
        the fork, or in a forked child that reads): settings as :meth:`connect` makes them, and
        ``query_only`` if :meth:`read_only` set it."""
        self.conn = self.connect(self.path)
        if self._query_only:
            self.conn.execute("PRAGMA query_only = ON")
        # the last connection's close may have removed the -shm: the backlog is read from the new one
        self._wal_backlog = _WalBacklog(self.path)

    _BACKUP_TMP = ".labelyard-backup-tmp"  # a backup's temp file beside DEST: .ly-<random>.labelyard-backup-tmp
    # what earlier versions left in a backup folder (a sink's own PATH.labelyard-tmp is not a backup's)
    _OLD_BACKUP_TMP = re.compile(r"labelyard-\d{8}T\d{6}Z(-\d+)?\.db\.labelyard-tmp")
    _BACKUP_SIDECARS = ("-journal", "-wal", "-shm")  # SQLite's files beside it

    def backup_to(self, dest: str, *, replace: bool = False, numbered: bool = False) -> tuple[str, int]:
        """Copy the whole database to ``dest`` as of one moment, while others go on writing.

        SQLite's online backup reads inside one read transaction (WAL lets writers
        go on). The copy goes to a temp file of this call's own beside ``dest``,
        0660 from the start and locked while in use; it is checked with
        ``quick_check`` and only then put in place: over ``dest`` if ``replace``,
        else under a name nobody has taken (``dest``, or with ``numbered`` its
        ``-2``, ``-3``… variants), so ``dest`` is never a half-written file. Temp
        files of killed backups in that folder are removed first. Returns the
        copy's path and size in bytes. A ``dest`` with SQLite's ``-wal``, ``-shm`` or
        ``-journal`` beside it is refused (SQLite would apply them over the copy); a
        numbered name with them counts as taken.
        """
        if not numbered:
            self._refuse_sqlite_files_beside(dest)  # before the copy, which may take a while; again at the end
        self._remove_stale_backup_temps(os.path.dirname(os.path.abspath(dest)))
        try:
            fd, tmp = self._claim_backup_temp(dest)
        except OSError as exc:
            raise LabelyardError(f"{dest}: cannot write the backup: {exc}") from None
        try:
            self._copy_into(tmp, dest)
            final = self._place_backup(tmp, dest, replace=replace, numbered=numbered)
        except BaseException as exc:
            self._remove_backup_temp(tmp)  # never a stray full copy of the project's data
            if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):  # read from the database
                raise LabelyardError(damaged_message(self.shown_path, str(exc), done="no backup was written; ")) \
                    from None
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise LabelyardError(f"{dest}: cannot write the backup: {exc}") from None
            raise
        finally:
            os.close(fd)  # releases the lock, once the temp's name is gone
        return final, os.path.getsize(final)

    def _copy_into(self, tmp: str, dest: str) -> None:
        """Back the database up into the empty file ``tmp`` and check the copy."""
        copy = sqlite_connect(tmp)
        try:
            self.conn.backup(copy)
            verdict = check_problem(copy)
        finally:
            copy.close()
        if verdict is None:
            return
        # the copy holds the database's pages as they are: the database itself is checked before blaming it
        source = check_problem(self.conn)
        if source is not None:
            raise LabelyardError(damaged_message(self.shown_path, source, done="no backup was written; "))
        raise LabelyardError(f"{dest}: the copy failed its check ({verdict}); nothing was written")

    def restore_from(self, source: "Store", *, alone: Callable[[], None], record: Callable[[], None]) -> None:
        """Put the database behind ``source`` (a copy ``labelyard backup`` made) in this file, in
        place of all it holds: SQLite's backup API writes every page through this connection, so
        a ``-wal`` a killed process left (replayed when the connection first read) is SQLite's to
        handle and nothing of it outlives the copy; the file is never replaced. Under the writer
        lock, ``alone()`` first (it raises when another process has the database open), then the
        copy, then ``record()`` in one write transaction (migrations, the audit event). A page size
        other than the copy's (a WAL database keeps its own) is taken in rollback mode, and the
        file is WAL again after."""
        with self._writer_lock:
            alone()
            conn = self.conn
            if conn.execute("PRAGMA page_size").fetchone()[0] != source.conn.execute("PRAGMA page_size").fetchone()[0]:
                conn.execute("PRAGMA journal_mode=DELETE").fetchall()
            source.conn.backup(conn)
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            with self.transaction():  # the writer lock is this one, held already
                record()

    @classmethod
    def _claim_backup_temp(cls, dest: str) -> tuple[int, str]:
        """Create a new temp file beside ``dest``, 0660 from the start, and lock it: ``(fd, path)``.

        SQLite gives the ``-journal``/``-wal``/``-shm`` it adds the file's mode. The
        lock (``flock``, apart from SQLite's own locks) tells other backups the
        file is in use; one they could lock between our create and lock is
        being removed as stale, so another name is taken.
        """
        import fcntl

        folder = os.path.dirname(os.path.abspath(dest))
        for _ in range(100):
            # a short name, not DEST's: a DEST as long as a name may be (255 bytes) must still work
            tmp = os.path.join(folder, f".ly-{os.urandom(6).hex()}{cls._BACKUP_TMP}")
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o660)
            except FileExistsError:
                continue
            try:
                os.fchmod(fd, 0o660)  # owner and group, as `init` makes the database
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if cls._is_file_at(fd, tmp):
                    return fd, tmp
            except BlockingIOError:
                pass  # another backup is removing it
            except BaseException:
                os.close(fd)
                cls._remove_backup_temp(tmp)
                raise
            os.close(fd)
        raise OSError(f"no free temp file name beside {dest}")

    @staticmethod
    def _is_file_at(fd: int, path: str) -> bool:
        """Whether ``path`` names the open file ``fd`` (not removed or replaced meanwhile)."""
        from .export import is_file_at

        return is_file_at(fd, path)

    @classmethod
    def _remove_backup_temp(cls, tmp: str) -> None:
        """Remove ``tmp`` and its SQLite files, those first; whatever is already gone is fine."""
        for path in [tmp + end for end in cls._BACKUP_SIDECARS] + [tmp]:
            try:
                os.unlink(path)
            except OSError:
                pass

    @classmethod
    def _remove_stale_backup_temps(cls, folder: str) -> None:
        """Remove the temp files (and their SQLite files) that killed backups left in ``folder``."""
        try:
            names = os.listdir(folder)
        except OSError:
            return
        temps = {cls._backup_temp_of(name) for name in names} - {None}
        for name in sorted(temps):
            cls._remove_if_stale(os.path.join(folder, name))

    @classmethod
    def _backup_temp_of(cls, name: str) -> str | None:
        """The backup temp file that ``name`` is, or is an SQLite file of; else None."""
        for end in ("", *cls._BACKUP_SIDECARS):
            main = name[: len(name) - len(end)]
            if name.endswith(end) and (main.endswith(cls._BACKUP_TMP) or cls._OLD_BACKUP_TMP.fullmatch(main)):
                return main
        return None

    @classmethod
    def _remove_if_stale(cls, tmp: str) -> None:
        """Remove ``tmp`` and its SQLite files unless a backup in progress holds its lock."""
        import fcntl
        import stat

        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            cls._remove_backup_temp(tmp)  # SQLite files whose temp file was removed first
            return
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if stat.S_ISREG(os.fstat(fd).st_mode) and cls._is_file_at(fd, tmp):
                cls._remove_backup_temp(tmp)
        except OSError:
            pass  # locked: a backup in progress
        finally:
            os.close(fd)

    @classmethod
    def sqlite_files_beside(cls, path: str) -> list[str]:
        """SQLite's ``-journal``, ``-wal`` and ``-shm`` files that are beside ``path`` (named after its real file)."""
        real = os.path.realpath(path)
        return [real + end for end in cls._BACKUP_SIDECARS if os.path.lexists(real + end)]

    def _refuse_sqlite_files_beside(self, dest: str) -> None:
        """Raise when SQLite's files of a database are beside ``dest``: a database there is open, or a
        process that used it was killed, and SQLite would apply its journal or WAL over the copy (a
        damaged file, or the rows written since the copy was made back in)."""
        found = self.sqlite_files_beside(dest)
        if found:
            import shlex

            names = " and ".join(os.path.basename(name) for name in found)
            raise LabelyardError(
                f"{dest}: {names} {'is' if len(found) == 1 else 'are'} beside it (a database there is open, or a "
                "process that used it was killed): SQLite would apply them over the copy; nothing was written. To "
                f"put this copy back as that project's database: `labelyard restore {shlex.quote(self.shown_path)} "
                f"--db {shlex.quote(dest)}`")

    def _place_backup(self, tmp: str, dest: str, *, replace: bool, numbered: bool) -> str:
        """Give the finished copy its name (see :meth:`backup_to`); returns that name."""
        if not numbered:
            self._refuse_sqlite_files_beside(dest)
        if replace:
            os.replace(tmp, dest)
            return dest
        root, ext = os.path.splitext(dest)
        name, n = dest, 1
        while (numbered and self.sqlite_files_beside(name)) or not self._move_unless_taken(tmp, name):
            if not numbered:
                raise LabelyardError(f"{dest} exists: pass --force to replace it")
            n += 1
            name = f"{root}-{n}{ext}"
        return name

    @classmethod
    def _move_unless_taken(cls, tmp: str, name: str) -> bool:
        """Rename ``tmp`` to ``name`` unless ``name`` exists (then False): a hard link, then unlink."""
        import errno

        try:
            os.link(tmp, name)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS):
                raise
            return cls._rename_noreplace(tmp, name)  # a filesystem without hard links
        cls._remove_backup_temp(tmp)
        return True

    @staticmethod
    def _rename_noreplace(tmp: str, name: str) -> bool:
        """Linux ``renameat2(RENAME_NOREPLACE)``: False if ``name`` exists."""
        import ctypes
        import errno

        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, noreplace = -100, 1
        if not hasattr(libc, "renameat2"):
            code = errno.ENOSYS
        elif libc.renameat2(at_fdcwd, os.fsencode(tmp), at_fdcwd, os.fsencode(name), noreplace) == 0:
            return True
        else:
            code = ctypes.get_errno()
        if code == errno.EEXIST:
            return False
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise LabelyardError(f"{name}: this folder's filesystem cannot add a file without the risk of "
                                 "replacing another: back up to a file name with --force")
        raise OSError(code, os.strerror(code), name)

    def read_only(self) -> None:
        """Refuse every write on this connection from now on (explain, replay)."""
        self.conn.execute("PRAGMA query_only = ON")
        self._query_only = True

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

        Nested use joins the outer transaction. Labelyard's writers first queue
        on a lock file beside the database (see :mod:`router.writer_lock`), so the
        SQLite lock is rarely contended; other writers are waited for with
        jittered back-off. ``rollback`` ends it with ``ROLLBACK`` instead of
        ``COMMIT`` (a dry run: the real code runs and sees its own changes, and
        nothing stays); only an outermost transaction can be one.
        """
        if self._depth:
            if rollback:
                raise RuntimeError("a transaction that is rolled back cannot join an outer one")
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        with self._writer_lock:
            self._begin()
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            if rollback:
                self.conn.execute("ROLLBACK")
                return
            self._commit()
        self._after_commit()

    @contextmanager
    def read_transaction(self) -> Iterator[sqlite3.Connection]:
        """Several reads as one snapshot: ``BEGIN`` (deferred) … ``COMMIT``.

        In WAL mode the first read fixes what this connection sees until the end, while
        other processes go on committing: the parts of one answer (a task's row, its votes,
        its events) are of one state, never some from before a write and some from after.
        It takes no lock (no writer waits for it, and it waits for none) and it always ends,
        also when a read fails, so no later read sees an old snapshot. Inside a transaction
        (a write's, or another read's) it joins that one.
        """
        if self._depth or self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")  # a read: nothing to write, nothing to wait for

    def _after_commit(self) -> None:
        """Checkpoint once the WAL has grown, after the writer lock is released.

        SQLite's autocheckpoint would run inside the committing writer's
        ``COMMIT``, so every writer queued behind the lock would wait for the
        copy and its ``fsync``. A ``PASSIVE`` checkpoint here lets them go on
        appending meanwhile; a checkpoint already running elsewhere makes it
        return at once.
        """
        frames = self._wal_backlog.frames()
        if frames is None or frames < CHECKPOINT_FRAMES:
            return
        if self.checkpoint_in_thread:
            if self._checkpointer is None or not self._checkpointer.is_alive():
                import threading

                self._checkpointer = threading.Thread(target=_checkpoint, args=(self.path,),
                                                      name="labelyard-checkpoint", daemon=True)
                self._checkpointer.start()
            return
        _checkpoint_on(self.conn)

    def _begin(self) -> None:
        """Take SQLite's write lock. Labelyard writers already hold the writer lock
        file, so a wait here is for some other program writing the file: SQLite's
        busy handler waits up to ``BUSY_TIMEOUT_MS``, then we retry with a capped,
        jittered back-off for up to ``BUSY_GIVE_UP_S`` before telling the user."""
        deadline = time.monotonic() + BUSY_GIVE_UP_S
        delay = BEGIN_FIRST_SLEEP_S
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):  # a read-only -shm, say: no wait cures it
                    raise LabelyardError(access_problem(exc, self.shown_path)
                                         or f"{self.shown_path}: cannot begin a write: {exc}") from None
                if time.monotonic() > deadline:
                    raise LabelyardError(f"{self.shown_path}: database stayed locked: {exc}") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 1.5, BEGIN_MAX_SLEEP_S)

    def _commit(self) -> None:
        deadline = time.monotonic() + BUSY_GIVE_UP_S
        while True:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
                time.sleep(0.005)

    def query(self, sql: str, params: Sequence[Any] | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def returning(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        """Run a write with ``RETURNING`` to completion (a half-read statement blocks COMMIT)."""
        rows = self.conn.execute(sql, params).fetchall()
        return rows[0] if rows else None

    # -- events ----------------------------------------------------------------------------
    def add_event(
        self,
        kind: str,
        at: float,
        *,
        task_id: int | None = None,
        rule: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        detail: dict | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO events (task_id, kind, rule, action, actor, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (task_id, kind, rule, action, actor, dumps(detail) if detail else None, at),
        )

    def add_created_events(self, rows: Sequence[tuple]) -> None:
        """Insert the ``created`` events of new tasks, ``(task_id, rule, action, actor,
        detail_json, at)`` rows, and count them on the dashboard in one grouped upsert each
        (no trigger counts ``created`` events: per row that was a fifth of an ingest)."""
        if not rows:
            return
        first = int(self.one("SELECT coalesce(max(id), 0) + 1 FROM events")[0])
        self.conn.executemany(
            "INSERT INTO events (task_id, kind, rule, action, actor, detail, at) VALUES (?, 'created', ?, ?, ?, ?, ?)",
            rows,
        )
        self.conn.execute(
            "INSERT INTO rule_counts (section, rule_key, rule, n, last_at) "
            "SELECT 'on_create', rule, rule, count(*), max(at) FROM events WHERE id >= ? AND rule IS NOT NULL "
            "GROUP BY rule "
            "ON CONFLICT (section, rule_key) DO UPDATE SET n = n + excluded.n, rule = excluded.rule, "
            "last_at = max(last_at, excluded.last_at)",
            (first,),
        )
        self.conn.execute(
            "INSERT INTO activity (hour, kind, actor, n) "
            "SELECT CAST(at / 3600 AS INTEGER), 'created', '', count(*) FROM events WHERE id >= ? GROUP BY 1 "
            "ON CONFLICT (hour, kind, actor) DO UPDATE SET n = n + excluded.n",
            (first,),
        )

    def events(self, task_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM events WHERE task_id = ? ORDER BY id", (task_id,))

    def decision_events(self, kinds: Sequence[str]) -> Iterator[sqlite3.Row]:
        """Every event of these kinds that belongs to a task, oldest first, with the task's row
        (its columns prefixed ``t_``), streamed: for ``labelyard replay``."""
        marks = ",".join("?" * len(kinds))
        columns = ", ".join(f"t.{c.strip()} AS t_{c.strip()}" for c in TASK_COLUMNS.split(","))
        yield from self.conn.execute(
            f"SELECT e.*, {columns} FROM events AS e JOIN tasks AS t ON t.id = e.task_id "
            f"WHERE e.kind IN ({marks}) ORDER BY e.id",
            list(kinds),
        )

    # -- workflows -------------------------------------------------------------------------
    def active_workflow(self) -> sqlite3.Row | None:
        return self.one("SELECT * FROM workflows WHERE active = 1")

    def active_workflow_id(self) -> int | None:
        """The id of the active workflow version (a cheap check that a cached one is current)."""
        row = self.one("SELECT id FROM workflows WHERE active = 1")
        return None if row is None else int(row[0])

    def workflow_queue_names(self, version_id: int) -> set[str]:
        """The queues of a stored workflow version."""
        row = self.one("SELECT spec FROM workflows WHERE id = ?", (version_id,))
        return set((loads(row[0]) or {}).get("queues") or {}) if row is not None else set()

    def queues_ever(self) -> set[str]:
        """Every queue some stored workflow version has (a row per version: a few)."""
        return {r[0] for r in self.query("SELECT DISTINCT q.key FROM workflows AS w, json_each(w.spec, '$.queues') AS q")}

    def workflow_version(self, version_id: int) -> sqlite3.Row | None:
        return self.one("SELECT * FROM workflows WHERE id = ?", (version_id,))

    def latest_workflow(self, name: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM workflows WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))

    def insert_workflow(self, name: str, yaml_text: str, spec: dict, digest: str, filename: str, at: float, actor: str) -> int:
        latest = self.latest_workflow(name)
        version = (latest["version"] + 1) if latest else 1
        self.conn.execute("UPDATE workflows SET active = 0 WHERE active = 1")
        cur = self.conn.execute(
            "INSERT INTO workflows (name, version, hash, yaml, spec, filename, applied_at, applied_by, active) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
            (name, version, digest, yaml_text, dumps(spec), filename, at, actor),
        )
        return int(cur.lastrowid)

    # -- workers ---------------------------------------------------------------------------
    def worker(self, name: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM workers WHERE id = ?", (name,))

    def claimer(self, name: str) -> sqlite3.Row | None:
        """A worker's row plus ``has_offered``: whether a slot was offered back to them alone."""
        return self.one(
            "SELECT w.*, EXISTS (SELECT 1 FROM assignments WHERE worker = w.id AND status = 'offered') "
            "AS has_offered FROM workers AS w WHERE w.id = ?", (name,))

    def claimer_now(self, name: str) -> sqlite3.Row:
        """Under the claim's write lock: what may have changed since :meth:`claimer` (pause, roles,
        skills, capacity), how many active slots the worker holds and the active workflow version's
        id (``workflow_id``), in one read."""
        return self.one(
            "SELECT paused, pause_reason, roles, skills, capacity, (SELECT count(*) FROM assignments "
            "INDEXED BY assignments_worker_active WHERE worker = ?1 AND status = 'active') AS active, "
            "(SELECT id FROM workflows WHERE active = 1) AS workflow_id "
            "FROM workers WHERE id = ?1", (name,))

    def workers(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM workers ORDER BY id")

    def upsert_worker(self, name: str, roles: list[str], skills: list[str], capacity: int | None, at: float) -> bool:
        """Insert or update a worker; returns True when it was new."""
        existed = self.worker(name) is not None
        self.conn.execute(
            "INSERT INTO workers (id, roles, skills, capacity, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET roles = excluded.roles, skills = excluded.skills, capacity = excluded.capacity",
            (name, dumps(roles), dumps(skills), capacity, at),
        )
        return not existed

    def leads(self) -> list[str]:
        """The workers with the ``lead`` role."""
        return [r[0] for r in self.query(
            "SELECT id FROM workers WHERE EXISTS (SELECT 1 FROM json_each(roles) WHERE value = 'lead') ORDER BY id")]

    def set_worker_paused(self, name: str, paused: bool, reason: str | None) -> None:
        self.conn.execute("UPDATE workers SET paused = ?, pause_reason = ? WHERE id = ?", (int(paused), reason, name))

    def active_count(self, worker: str) -> int:
        row = self.one("SELECT count(*) FROM assignments WHERE worker = ? AND status = 'active'", (worker,))
        return int(row[0])

    def worker_loads(self) -> dict[str, int]:
        rows = self.query("SELECT worker, count(*) AS n FROM assignments WHERE status = 'active' GROUP BY worker")
        return {r["worker"]: r["n"] for r in rows}

    # -- tasks -----------------------------------------------------------------------------
    def task(self, ref: int | str) -> sqlite3.Row | None:
        """A task by id (an int, or ``id:N``), by external id (``ext:X``), or by a bare reference
        that is either. A bare number that is one task's id and another task's external id is
        refused as ambiguous (:class:`LabelyardError`) rather than guessed."""
        if isinstance(ref, int):
            return self._task_by_id(ref)
        number = _task_number(ref[3:]) if ref.startswith("id:") else None
        if number is not None:
            return self._task_by_id(number)
        if ref.startswith("ext:"):
            return self.task_by_external_id(ref[4:])
        by_external = self.task_by_external_id(ref)
        number = _task_number(ref)
        by_id = None if number is None else self._task_by_id(number)
        if by_id is not None and by_external is not None and by_id["id"] != by_external["id"]:
            raise LabelyardError(
                f"task `{ref}` is ambiguous: id:{number} is the task with external id `{by_id['external_id']}`, "
                f"ext:{ref} is the task with id {by_external['id']}; write id:{number} or ext:{ref}")
        return by_id or by_external

    def _task_by_id(self, task_id: int) -> sqlite3.Row | None:
        return self.one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))

    def existing_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(external_ids), 500):
            chunk = external_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.conn.execute(f"SELECT external_id FROM tasks WHERE external_id IN ({marks})", chunk))
        return found

    def stored_inputs(self, external_ids: Iterable[str], columns: Sequence[str]) -> dict[str, tuple]:
        """The input ``columns`` (``data``, ``category``…) of the stored tasks with these external ids,
        by external id (an id not stored is not a key): which ids are known, and what an ingest
        compares a row whose id is known with. An id not stored costs what
        :meth:`existing_external_ids` pays for it, an index probe."""
        ids = list(external_ids)
        selected = ", ".join(columns)
        found: dict[str, tuple] = {}
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: 200k sqlite3.Row objects cost more than the reads
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in cursor.execute(f"SELECT external_id, {selected} FROM tasks WHERE external_id IN ({marks})",
                                      chunk):
                found[row[0]] = row[1:]
        return found

    def gold_external_ids(self, external_ids: Iterable[str]) -> set[str]:
        """Which of these (stored) external ids are gold questions."""
        ids = list(external_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.conn.execute(
                f"SELECT external_id FROM tasks WHERE external_id IN ({marks}) AND is_gold = 1", chunk))
        return found

    def next_task_id(self) -> int:
        row = self.one("SELECT max(id) FROM tasks")
        return int(row[0] or 0) + 1

    def insert_tasks(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert fully routed new tasks given as dicts of :data:`TASK_INSERT_COLUMNS`;
        see :meth:`insert_task_tuples`."""
        self.insert_task_tuples(TASK_INSERT_COLUMNS, [tuple(row[c] for c in TASK_INSERT_COLUMNS) for row in rows])

    def insert_task_tuples(self, columns: Sequence[str], rows: Sequence[tuple]) -> None:
        """Insert new tasks given as tuples in ``columns`` order (our own column names, never
        input), ``id`` first, consecutive and above every stored one."""
        if not rows:
            return
        self.conn.executemany(
            f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
        self._count_new_tasks(rows[0][0], rows[-1][0])

    def recount_counters(self) -> None:
        """Rebuild the dashboard counters (``task_counts``, ``rule_counts``, ``activity``)
        by counting the tables from scratch: for a database filled by other means than
        this store (a bulk load in plain SQL)."""
        with self.transaction():
            self.conn.execute("DELETE FROM task_counts")
            self.conn.execute(
                "INSERT INTO task_counts (status, queue, stage, claimable, is_gold, n) "
                "SELECT status, coalesce(queue, ''), coalesce(stage, ''), status = 'open' AND free_slots > 0, "
                "is_gold, count(*) FROM tasks GROUP BY 1, 2, 3, 4, 5")
            self.conn.execute("DELETE FROM rule_counts")
            # by identity (an event's rule_key, else its rule's name); the bare ``rule`` is the one of max(at)
            self.conn.execute(
                "INSERT INTO rule_counts (section, rule_key, rule, n, last_at) "
                "SELECT CASE WHEN kind = 'created' THEN 'on_create' "
                "ELSE coalesce(CASE WHEN json_valid(detail) THEN json_extract(detail, '$.section') END, '') END, "
                "coalesce(CASE WHEN kind != 'created' AND instr(detail, '\"rule_key\"') AND json_valid(detail) "
                "THEN json_extract(detail, '$.rule_key') END, rule), "
                "rule, count(*), max(at) FROM events WHERE rule IS NOT NULL GROUP BY 1, 2")
            self.conn.execute("DELETE FROM activity")
            self.conn.execute(
                "INSERT INTO activity (hour, kind, actor, n) "
                "SELECT CAST(at / 3600 AS INTEGER), kind, "
                "CASE WHEN kind = 'submitted' THEN coalesce(actor, '') ELSE '' END, count(*) "
                "FROM events WHERE kind IN ('created', 'submitted', 'final') GROUP BY 1, 2, 3")

    def _count_new_tasks(self, first: int, last: int) -> None:
        """Add the tasks with ids ``first..last`` (just inserted) to the dashboard counts:
        one grouped upsert per batch. Updates and deletes are counted by triggers; inserts
        are counted here because a trigger's upsert per ingested row cost ~4 µs of ~24."""
        self.conn.execute(
            "INSERT INTO task_counts (status, queue, stage, claimable, is_gold, n) "
            "SELECT status, coalesce(queue, ''), coalesce(stage, ''), status = 'open' AND free_slots > 0, is_gold, "
            "count(*) FROM tasks WHERE id BETWEEN ? AND ? GROUP BY 1, 2, 3, 4, 5 "
            "ON CONFLICT (status, queue, stage, claimable, is_gold) DO UPDATE SET n = n + excluded.n",
            (first, last),
        )

    def insert_new_tasks(self, columns: Sequence[str], rows: Sequence[tuple]) -> bool:
        """Insert tasks (tuples in ``columns`` order, ids first and consecutive) if none of
        their external ids is stored yet; ``False``, with nothing left inserted, if one is.

        Inside the caller's transaction. A clash undoes the rows this call had inserted
        (they are ours alone: the write lock is held); no savepoint, whose statement
        journal made every ingest batch ~40% slower.
        """
        try:
            self.insert_task_tuples(columns, rows)
        except sqlite3.IntegrityError as exc:
            if "external_id" not in str(exc):
                raise
            # Count the rows that did get in, so that the delete trigger's decrements cancel out.
            self._count_new_tasks(rows[0][0], rows[-1][0])
            self.conn.execute("DELETE FROM tasks WHERE id >= ?", (rows[0][0],))
            return False
        return True

    def update_task(self, task_id: int, **fields: Any) -> None:
        """Set columns of one task (names are from our own code, never from input)."""
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        self.conn.execute(f"UPDATE tasks SET {assignments} WHERE id = :_id", {**fields, "_id": task_id})

    def set_gold(self, task_id: int, label: Any) -> None:
        self.conn.execute(
            "INSERT INTO gold (task_id, label) VALUES (?, ?) ON CONFLICT (task_id) DO UPDATE SET label = excluded.label",
            (task_id, dumps(label)),
        )

    def gold_label(self, task_id: int) -> Any:
        row = self.one("SELECT label FROM gold WHERE task_id = ?", (task_id,))
        return loads(row[0]) if row else None

    # -- claiming --------------------------------------------------------------------------
    def claim_offered(self, worker: str, now: float, queues: Sequence[str]) -> sqlite3.Row | None:
        """Activate the oldest slot offered to ``worker`` alone (work returned for correction) in one
        of ``queues``, those they may work now (a slot in another waits: it is not theirs to take)."""
        if not queues:
            return None
        marks = ", ".join("?" * len(queues))
        return self.returning(
            "UPDATE assignments SET status = 'active', updated_at = ? WHERE id = ("
            f"SELECT id FROM assignments WHERE worker = ? AND status = 'offered' AND queue IN ({marks}) "
            "ORDER BY id LIMIT 1) RETURNING id, task_id, stage, queue, note",
            (now, worker, *queues),
        )

    # A task the worker may take: not one they annotated (any stage), hold a slot of in its round, or gave up.
    _MAY_TAKE = ("NOT EXISTS (SELECT 1 FROM assignments AS a WHERE a.task_id = {t}.id AND a.worker = ? "
                 "AND (a.stage IN ('annotate', 'correct') OR a.round = {t}.round OR a.status = 'released'))")
    # The claim's walk over a queue: tasks the worker may not take are stepped over one by one.
    _CLAIM_BRANCH = (
        "SELECT * FROM (SELECT t.id, t.priority FROM tasks AS t INDEXED BY tasks_claimable "
        "WHERE t.queue = ? AND t.status = 'open' AND t.free_slots > 0 AND " + _MAY_TAKE.format(t="t") +
        " ORDER BY t.priority DESC, t.id LIMIT 1)"
    )
    _CLAIMED = "RETURNING id, external_id, stage, queue, round, data, category, pred_label, pred_confidence"

    def _best_candidate(self, worker: str, queues: Sequence[str]) -> tuple[str, list[Any]]:
        """The SQL selecting the id of the task :meth:`claim_slot` takes (one probe per queue), and its parameters."""
        branches = " UNION ALL ".join([self._CLAIM_BRANCH] * len(queues))
        return (f"SELECT id FROM ({branches}) ORDER BY priority DESC, id LIMIT 1",
                [param for queue in queues for param in (queue, worker)])

    def claim_slot(self, worker: str, queues: Sequence[str], now: float, *,
                   steps: int | None = None) -> sqlite3.Row | None:
        """Take one free slot: the highest priority, then oldest, task in ``queues`` that ``worker`` may work.

        One ``UPDATE … RETURNING`` inside the caller's ``BEGIN IMMEDIATE``
        transaction: no two workers can take the same slot. A worker never gets
        a task they annotated (for any stage), one they hold a slot of in the
        current round, or one whose slot they gave up or had taken back
        (``released``: skipped, or released by a lead, a hold or a timer) in any round.

        The walk steps over every task at the head of a queue the worker may not take
        (a fast annotator's own votes waiting for others'). With ``steps``, it gives up
        after about that many SQLite instructions, raising :class:`ClaimWalkTooLong`; SQLite
        then rolls the transaction back, so nothing may have been written in it before.
        """
        if not queues:
            return None
        best, params = self._best_candidate(worker, queues)
        sql = f"UPDATE tasks SET free_slots = free_slots - 1, updated_at = ? WHERE id = ({best}) {self._CLAIMED}"
        params = [now, *params]
        if steps is None:
            return self.returning(sql, params)
        self.conn.set_progress_handler(lambda: 1, steps)  # 1: stop the statement
        try:
            return self.returning(sql, params)
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                raise ClaimWalkTooLong from None
            raise
        finally:
            self.conn.set_progress_handler(None, 0)

    def claim_candidate(self, worker: str, queues: Sequence[str]) -> int | None:
        """The task :meth:`claim_slot` would take now, read without the write lock (the long walk
        of :class:`ClaimWalkTooLong`, done while others write); ``None`` when there is none."""
        if not queues:
            return None
        row = self.one(*self._best_candidate(worker, queues))
        return None if row is None else int(row[0])

    def claim_task_slot(self, task_id: int, worker: str, queues: Sequence[str], now: float) -> sqlite3.Row | None:
        """Take a free slot of ``task_id`` if ``worker`` may still take it from ``queues``, as
        :meth:`claim_slot` would; ``None`` when someone took the last one (or it moved on) meanwhile."""
        marks = ",".join("?" * len(queues))
        return self.returning(
            f"UPDATE tasks SET free_slots = free_slots - 1, updated_at = ? WHERE id = ? AND queue IN ({marks}) "
            f"AND status = 'open' AND free_slots > 0 AND {self._MAY_TAKE.format(t='tasks')} {self._CLAIMED}",
            [now, task_id, *queues, worker],
        )

    def insert_assignment(self, task_id: int, worker: str, stage: str, queue: str | None, round_: int,
                          status: str, now: float, note: str | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO assignments (task_id, worker, stage, queue, round, status, note, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task_id, worker, stage, queue, round_, status, note, now, now),
        )
        return int(cur.lastrowid)

    def assignment(self, assignment_id: int) -> sqlite3.Row | None:
        return self.one("SELECT * FROM assignments WHERE id = ?", (assignment_id,))

    def assignments(self, task_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM assignments WHERE task_id = ? ORDER BY id", (task_id,))

    def finish_assignment(self, assignment_id: int, worker: str, now: float) -> sqlite3.Row | None:
        """Mark ``worker``'s active slot submitted and return it; ``None`` if it is not theirs or not active."""
        return self.returning(
            "UPDATE assignments SET status = 'submitted', updated_at = ? "
            "WHERE id = ? AND worker = ? AND status = 'active' RETURNING *",
            (now, assignment_id, worker),
        )

    def set_assignment_status(self, assignment_id: int, status: str, now: float) -> None:
        self.conn.execute("UPDATE assignments SET status = ?, updated_at = ? WHERE id = ?", (status, now, assignment_id))

    def close_open_assignments(self, task_id: int, status: str, now: float) -> int:
        """End every active or offered slot of a task (it moved on); returns how many."""
        cur = self.conn.execute(
            "UPDATE assignments SET status = ?, updated_at = ? WHERE task_id = ? AND status IN ('active', 'offered')",
            (status, now, task_id),
        )
        return cur.rowcount

    # -- annotations -----------------------------------------------------------------------
    def insert_annotation(self, assignment: sqlite3.Row, label: Any, verdict: str | None, comment: str | None, now: float) -> int:
        """Record a submission of ``assignment``, with its slot's queue (which the queue's latest votes are read by)."""
        cur = self.conn.execute(
            "INSERT INTO annotations (assignment_id, task_id, worker, stage, round, label, verdict, comment, "
            "created_at, queue) VALUES (:id, :task, :worker, :stage, :round, :label, :verdict, :comment, :now, "
            "(SELECT queue FROM assignments WHERE id = :id))",
            {"id": assignment["id"], "task": assignment["task_id"], "worker": assignment["worker"],
             "stage": assignment["stage"], "round": assignment["round"],
             "label": None if label is None else dumps(label), "verdict": verdict, "comment": comment, "now": now},
        )
        return int(cur.lastrowid)

    def annotations(self, task_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM annotations WHERE task_id = ? ORDER BY id", (task_id,))

    def votes(self, task_id: int) -> list[sqlite3.Row]:
        """Each annotator's latest annotate/correct submission on a task, oldest first."""
        return self.query(
            "SELECT a.worker, a.label, a.created_at, w.flagged, s.queue FROM annotations AS a "
            "LEFT JOIN workers AS w ON w.id = a.worker JOIN assignments AS s ON s.id = a.assignment_id "
            "WHERE a.task_id = ? AND a.stage IN ('annotate', 'correct') AND a.id = ("
            "SELECT max(b.id) FROM annotations AS b WHERE b.task_id = a.task_id AND b.worker = a.worker "
            "AND b.stage IN ('annotate', 'correct')) ORDER BY a.id",
            (task_id,),
        )

    def gold_accuracy(self, workers: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``{worker: (gold answered, gold correct)}`` for these workers (kept counters, O(1) each)."""
        if not workers:
            return {}
        marks = ",".join("?" * len(workers))
        rows = self.query(f"SELECT id, gold_answered, gold_correct FROM workers WHERE id IN ({marks})", list(workers))
        return {r["id"]: (r["gold_answered"], r["gold_correct"]) for r in rows if r["gold_answered"]}

    def count_submission(self, worker: str, gold_correct: bool | None) -> None:
        """Bump a worker's counters for one submission (``gold_correct`` ``None`` when not a gold task)."""
        if gold_correct is None:
            self.conn.execute("UPDATE workers SET submitted = submitted + 1 WHERE id = ?", (worker,))
        else:
            self.conn.execute(
                "UPDATE workers SET submitted = submitted + 1, gold_answered = gold_answered + 1, "
                "gold_correct = gold_correct + ? WHERE id = ?",
                (int(gold_correct), worker),
            )

    def newest_annotation_id(self) -> int:
        """The id of the latest annotation (0 when none): a cheap "anything new?" check."""
        return int(self.one("SELECT max(id) FROM annotations")[0] or 0)

    def recent_votes(self, queue: str | None, limit: int) -> list[tuple[int, str, Any]]:
        """``(task_id, worker, label)``: every vote in ``queue`` on the tasks of its latest ``limit``
        annotate/correct submissions (whole tasks, so none counts with only some of its votes).

        Each worker's latest vote per task only (what Dawid-Skene fits over), newest first;
        gold answers left out, as from ``labelyard agreement --queue Q --latest N`` (:meth:`vote_rows`).
        """
        rows = self.query(
            "SELECT a.task_id, a.worker, a.label FROM annotations AS a JOIN assignments AS s "
            "ON s.id = a.assignment_id WHERE s.queue IS :queue AND a.stage IN ('annotate', 'correct') "
            f"AND a.task_id IN ({_latest_voted_tasks(True)}) ORDER BY a.id DESC",
            {"queue": queue, "latest": limit},
        )
        seen: set[tuple[int, str]] = set()
        out = []
        for r in rows:
            if (r["task_id"], r["worker"]) not in seen:
                seen.add((r["task_id"], r["worker"]))
                out.append((r["task_id"], r["worker"], loads(r["label"])))
        return out

    # -- lead actions and timers ----------------------------------------------------------
    def tasks_after(self, status: str, queue: str, after_id: int, limit: int) -> list[sqlite3.Row]:
        """Non-gold tasks with ``status`` after ``(queue, id)``, in ``(queue, id)`` order (keyset paging).

        Walks the ``(status, queue)`` index, whose entries are ordered by
        ``(queue, rowid)``, so each page is a short range scan however many
        tasks are done. Start from ``("", 0)``.
        """
        # Two ranges, not `(queue, id) > (?, ?)`: SQLite narrows that row value by `queue` alone, so each
        # page re-read its queue from the first entry (a 1M-task tick took 98 s instead of seconds).
        rows = self.queue_tasks_after(status, queue, after_id, limit)
        if len(rows) < limit:
            rows += self.query(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = ? AND queue > ? AND is_gold = 0 "
                "ORDER BY queue, id LIMIT ?",
                (status, queue, limit - len(rows)),
            )
        return rows

    def queue_tasks_after(self, status: str, queue: str, after_id: int, limit: int) -> list[sqlite3.Row]:
        """Non-gold tasks with ``status`` in ``queue`` after ``after_id``, by id: one range of the
        ``(status, queue)`` index (a ``--where`` on ``task.queue == "…"`` reads that queue alone)."""
        return self.query(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = ? AND queue = ? AND id > ? AND is_gold = 0 "
            "ORDER BY id LIMIT ?",
            (status, queue, after_id, limit),
        )

    def count_tasks_in(self, status: str, queues: Sequence[str | None] | None = None) -> int:
        """How many non-gold tasks have ``status`` (and one of ``queues``, ``None`` among them for no
        queue; all when ``queues`` is ``None``): the tasks a ``--where`` reads, for its progress line."""
        if queues is None:
            return self.query("SELECT COUNT(*) FROM tasks WHERE status = ? AND is_gold = 0", (status,))[0][0]
        named = [q for q in queues if q is not None]
        total = 0
        if named:
            marks = ", ".join("?" * len(named))
            total += self.query(f"SELECT COUNT(*) FROM tasks WHERE status = ? AND queue IN ({marks}) AND is_gold = 0",
                                (status, *named))[0][0]
        if None in queues:
            total += self.query("SELECT COUNT(*) FROM tasks WHERE status = ? AND queue IS NULL AND is_gold = 0",
                                (status,))[0][0]
        return total

    def queueless_tasks(self, status: str, after_id: int, limit: int) -> list[sqlite3.Row]:
        """Non-gold tasks with ``status`` and no queue (held at creation), by id after ``after_id``."""
        return self.query(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = ? AND queue IS NULL AND id > ? AND is_gold = 0 "
            "ORDER BY id LIMIT ?",
            (status, after_id, limit),
        )

    # A --where filter's matches: found first, acted on after. A temporary table of this connection (in
    # SQLite's temporary file, not in memory), so a filter matching a million tasks holds no list of them.
    def clear_matches(self) -> None:
        """Start an empty list of matches (a lead action's ``--where``)."""
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS where_matches (seq INTEGER PRIMARY KEY, "
                          "task_id INTEGER NOT NULL UNIQUE, status TEXT NOT NULL, round INTEGER NOT NULL)")
        self.conn.execute("DELETE FROM temp.where_matches")

    def add_matches(self, rows: Iterable[tuple[int, str, int]]) -> None:
        """Append ``(task_id, status, round)`` matches; a task already listed keeps its place and takes
        these values (it changed status during the walk and was read again). One transaction of the
        temporary table alone: the database stays unlocked."""
        self.conn.execute("SAVEPOINT where_matches")
        try:
            self.conn.executemany(
                "INSERT INTO temp.where_matches (task_id, status, round) VALUES (?, ?, ?) "
                "ON CONFLICT (task_id) DO UPDATE SET status = excluded.status, round = excluded.round", rows)
        finally:
            self.conn.execute("RELEASE where_matches")

    def match_count(self) -> int:
        return int(self.one("SELECT count(*) FROM temp.where_matches")[0])

    def matches_after(self, seq: int, limit: int) -> list[sqlite3.Row]:
        """``seq, task_id, status, round`` of the matches listed after ``seq``, in the order found."""
        return self.query("SELECT seq, task_id, status, round FROM temp.where_matches WHERE seq > ? "
                          "ORDER BY seq LIMIT ?", (seq, limit))

    def drop_matches(self) -> None:
        self.conn.execute("DROP TABLE IF EXISTS temp.where_matches")

    def tasks_holding_slots_after(self, after_slot: int, limit: int,
                                  queues: Sequence[str | None] | None = None) -> list[sqlite3.Row]:
        """Open non-gold tasks with an active slot, a row per such slot after ``after_slot`` (its id as
        ``slot``), by slot id: what ``release --where`` can apply to, read through the partial index of
        active slots rather than every open task. With ``queues``, only tasks in those queues (``None``
        among them: tasks without one; an empty list: none) are read."""
        columns = ", ".join(f"t.{c}" for c in TASK_INSERT_COLUMNS)
        named = [q for q in queues if q is not None] if queues is not None else []
        in_queues = ""
        if queues is not None:
            kept = [f"t.queue IN ({', '.join('?' * len(named))})"] if named else []
            kept += ["t.queue IS NULL"] if None in queues else []
            if not kept:  # no queue a task can be in (`task.queue == 1`)
                return []
            in_queues = f" AND ({' OR '.join(kept)})"
        return self.query(
            f"SELECT {columns}, a.id AS slot FROM assignments AS a INDEXED BY assignments_worker_active "
            "JOIN tasks AS t ON t.id = a.task_id WHERE a.status = 'active' AND a.id > ? AND t.status = 'open' "
            f"AND t.is_gold = 0{in_queues} ORDER BY a.id LIMIT ?",
            (after_slot, *named, limit),
        )

    def tasks_held_by_after(self, worker: str, after_slot: int, limit: int) -> list[sqlite3.Row]:
        """Open non-gold tasks where ``worker`` holds an active slot, a row per slot after ``after_slot``
        (its id as ``slot``), by slot id: what ``reassign --where … --from W`` can apply to, read through
        the partial index of active slots (W's few), not every open task."""
        columns = ", ".join(f"t.{c}" for c in TASK_INSERT_COLUMNS)
        return self.query(
            f"SELECT {columns}, a.id AS slot FROM assignments AS a INDEXED BY assignments_worker_active "
            "JOIN tasks AS t ON t.id = a.task_id WHERE a.worker = ? AND a.status = 'active' AND a.id > ? "
            "AND t.status = 'open' AND t.is_gold = 0 ORDER BY a.id LIMIT ?",
            (worker, after_slot, limit),
        )

    def active_assignments_after(self, after_id: int, limit: int) -> list[sqlite3.Row]:
        """Active assignments with id above ``after_id``, oldest first (only active ones are read)."""
        return self.query(
            "SELECT * FROM assignments INDEXED BY assignments_worker_active "
            "WHERE status = 'active' AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )

    def worker_active_assignments(self, worker: str) -> list[sqlite3.Row]:
        """``worker``'s active assignments, oldest first (through the partial index of active slots)."""
        return self.query("SELECT * FROM assignments INDEXED BY assignments_worker_active "
                          "WHERE worker = ? AND status = 'active' ORDER BY id", (worker,))

    def offered_slots(self, worker: str) -> list[sqlite3.Row]:
        """The slots offered back to ``worker`` alone (corrections waiting for their claim), oldest first."""
        return self.query("SELECT * FROM assignments INDEXED BY assignments_offered WHERE worker = ? "
                          "AND status = 'offered' ORDER BY id", (worker,))

    def workers_with_offered_slots(self) -> list[str]:
        """Every worker a correction waits for (through the partial index of offered slots)."""
        return [r[0] for r in self.query("SELECT DISTINCT worker FROM assignments INDEXED BY assignments_offered "
                                         "WHERE status = 'offered' ORDER BY worker")]

    def task_slots(self, task_id: int, statuses: Sequence[str] = ("active",)) -> list[sqlite3.Row]:
        """A task's assignments in these statuses, oldest first."""
        marks = ",".join("?" * len(statuses))
        return self.query(f"SELECT * FROM assignments WHERE task_id = ? AND status IN ({marks}) ORDER BY id",
                          (task_id, *statuses))

    def timer_decisions(self, task_id: int, round_: int) -> list[sqlite3.Row]:
        """The ``on_timer`` rules that acted on this task in round ``round_``: each event's ``id``,
        ``kind``, ``rule`` (the name it was shown by) and ``rule_key`` (the rule's identity across
        versions; ``None`` in an event written before Labelyard recorded it)."""
        return self.query(
            "SELECT id, kind, rule, json_extract(detail, '$.rule_key') AS rule_key FROM events "
            "WHERE task_id = ? AND rule IS NOT NULL AND json_extract(detail, '$.section') = 'on_timer' "
            "AND json_extract(detail, '$.round') = ? ORDER BY id",
            (task_id, round_),
        )

    def annotated(self, task_id: int, worker: str) -> bool:
        """Whether ``worker`` ever had an annotate or correct slot of this task, submitted or not (held,
        given up, taken back): an import adds no prior vote for them. Whether they *submitted* one
        is :meth:`voted`."""
        row = self.one(
            "SELECT 1 FROM assignments WHERE task_id = ? AND worker = ? AND stage IN ('annotate', 'correct') LIMIT 1",
            (task_id, worker),
        )
        return row is not None

    def voted(self, task_id: int, worker: str) -> bool:
        """Whether ``worker`` submitted an annotate or correct label for this task (a vote that counts)."""
        row = self.one("SELECT 1 FROM annotations WHERE task_id = ? AND worker = ? AND stage IN ('annotate', 'correct') "
                       "LIMIT 1", (task_id, worker))
        return row is not None

    def holds_slot(self, task_id: int, worker: str, round_: int) -> bool:
        """Whether ``worker`` has (or had) a slot of this task in this round."""
        row = self.one("SELECT 1 FROM assignments WHERE task_id = ? AND worker = ? AND round = ? LIMIT 1",
                       (task_id, worker, round_))
        return row is not None

    def set_worker_flagged(self, name: str, flagged: bool) -> None:
        self.conn.execute("UPDATE workers SET flagged = ? WHERE id = ?", (int(flagged), name))

    def set_worker_skills(self, name: str, skills: list[str]) -> None:
        self.conn.execute("UPDATE workers SET skills = ? WHERE id = ?", (dumps(sorted(set(skills))), name))

    # -- worker facts (indexed by worker) --------------------------------------------------
    def worker_submitted(self, worker: str) -> int:
        """How many submissions the worker made (a kept counter)."""
        row = self.one("SELECT submitted FROM workers WHERE id = ?", (worker,))
        return int(row[0]) if row else 0

    def worker_recent_durations(self, worker: str, limit: int) -> list[float]:
        """Seconds from claim to submission of the worker's latest ``limit`` submissions."""
        rows = self.query(
            "SELECT a.created_at - s.created_at FROM annotations AS a JOIN assignments AS s ON s.id = a.assignment_id "
            "WHERE a.worker = ? ORDER BY a.id DESC LIMIT ?",
            (worker, limit),
        )
        return [float(r[0]) for r in rows]

    def worker_statuses_before(self, worker: str, assignment_id: int, limit: int) -> list[str]:
        """Statuses of the worker's latest ``limit`` ended slots older than ``assignment_id``, newest
        first. Slots still open (``active``, or ``offered`` for a correction) are passed over: a slot
        claimed later, or held meanwhile, is no answer to whether the worker gave work back before.
        Read backwards from ``assignment_id`` on ``assignments_worker (worker, id)``; besides the
        ``limit`` rows it reads only the worker's open slots among them."""
        rows = self.query(
            "SELECT status FROM assignments WHERE worker = ? AND id < ? AND status NOT IN ('active', 'offered') "
            "ORDER BY id DESC LIMIT ?", (worker, assignment_id, limit))
        return [r[0] for r in rows]

    def worker_final_agreement(self, worker: str) -> tuple[int, int]:
        """``(votes on finished tasks, votes that give the final label)`` for a worker (gold left out):
        the sums kept on the worker row (``router.vote_agreement``), O(1) whatever their history."""
        row = self.one("SELECT final_votes, final_agreed FROM workers WHERE id = ?", (worker,))
        return (int(row[0]), int(row[1])) if row else (0, 0)

    # -- votes marked against final labels (router.vote_agreement) -------------------------
    def vote_marks(self, task_id: int) -> list[sqlite3.Row]:
        """A task's annotate/correct submissions, oldest first: ``id, worker, label, agrees`` (the
        vote's mark: 1 or 0 when it counts against the final label, else NULL)."""
        return self.query("SELECT id, worker, label, agrees FROM annotations WHERE task_id = ? "
                          "AND stage IN ('annotate', 'correct') ORDER BY id", (task_id,))

    def marked_votes(self) -> list[sqlite3.Row]:
        """Every marked vote with its task's final label: ``id, worker, label, agrees, final_label``."""
        return self.query("SELECT a.id, a.worker, a.label, a.agrees, t.final_label FROM annotations AS a "
                          "JOIN tasks AS t ON t.id = a.task_id WHERE a.agrees IS NOT NULL")

    def set_vote_marks(self, changes: Sequence[tuple[int, str, int | None, int | None]]) -> None:
        """Set votes' marks, ``(annotation id, worker, old mark, new mark)``, and move each worker's
        sums (``final_votes``, ``final_agreed``) by the difference."""
        if not changes:
            return
        self.conn.executemany("UPDATE annotations SET agrees = ? WHERE id = ?",
                              [(new, vote_id) for vote_id, _worker, _old, new in changes])
        moved: dict[str, list[int]] = {}
        for _vote, worker, old, new in changes:
            sums = moved.setdefault(worker, [0, 0])
            sums[0] += (new is not None) - (old is not None)
            sums[1] += (new or 0) - (old or 0)
        self.conn.executemany(
            "UPDATE workers SET final_votes = final_votes + ?, final_agreed = final_agreed + ? WHERE id = ?",
            [(votes, agreed, worker) for worker, (votes, agreed) in moved.items() if votes or agreed])

    # -- gold ------------------------------------------------------------------------------
    def task_by_external_id(self, external_id: str) -> sqlite3.Row | None:
        return self.one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE external_id = ?", (external_id,))

    def worker_latest_slot(self, worker: str) -> int:
        """The id of the newest slot the worker ever had (0 before their first): one step down the
        ``(worker, id)`` index, where counting their slots grew with their history under the claim's lock."""
        return int(self.one("SELECT max(id) FROM assignments WHERE worker = ?", (worker,))[0] or 0)

    def has_gold(self) -> bool:
        return self.one("SELECT 1 FROM gold LIMIT 1") is not None

    def gold_for(self, worker: str, queues: Sequence[str]) -> sqlite3.Row | None:
        """The oldest open gold task in ``queues`` that ``worker`` never had a slot of, nor wrote:
        the lead who added a question or changed it (its ``gold_added`` and ``gold_updated`` events)
        knows its answer, so it would measure nothing of them.

        Driven from the (small) gold table: ``CROSS JOIN`` fixes the join order; the events of a
        candidate are read by the ``events_task`` index.
        """
        if not queues:
            return None
        marks = ",".join("?" * len(queues))
        return self.one(
            f"SELECT t.id, t.external_id, t.stage, t.queue, t.round, t.data, t.category, t.pred_label, "
            f"t.pred_confidence FROM gold AS g CROSS JOIN tasks AS t ON t.id = g.task_id "
            f"WHERE t.status = 'open' AND t.is_gold = 1 AND t.queue IN ({marks}) AND NOT EXISTS ("
            f"SELECT 1 FROM assignments AS a WHERE a.task_id = t.id AND a.worker = ?) AND NOT EXISTS ("
            f"SELECT 1 FROM events AS e WHERE e.task_id = t.id AND e.kind IN ('gold_added', 'gold_updated') "
            f"AND e.actor = ?) ORDER BY g.task_id LIMIT 1",
            (*queues, worker, worker),
        )

    # -- agreement -------------------------------------------------------------------------
    def vote_rows(self, queue: str | None = None, latest: int | None = None) -> Iterator[sqlite3.Row]:
        """Every annotate/correct submission on non-gold tasks, by task then time: task, worker, label,
        queue of the slot, the task's status and final label. ``latest``: only the tasks of the latest
        that many submissions (in ``queue``, when given), with all their votes."""
        sql = ("SELECT a.task_id, a.worker, a.label, s.queue, t.status, t.final_label FROM annotations AS a "
               "JOIN assignments AS s ON s.id = a.assignment_id JOIN tasks AS t ON t.id = a.task_id "
               "WHERE a.stage IN ('annotate', 'correct') AND t.is_gold = 0")
        if queue is not None:
            sql += " AND s.queue = :queue"
        if latest is not None:
            sql += f" AND a.task_id IN ({_latest_voted_tasks(queue is not None)})"
        yield from self.conn.execute(sql + " ORDER BY a.task_id, a.id", {"queue": queue, "latest": latest})

    def open_gold_answers(self) -> list[sqlite3.Row]:
        """``id, external_id, label`` (the answer, JSON) of every open gold question, by id (read by
        ``apply``: the gold table holds the lead's gold files, not the project's tasks)."""
        return self.query("SELECT t.id, t.external_id, g.label FROM gold AS g CROSS JOIN tasks AS t "
                          "ON t.id = g.task_id WHERE t.status = 'open' ORDER BY g.task_id")

    def gold_answers(self) -> dict[str, tuple[int, int]]:
        """``{worker: (gold answered, gold correct)}`` for every worker who answered gold: the kept
        counters that ``worker.gold_*`` and weighted consensus read (scored by the label type's
        comparison at each submission, re-scored when a gold answer changes)."""
        rows = self.query("SELECT id, gold_answered, gold_correct FROM workers WHERE gold_answered > 0")
        return {r["id"]: (r["gold_answered"], r["gold_correct"]) for r in rows}

    def gold_answer_rows(self, task_ids: Sequence[int] | None) -> list[sqlite3.Row]:
        """Every scored gold answer of the workers who answered one of these gold tasks (``None``:
        every scored gold answer of everyone): ``worker, label, answer`` (the gold label), to score
        them again. The answers to a retired question (``gold retire``: its task ``invalid``) are
        not scored."""
        scored = ("SELECT a.worker, a.label, g.label AS answer FROM gold AS g CROSS JOIN annotations AS a "
                  "ON a.task_id = g.task_id CROSS JOIN tasks AS t ON t.id = g.task_id "
                  "WHERE a.label IS NOT NULL AND t.status != 'invalid'")
        if task_ids is None:
            return self.query(scored + " ORDER BY a.worker, a.id")
        marks = ",".join("?" * len(task_ids))
        return self.query(
            scored + f" AND a.worker IN (SELECT worker FROM annotations WHERE task_id IN ({marks})) "
            "ORDER BY a.worker, a.id",
            list(task_ids),
        ) if task_ids else []

    def gold_answerers(self, task_ids: Sequence[int] | None) -> list[str]:
        """Who answered one of these gold tasks (``None``: every worker with gold counters), so that
        a worker whose answers are all to retired questions is scored again to none."""
        if task_ids is None:
            return [r[0] for r in self.query("SELECT id FROM workers WHERE gold_answered > 0")]
        marks = ",".join("?" * len(task_ids))
        return [r[0] for r in self.query(
            f"SELECT DISTINCT worker FROM annotations WHERE task_id IN ({marks}) AND label IS NOT NULL",
            list(task_ids))] if task_ids else []

    def gold_questions(self, task_ids: Sequence[int] | None = None) -> list[sqlite3.Row]:
        """``id, external_id, queue, status, reason, answer`` (JSON) of every gold question (or of
        these), by id: what ``gold list`` and a lead's ``show`` give."""
        sql = ("SELECT t.id, t.external_id, t.queue, t.status, t.reason, g.label AS answer FROM gold AS g "
               "CROSS JOIN tasks AS t ON t.id = g.task_id")
        if task_ids is None:
            return self.query(sql + " ORDER BY g.task_id")
        marks = ",".join("?" * len(task_ids))
        return self.query(sql + f" WHERE g.task_id IN ({marks}) ORDER BY g.task_id", list(task_ids)) if task_ids else []

    def gold_question_answers(self, task_ids: Sequence[int] | None = None) -> list[sqlite3.Row]:
        """``task_id, annotation, worker, label`` of every answer given to a gold question (or to
        these), by task then time: the answers its scoring reads (:meth:`gold_answer_rows`)."""
        sql = ("SELECT a.task_id, a.id AS annotation, a.worker, a.label FROM gold AS g CROSS JOIN annotations AS a "
               "ON a.task_id = g.task_id WHERE a.label IS NOT NULL")
        if task_ids is None:
            return self.query(sql + " ORDER BY a.task_id, a.id")
        marks = ",".join("?" * len(task_ids))
        return self.query(sql + f" AND g.task_id IN ({marks}) ORDER BY a.task_id, a.id",
                          list(task_ids)) if task_ids else []

    def set_gold_counters(self, counts: dict[str, tuple[int, int]]) -> None:
        """Set workers' ``(gold answered, gold correct)`` counters."""
        self.conn.executemany("UPDATE workers SET gold_answered = ?, gold_correct = ? WHERE id = ?",
                              [(answered, correct, worker) for worker, (answered, correct) in counts.items()])

    # -- rejects and cursors ---------------------------------------------------------------
    def add_rejects(self, rows: Iterable[tuple[str, int | None, str, str | None, float]]) -> None:
        """Quarantine bad input rows: ``(source, line, reason, raw, at)``; the same line twice is kept
        once, and of a long ``raw`` its start (:func:`kept_raw`)."""
        self.conn.executemany(
            "INSERT INTO rejects (source, line, reason, raw, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (source, line, row_key) DO UPDATE SET reason = excluded.reason, raw = excluded.raw, "
            "at = excluded.at",
            ((source, line, reason, kept_raw(raw), at) for source, line, reason, raw, at in rows),
        )

    def add_keyed_rejects(self, rows: Iterable[tuple[str, int | None, str, str | None, float, str]]) -> None:
        """Quarantine a source plugin's bad rows: ``(source, line, reason, raw, at, row_key)``; rows
        on one line are told apart by their key, and a row given again (same key) is kept once."""
        self.conn.executemany(
            "INSERT INTO rejects (source, line, reason, raw, at, row_key) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source, line, row_key) DO UPDATE SET reason = excluded.reason, raw = excluded.raw, "
            "at = excluded.at",
            ((source, line, reason, kept_raw(raw), at, key) for source, line, reason, raw, at, key in rows),
        )

    def delete_rejects(self, source: str | None = None, lines: tuple[int, int | None] | None = None) -> int:
        """Delete the rejects of ``source`` (of every source when ``None``), only on lines
        ``lines[0]..lines[1]`` when given (from ``lines[0]`` on when ``lines[1]`` is ``None``);
        returns how many."""
        # Conditions written out only when given, so the (source, line) index serves them.
        where, params = ["1"], []
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if lines is not None and lines[1] is None:
            where.append("line >= ?")
            params.append(lines[0])
        elif lines is not None:
            where.append("line BETWEEN ? AND ?")
            params += lines
        return self.conn.execute(f"DELETE FROM rejects WHERE {' AND '.join(where)}", params).rowcount

    def rejects(self, limit: int = 100, source: str | None = None) -> list[sqlite3.Row]:
        return list(self.iter_rejects(limit, source))

    def iter_rejects(self, limit: int = 100, source: str | None = None) -> Iterator[sqlite3.Row]:
        """The newest ``limit`` rejects (all of them when ``limit`` is 0) of ``source`` (through its
        index) when given, newest first, read as they are used: listing a million rejects holds one
        row at a time."""
        limit = limit or -1  # SQLite: a negative LIMIT is none
        # an older version kept a raw row whole (200 MB): listed as cut as it would be kept now
        columns = f"id, source, line, reason, {_KEPT_RAW_SQL} AS raw, at"
        if source is None:
            return iter(self.conn.execute(f"SELECT {columns} FROM rejects ORDER BY id DESC LIMIT ?", (limit,)))
        return iter(self.conn.execute(f"SELECT {columns} FROM rejects WHERE source = ? ORDER BY id DESC LIMIT ?",
                                      (source, limit)))

    # -- reading for status and export -----------------------------------------------------
    def status_counts(self) -> dict[str, int]:
        """Tasks per status, gold questions left out (:meth:`gold_count` counts them)."""
        rows = self.query("SELECT status, sum(n) AS n FROM task_counts WHERE is_gold = 0 GROUP BY status "
                          "HAVING sum(n) > 0")  # the kept counters: no scan of the tasks
        return {r["status"]: r["n"] for r in rows}

    def gold_count(self) -> int:
        """How many gold questions there are (each has one ``gold`` row)."""
        return int(self.one("SELECT count(*) FROM gold")[0])

    def gold_status_counts(self) -> dict[str, int]:
        """Gold questions per status (``held``: ``apply`` held them; ``invalid``: retired), from the counters."""
        rows = self.query("SELECT status, sum(n) AS n FROM task_counts WHERE is_gold = 1 GROUP BY status "
                          "HAVING sum(n) > 0")
        return {r["status"]: r["n"] for r in rows}

    def open_count_by_queue(self, *, gold: bool = False) -> dict[str, int]:
        """Open tasks per queue; with ``gold``, the gold questions instead."""
        rows = self.query("SELECT queue, sum(n) AS n FROM task_counts WHERE status = 'open' AND queue != '' "
                          "AND is_gold = ? GROUP BY queue HAVING sum(n) > 0", (int(gold),))
        return {r["queue"]: r["n"] for r in rows}

    def corrections_elsewhere(self) -> dict[str, list[int]]:
        """Per queue, the open tasks with a correction of their round waiting (offered) or being
        made (active) there while the task's own ``queue`` names another (a ``return`` whose votes
        were cast in several queues): tasks the kept counters count in that other queue.

        Through the partial indexes of offered and of active slots: the cost follows the slots
        held or waiting, never the tasks table."""
        out: dict[str, set[int]] = {}
        for status, index in (("offered", "assignments_offered"), ("active", "assignments_worker_active")):
            for queue, task_id in self.conn.execute(
                f"SELECT a.queue, a.task_id FROM assignments AS a INDEXED BY {index} "
                "JOIN tasks AS t ON t.id = a.task_id "
                f"WHERE a.status = '{status}' AND a.stage = 'correct' AND t.status = 'open' "
                "AND t.stage = 'correct' AND a.round = t.round AND t.queue IS NOT a.queue"):
                out.setdefault(queue, set()).add(task_id)
        return {q: sorted(ids) for q, ids in out.items()}

    def open_task_ids_in_queues(self, queues: list[str]) -> list[int]:
        """The ids of the open tasks (not gold questions) of ``queues``, in order (ids only: a dropped
        queue may hold many tasks)."""
        if not queues:
            return []
        marks = ", ".join("?" * len(queues))
        return [r[0] for r in self.conn.execute(
            f"SELECT id FROM tasks WHERE status = 'open' AND is_gold = 0 AND queue IN ({marks}) ORDER BY id",
            tuple(queues))]

    def reviews_with_votes_in(self, queues: Sequence[str]) -> dict[str, int]:
        """Per queue of ``queues``: the open tasks (not gold questions) in a review or escalated stage
        with a counted vote (an annotator's latest) cast there, where a ``return`` would offer that
        annotator's correction.

        The kept counters name the queues where such tasks wait; only those queues' open tasks are
        read, by the ``(status, queue)`` index, each with its votes by ``annotations_task``: the
        cost follows the tasks waiting for review, not the tasks table.
        """
        if not queues:
            return {}
        waiting_in = [r[0] for r in self.query(
            "SELECT DISTINCT queue FROM task_counts WHERE status = 'open' AND stage IN ('review', 'escalated') "
            "AND is_gold = 0 AND n > 0")]
        marks = ", ".join("?" * len(queues))
        out: dict[str, int] = {}
        for queue in waiting_in:
            for voted_in, n in self.conn.execute(
                f"SELECT s.queue, count(DISTINCT t.id) FROM tasks AS t INDEXED BY tasks_status_queue "
                f"JOIN annotations AS a ON a.task_id = t.id AND a.stage IN ('annotate', 'correct') "
                f"AND a.id = (SELECT max(b.id) FROM annotations AS b WHERE b.task_id = t.id AND b.worker = a.worker "
                f"AND b.stage IN ('annotate', 'correct')) "
                f"JOIN assignments AS s ON s.id = a.assignment_id "
                f"WHERE t.status = 'open' AND t.queue = ? AND t.stage IN ('review', 'escalated') AND t.is_gold = 0 "
                f"AND s.queue IN ({marks}) GROUP BY s.queue",
                (queue, *queues)):
                out[voted_in] = out.get(voted_in, 0) + n
        return out

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Per queue: open (non-gold) tasks, those ``waiting`` for a claim, and ``active`` slots."""
        out: dict[str, dict[str, int]] = {}
        for r in self.query(  # the kept counters: no scan of the open tasks
            "SELECT queue, sum(n) AS n, sum(CASE WHEN claimable THEN n ELSE 0 END) AS claimable FROM task_counts "
            "WHERE status = 'open' AND queue != '' AND is_gold = 0 GROUP BY queue HAVING sum(n) > 0"
        ):
            out.setdefault(r["queue"], {})["waiting"] = r["claimable"] or 0
            out[r["queue"]]["open"] = r["n"]
        for queue, n in self.active_by_queue().items():
            out.setdefault(queue, {})["active"] = n
        return out

    def stall_candidates(self, queue: str, limit: int) -> list[sqlite3.Row]:
        """The open tasks of ``queue`` (gold questions left out) where a task nobody may take shows:
        the ``limit`` a claim hands out first (a stalled one stays at the head) and the ``limit``
        longest in their stage (a stalled one only grows older), in that order, each task once.
        Both are read through their index (the claim's, ``tasks_open_age``): the cost is the same
        at 1M tasks."""
        first = self.query(f"SELECT {TASK_COLUMNS} FROM tasks INDEXED BY tasks_claimable WHERE status = 'open' "
                           "AND free_slots > 0 AND queue = ? AND is_gold = 0 ORDER BY priority DESC, id LIMIT ?",
                           (queue, limit))
        oldest = self.query(f"SELECT {TASK_COLUMNS} FROM tasks INDEXED BY tasks_open_age WHERE status = 'open' "
                            "AND is_gold = 0 AND queue = ? ORDER BY stage_at, id LIMIT ?", (queue, limit))
        rows = {t["id"]: t for t in first}
        for t in oldest:
            rows.setdefault(t["id"], t)
        return list(rows.values())

    def first_held(self, limit: int) -> list[sqlite3.Row]:
        """The ``limit`` held tasks (gold questions left out) with the lowest ids: per queue the kept
        counters name, through the ``(status, queue)`` index, so never more than ``limit`` rows a queue."""
        queues = [r[0] or None for r in self.conn.execute(
            "SELECT queue FROM task_counts WHERE status = 'held' AND is_gold = 0 GROUP BY queue HAVING sum(n) > 0")]
        rows: list[sqlite3.Row] = []
        for queue in queues:
            rows += self.query(f"SELECT {TASK_COLUMNS} FROM tasks INDEXED BY tasks_status_queue WHERE status = 'held' "
                               "AND queue IS ? AND is_gold = 0 ORDER BY id LIMIT ?", (queue, limit))
        return sorted(rows, key=lambda t: t["id"])[:limit]

    def queue_stats(self, queue: str, now: float) -> dict[str, Any]:
        """``queue.*``'s counts, gold questions left out (as ``status`` leaves them): ``waiting`` from the
        kept counters, ``active`` through the partial index of active slots, ``oldest_age`` from the
        first claimable entry of ``tasks_open_age``. None of them reads the queue's open tasks."""
        waiting = self.one("SELECT coalesce(sum(n), 0) FROM task_counts WHERE status = 'open' AND queue = ? "
                           "AND claimable = 1 AND is_gold = 0", (queue,))[0]
        active = self.one("SELECT count(*) FROM assignments AS a INDEXED BY assignments_worker_active "
                          "JOIN tasks AS t ON t.id = a.task_id "
                          "WHERE a.status = 'active' AND a.queue = ? AND t.is_gold = 0", (queue,))[0]
        since = self.oldest_waiting_since(queue)
        return {"name": queue, "waiting": int(waiting), "active": active,
                "oldest_age": None if since is None else now - since}

    def oldest_waiting_since(self, queue: str) -> float | None:
        """When the oldest claimable non-gold task of ``queue`` entered its stage (walks
        ``tasks_open_age`` from its start), or ``None`` when none waits."""
        row = self.one("SELECT stage_at FROM tasks WHERE status = 'open' AND is_gold = 0 AND queue = ? "
                       "AND free_slots > 0 ORDER BY stage_at LIMIT 1", (queue,))
        return None if row is None else row[0]

    def final_tasks(self, include_gold: bool = False) -> Iterator[sqlite3.Row]:
        sql = f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'done'"
        if not include_gold:
            sql += " AND is_gold = 0"
        yield from self.conn.execute(sql + " ORDER BY id")

    def integrity_ok(self) -> bool:
        return self.one("PRAGMA integrity_check")[0] == "ok"

    # -- plugins: cursors, sink deliveries, automatic reviews, outbox, runs ----------------
    def cursor(self, name: str) -> Any:
        """A plugin's stored progress (any JSON value), or ``None`` the first time."""
        row = self.one("SELECT value FROM cursors WHERE name = ?", (name,))
        return None if row is None else loads(row[0])

    def has_cursor(self, name: str) -> bool:
        return self.one("SELECT 1 FROM cursors WHERE name = ?", (name,)) is not None

    def reserve_cursor(self, name: str, value: Any, at: float) -> bool:
        """Create cursor ``name`` unless it exists (one write, so two processes never both get it):
        ``True`` when this call created it."""
        with self.transaction() as conn:
            return conn.execute("INSERT OR IGNORE INTO cursors (name, value, updated_at) VALUES (?, ?, ?)",
                                (name, dumps(value), at)).rowcount == 1

    def set_cursor(self, name: str, value: Any, at: float) -> None:
        self.conn.execute(
            "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (name, dumps(value), at),
        )

    def move_entry_state(self, section: str, old: str, new: str) -> dict[str, int] | None:
        """Move what the workflow entry ``old`` of ``section`` (``sources``, ``sinks``, ``notify``)
        has stored to the identity ``new``: its cursor (or sink state), a sink's deliveries, a notify
        entry's outbox. Returns what moved (``cursor`` 0/1, ``deliveries``, ``outbox``, ``waiting``),
        ``None`` when ``new`` already has progress of its own (nothing is moved) or ``old`` has none.
        The caller holds the transaction."""
        prefix = ENTRY_CURSORS[section]
        if self.has_cursor(f"{prefix}:{new}") or self._entry_rows(section, new):
            return None
        moved = {"cursor": self.conn.execute("UPDATE cursors SET name = ? WHERE name = ?",
                                             (f"{prefix}:{new}", f"{prefix}:{old}")).rowcount}
        if section == "sinks":
            moved["deliveries"] = self.conn.execute("UPDATE sink_deliveries SET sink = ? WHERE sink = ?",
                                                    (new, old)).rowcount
        elif section == "notify":
            moved["waiting"] = self.outbox_pending().get(old, 0)
            moved["outbox"] = self.conn.execute("UPDATE outbox SET target = ? WHERE target = ?", (new, old)).rowcount
        return moved if any(moved.values()) else None

    def _entry_rows(self, section: str, key: str) -> bool:
        """Whether the entry ``key`` has deliveries (a sink) or notifications (notify) recorded."""
        if section == "sinks":
            return self.one("SELECT 1 FROM sink_deliveries WHERE sink = ? LIMIT 1", (key,)) is not None
        if section == "notify":
            return self.one("SELECT 1 FROM outbox WHERE target = ? LIMIT 1", (key,)) is not None
        return False

    def undelivered_final_tasks(self, sink: str, after_id: int, limit: int) -> list[sqlite3.Row]:
        """Done, non-gold tasks with id above ``after_id`` that ``sink`` has not received as they are now."""
        # A done task has no queue, so its entries of the (status, queue) index are in rowid order from
        # ``after_id``: each batch reads on from there. Sorting every done task at each batch made a
        # sink's backlog quadratic (100,000 tasks: 8.4 s of queries, now 0.12 s). The second arm, for a
        # done task with a queue should one ever exist, is an empty range.
        undelivered = ("AND NOT EXISTS (SELECT 1 FROM sink_deliveries AS d WHERE d.sink = ? AND d.task_id = t.id "
                       "AND d.final_at IS t.final_at)")
        return self.query(
            f"SELECT {TASK_COLUMNS} FROM tasks AS t WHERE status = 'done' AND queue IS NULL AND is_gold = 0 "
            f"AND id > ? {undelivered} UNION ALL "
            f"SELECT {TASK_COLUMNS} FROM tasks AS t WHERE status = 'done' AND queue IS NOT NULL AND is_gold = 0 "
            f"AND id > ? {undelivered} ORDER BY id LIMIT ?",
            (after_id, sink, after_id, sink, limit),
        )

    def record_deliveries(self, sink: str, rows: Iterable[tuple[int, float | None]], at: float) -> None:
        """Remember that ``sink`` received these ``(task_id, final_at)``."""
        self.conn.executemany(
            "INSERT INTO sink_deliveries (sink, task_id, final_at, delivered_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sink, task_id) DO UPDATE SET final_at = excluded.final_at, delivered_at = excluded.delivered_at",
            [(sink, task_id, final_at, at) for task_id, final_at in rows],
        )

    def review_candidates(self, reviewer: str, queues: Sequence[str] | None, after_id: int,
                          limit: int) -> list[sqlite3.Row]:
        """Open tasks in a review stage that nobody holds a slot of and ``reviewer`` has not judged this round."""
        sql = (f"SELECT {TASK_COLUMNS} FROM tasks AS t INDEXED BY tasks_in_review "
               "WHERE status = 'open' AND stage = 'review' AND id > ? "
               "AND NOT EXISTS (SELECT 1 FROM assignments AS a WHERE a.task_id = t.id AND a.status = 'active') "
               "AND NOT EXISTS (SELECT 1 FROM auto_reviews AS r WHERE r.task_id = t.id AND r.round = t.round "
               "AND r.reviewer = ?)")
        params: list[Any] = [after_id, reviewer]
        if queues:
            sql += f" AND queue IN ({','.join('?' * len(queues))})"
            params += list(queues)
        return self.query(sql + " ORDER BY id LIMIT ?", [*params, limit])

    def add_auto_review(self, task_id: int, round_: int, reviewer: str, verdict: str, reason: str | None,
                        at: float) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO auto_reviews (task_id, round, reviewer, verdict, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
            (task_id, round_, reviewer, verdict, reason, at),
        )

    def ensure_worker(self, name: str, roles: list[str], at: float) -> None:
        """Add a worker if it is missing (automatic reviewers), leaving an existing one as it is."""
        self.conn.execute(
            "INSERT INTO workers (id, roles, skills, created_at) VALUES (?, ?, '[]', ?) ON CONFLICT (id) DO NOTHING",
            (name, dumps(roles), at),
        )

    def events_after(self, after_id: int, limit: int) -> list[sqlite3.Row]:
        """Events with id above ``after_id``, oldest first, with their task's current state (``t_*``)."""
        return self.query(
            "SELECT e.*, t.external_id AS t_external_id, t.status AS t_status, t.stage AS t_stage, "
            "t.queue AS t_queue, t.category AS t_category, t.final_label AS t_final_label, "
            "t.final_by AS t_final_by FROM events AS e LEFT JOIN tasks AS t ON t.id = e.task_id "
            "WHERE e.id > ? ORDER BY e.id LIMIT ?",
            (after_id, limit),
        )

    def task_events_through(self, task_ids: Sequence[int], last_id: int, kinds: Sequence[str]) -> list[sqlite3.Row]:
        """The events of ``kinds`` of these tasks up to event ``last_id``, oldest first: ``id, task_id,
        kind, action, detail`` (by the ``events_task`` index, a page of tasks at a time)."""
        found: list[sqlite3.Row] = []
        ids = sorted(set(task_ids))
        marks = ",".join("?" * len(kinds))
        for start in range(0, len(ids), 500):
            page = ids[start:start + 500]
            found += self.query(
                f"SELECT id, task_id, kind, action, detail FROM events WHERE task_id IN ({','.join('?' * len(page))}) "
                f"AND id <= ? AND kind IN ({marks})", (*page, last_id, *kinds))
        found.sort(key=lambda row: row["id"])
        return found

    def last_event_id(self, kind: str | None = None) -> int:
        """The newest event's id (of ``kind`` if given), 0 when there is none."""
        if kind is None:
            row = self.one("SELECT max(id) FROM events")
        else:
            row = self.one("SELECT max(id) FROM events WHERE kind = ?", (kind,))
        return int(row[0] or 0)

    def workflow_versions(self) -> list[sqlite3.Row]:
        """Every applied workflow version, oldest first: ``id, name, version, spec``."""
        return self.query("SELECT id, name, version, spec FROM workflows ORDER BY id")

    def applied_events(self) -> list[sqlite3.Row]:
        """The ``workflow_applied`` events (``id, detail``), oldest first (by their partial index, however
        many other events there are)."""
        return self.query("SELECT id, detail FROM events WHERE kind = 'workflow_applied' ORDER BY id")

    def drop_outbox(self, target: str) -> int:
        """Give up a notify entry's undelivered notifications (it left the workflow); returns how many."""
        return self.conn.execute(
            "UPDATE outbox SET status = 'dropped' WHERE target = ? AND status = 'pending'", (target,)
        ).rowcount

    def enqueue_outbox(self, rows: Iterable[tuple[str, int, str, str, float]]) -> None:
        """Add ``(target, event_id, event, body, at)`` notifications; one already queued is left alone."""
        self.conn.executemany(
            "INSERT INTO outbox (target, event_id, event, body, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (target, event_id, event) DO NOTHING",
            [(target, event_id, event, body, at, at) for target, event_id, event, body, at in rows],
        )

    def outbox_next(self, target: str, limit: int) -> list[sqlite3.Row]:
        """The oldest undelivered notifications of a notify entry (due or not: they go out in order)."""
        return self.query(
            "SELECT * FROM outbox WHERE target = ? AND status = 'pending' ORDER BY id LIMIT ?", (target, limit)
        )

    def outbox_delivered(self, outbox_id: int, at: float) -> None:
        self.conn.execute(
            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ?, last_error = NULL "
            "WHERE id = ?",
            (at, outbox_id),
        )

    def outbox_failed(self, outbox_id: int, error: str, next_at: float) -> None:
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
            (error, next_at, outbox_id),
        )

    def outbox_pending(self) -> dict[str, int]:
        """Undelivered notifications per notify entry."""
        rows = self.query("SELECT target, count(*) AS n FROM outbox WHERE status = 'pending' GROUP BY target")
        return {r["target"]: r["n"] for r in rows}

    def start_plugin_run(self, pid: int, at: float) -> int:
        cur = self.conn.execute("INSERT INTO plugin_runs (pid, started_at) VALUES (?, ?)", (pid, at))
        return int(cur.lastrowid)

    def plugin_run_at(self, run_id: int, step: str, entry: str | None, at: float) -> None:
        """Record where the unfinished run ``run_id`` is (its summary until it finishes): the step and
        entry it began at ``at``, so a run stuck in one (a source that never stops) can be named."""
        self.conn.execute("UPDATE plugin_runs SET summary = ? WHERE id = ? AND finished_at IS NULL",
                          (dumps({"in_progress": {"step": step, "entry": entry, "since": at}}), run_id))

    def finish_plugin_run(self, run_id: int, at: float, ok: bool, summary: dict, errors: list) -> None:
        self.conn.execute(
            "UPDATE plugin_runs SET finished_at = ?, ok = ?, summary = ?, errors = ? WHERE id = ?",
            (at, int(ok), dumps(summary), dumps(errors), run_id),
        )

    def last_plugin_run(self) -> sqlite3.Row | None:
        return self.one("SELECT * FROM plugin_runs ORDER BY id DESC LIMIT 1")

    # -- read-only views for the TUI (router.queries) ---------------------------------------
    TASK_LIST_COLUMNS = (
        "t.id, t.external_id, t.status, t.stage, t.queue, t.needed, t.free_slots, t.priority, t.category, "
        "t.pred_label, t.pred_confidence, t.final_label, t.final_by, t.reason, t.stage_at, t.updated_at, "
        "t.created_at, t.round, (SELECT json_group_array(a.worker) FROM assignments AS a "
        "WHERE a.task_id = t.id AND a.status = 'active') AS holders"  # JSON: a name may hold a comma
    )
    TASK_ORDERS = {"id": None, "priority": "t.priority", "age": "t.stage_at", "updated": "t.updated_at"}

    def data_version(self) -> int:
        """Changes whenever another connection commits (``PRAGMA data_version``): the TUI's cheap poll."""
        return int(self.one("PRAGMA data_version")[0])

    def change_marker(self) -> tuple[Any, ...]:
        """The newest event, the rejects (newest id, how many) and the newest plugin run (id, when it
        finished): equal on any two connections until someone writes one of them. Rejected input rows
        and `labelyard run`'s plugin runs are written without an event."""
        row = self.one("SELECT (SELECT max(id) FROM events), (SELECT max(id) FROM rejects), "
                       "(SELECT count(*) FROM rejects), (SELECT max(id) FROM plugin_runs), "
                       "(SELECT finished_at FROM plugin_runs ORDER BY id DESC LIMIT 1)")
        return tuple(row)

    def task_count_rows(self) -> list[sqlite3.Row]:
        """The trigger-kept counters of ``m004``: tasks per (status, queue, stage, claimable, is_gold)."""
        return self.query("SELECT status, queue, stage, claimable, is_gold, n FROM task_counts WHERE n != 0")

    def rule_count_rows(self) -> list[sqlite3.Row]:
        """How often each rule decided, per section and rule identity (``rule_key``: the key its events
        carry, else its name), with the name it was last shown by (trigger-kept)."""
        return self.query("SELECT section, rule_key, rule, n, last_at FROM rule_counts ORDER BY section, n DESC")

    def activity_rows(self, since_hour: int) -> list[sqlite3.Row]:
        """Events per hour (created, submitted per worker, final) from ``since_hour`` on (trigger-kept)."""
        return self.query("SELECT hour, kind, actor, n FROM activity WHERE hour >= ? ORDER BY hour", (since_hour,))

    def oldest_open(self, queue: str) -> float | None:
        """``stage_at`` of the queue's oldest open (non-gold) task, by the ``tasks_open_age`` index."""
        row = self.one("SELECT min(stage_at) FROM tasks INDEXED BY tasks_open_age "
                       "WHERE queue = ? AND status = 'open' AND is_gold = 0", (queue,))
        return None if row[0] is None else float(row[0])

    def open_older_than(self, queue: str, before: float, cap: int) -> int:
        """How many open tasks of ``queue`` entered their stage before ``before`` (at most ``cap``)."""
        row = self.one("SELECT count(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_open_age "
                       "WHERE queue = ? AND status = 'open' AND is_gold = 0 AND stage_at < ? LIMIT ?)",
                       (queue, before, cap))
        return int(row[0])

    def reject_count(self, source: str | None = None) -> int:
        """How many rejects there are (of ``source``, through its index, when given)."""
        if source is None:
            return int(self.one("SELECT count(*) FROM rejects")[0])
        return int(self.one("SELECT count(*) FROM rejects WHERE source = ?", (source,))[0])

    _search_ready = False  # the search's SQL functions are registered on this connection (at its first search)

    # Plain text: ASCII, and for JSON no `\u` or `\/` escape (the store writes `\u` for control characters
    # only). There Unicode case folding is ASCII's lower case, which is what `LIKE` ignores, and SQLite's
    # JSON functions read the values Python's json module reads; on other text Python decides.
    _ASCII = "length({0}) = length(CAST({0} AS BLOB))"
    _PLAIN_DATA = _ASCII.format("t.data") + " AND t.data NOT GLOB '*\\[u/]*'"

    def _text_search(self, text: str) -> tuple[str, list[Any]]:
        """The SQL test (and its parameters) of :mod:`router.task_search`: ``text``, case-folded, in the
        external id, the category or a value of the data; ``text`` as digits also names a task id.
        One ``CASE``, which SQLite evaluates lazily (``AND`` and ``OR`` in a selected column it does
        not; in a ``WHEN`` condition it does): the id first, then ``LIKE`` on each column; on plain
        data that ``LIKE`` lets through, a needle that cannot be part of a number, ``true`` or
        ``false`` is looked for in the string values by ``json_tree``. The Python functions read
        only what SQL cannot decide: text beyond ASCII or with other escapes, a needle that may be in
        a number (``4.5``), and data that is not JSON."""
        from .task_search import contains, fold, json_form, matches, strings_only

        if not self._search_ready:
            self.conn.create_function("labelyard_search", 3, matches, deterministic=True)
            self.conn.create_function("labelyard_contains", 2, contains, deterministic=True)
            self._search_ready = True
        needle = fold(text)
        number = _task_number(text)  # only ASCII digits in range name an id ("²", "١٢", 20 digits do not)
        like = _like(needle)
        python = "labelyard_search(NULL, t.data, ?)"
        sql = ["CASE WHEN t.id = ? THEN 1"]
        params: list[Any] = [-1 if number is None else number]
        for column in ("t.external_id", "t.category"):
            sql.append(f"WHEN {column} LIKE ? ESCAPE '\\' THEN 1 "
                       f"WHEN NOT ({self._ASCII.format(column)}) AND labelyard_contains({column}, ?) THEN 1")
            params += [like, needle]
        if not needle.isascii():  # plain text cannot hold it
            sql.append(f"WHEN {self._PLAIN_DATA} THEN 0 ELSE {python} END")
            return " ".join(sql), [*params, needle]
        if strings_only(needle):
            exact = (f"CASE WHEN json_valid(t.data) THEN EXISTS (SELECT 1 FROM json_tree(t.data) AS j "
                     f"WHERE j.type = 'text' AND j.atom LIKE ? ESCAPE '\\') ELSE {python} END")
            exact_params = [like, needle]
        else:
            exact, exact_params = python, [needle]
        sql.append(f"WHEN NOT ({self._PLAIN_DATA}) THEN {python} "
                   f"WHEN t.data LIKE ? ESCAPE '\\' THEN {exact} ELSE 0 END")
        return " ".join(sql), [*params, needle, _like(json_form(needle)), *exact_params]

    LIST_INDEXES = {"t.priority": "tasks_list_priority", "t.stage_at": "tasks_list_age",
                    "t.updated_at": "tasks_list_updated"}
    """The index of each order by a column (migration m014): (value, rowid), the list's keyset."""

    def task_page(self, *, status: str | None = None, queue: str | None = None, stage: str | None = None,
                  worker: str | None = None, text: str | None = None, order: str = "id", descending: bool = True,
                  after: tuple[Any, int] | None = None, limit: int = 50) -> list[sqlite3.Row]:
        """One page of non-gold tasks, filtered and sorted, after the keyset ``after`` = ``(sort value, id)``
        of the previous page's last row (``None``: the first page). Never ``OFFSET``.

        ``queue=""`` means tasks without a queue. ``text`` matches the id (only when it is ASCII digits
        in SQLite's range), or is a case-folded substring of the external id, of the category or of a
        value in the task's data (:mod:`router.task_search`); it is bound as a parameter, never spliced
        into SQL, and read until ``limit`` tasks match (:meth:`task_search` reads a bounded stretch).
        Ordered by id with no queue filter, the walk goes down the rowid and stops after ``limit``
        matches; with a status and a queue it reads the ``(status, queue)`` index, whose entries are in
        rowid order. Ordered by a column, it walks that column's index (:attr:`LIST_INDEXES`), unless
        the filter keeps so few tasks (by the kept counters) that sorting them costs less.
        """
        source, where, params, parts = self._task_list_sql(status, queue, stage, worker, text, order, descending,
                                                           after)
        rows: list[sqlite3.Row] = []
        for keyset, keyset_params, sort in parts:
            rows += self.query(f"SELECT {self.TASK_LIST_COLUMNS} FROM {source} WHERE {where} AND {keyset} "
                               f"ORDER BY {sort} LIMIT ?", [*params, *keyset_params, limit - len(rows)])
            if len(rows) >= limit:
                break
        return rows

    def task_search(self, *, status: str | None = None, queue: str | None = None, stage: str | None = None,
                    worker: str | None = None, text: str, order: str = "id", descending: bool = True,
                    after: tuple[Any, int] | None = None, rows: int, want: int
                    ) -> tuple[list[tuple[Any, int]], int | None, tuple[Any, int] | None]:
        """A bounded stretch of a search: the first ``rows`` tasks the filter *without* its ``text``
        lists after ``after``, in the list's order, read until ``want`` of them match ``text`` (as in
        :meth:`task_page`). Returns the matches' keys ``(sort value, id)``, then how many tasks were
        read and the key of the last one: ``None`` and the ``want``-th match's key when the stretch
        stopped there, the number read and ``None`` when the list ended within it. Per keyset part,
        one statement walks the stretch and returns only the matches (the walk stops at the
        ``want``-th); when there are fewer, a second one finds the stretch's last task by ``OFFSET``
        (no text test), so at most ``rows`` tasks are read, however many the project holds."""
        column = self._order_column(order)
        source, where, params, parts = self._task_list_sql(status, queue, stage, worker, None, order, descending,
                                                           after)
        test, test_params = self._text_search(text)
        value = "NULL" if column is None else column
        hits: list[tuple[Any, int]] = []
        read = 0
        for keyset, keyset_params, sort in parts:
            left = rows - read
            stretch = f"FROM {source} WHERE {where} AND {keyset} ORDER BY {sort}"
            cursor = self.conn.execute(f"SELECT id, v FROM (SELECT t.id AS id, {value} AS v, {test} AS hit "
                                       f"{stretch} LIMIT ?) WHERE hit", [*test_params, *params, *keyset_params, left])
            try:
                for task_id, sort_value in cursor:
                    hits.append((sort_value, task_id))
                    if len(hits) >= want:
                        return hits, None, hits[-1]
            finally:
                cursor.close()
            last = self.one(f"SELECT t.id, {value} {stretch} LIMIT 1 OFFSET ?", [*params, *keyset_params, left - 1])
            if last is not None:
                return hits, rows, (last[1], last[0])
            read += int(self.one(f"SELECT count(*) FROM (SELECT 1 {stretch} LIMIT ?)",
                                 [*params, *keyset_params, left])[0])  # the part ended within the stretch
        return hits, read, None

    def task_rows(self, ids: list[int]) -> list[sqlite3.Row]:
        """The task list's rows of the tasks ``ids``, in that order (those that exist)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        found = {r["id"]: r for r in self.query(f"SELECT {self.TASK_LIST_COLUMNS} FROM tasks AS t "
                                                f"WHERE t.id IN ({marks})", ids)}
        return [found[i] for i in ids if i in found]

    def task_count_after(self, *, status: str | None = None, queue: str | None = None, stage: str | None = None,
                         worker: str | None = None, text: str | None = None, order: str = "id",
                         descending: bool = True, after: tuple[Any, int]) -> int:
        """How many tasks :meth:`task_page` (the same arguments) lists after the keyset ``after``: every
        one of them is read, so this costs what the whole stretch costs (a list that follows a task to
        a far page counts the rows before it once, never on each page)."""
        source, where, params, parts = self._task_list_sql(status, queue, stage, worker, text, order, descending,
                                                           after)
        return sum(int(self.one(f"SELECT count(*) FROM {source} WHERE {where} AND {keyset}",
                                [*params, *keyset_params])[0]) for keyset, keyset_params, _ in parts)

    def task_ids_listed(self, ids: list[int], *, status: str | None = None, queue: str | None = None,
                        stage: str | None = None, worker: str | None = None, text: str | None = None) -> set[int]:
        """Which of the task ids ``ids`` the filter of :meth:`task_page` (the same arguments) still lists."""
        if not ids:
            return set()
        _, where, params, _ = self._task_list_sql(status, queue, stage, worker, text, "id", True, None)
        marks = ",".join("?" * len(ids))
        return {r[0] for r in self.query(f"SELECT t.id FROM tasks AS t WHERE t.id IN ({marks}) AND {where}",
                                         [*ids, *params])}

    def _order_column(self, order: str) -> str | None:
        if order not in self.TASK_ORDERS:
            raise ValueError(f"unknown order {order!r}")
        return self.TASK_ORDERS[order]

    def _task_list_sql(self, status: str | None, queue: str | None, stage: str | None, worker: str | None,
                       text: str | None, order: str, descending: bool, after: tuple[Any, int] | None
                       ) -> tuple[str, str, list[Any], list[tuple[str, list[Any], str]]]:
        """The table source, ``WHERE`` (with its parameters) and keyset parts of a task list (see
        :meth:`task_page`). The parts are read one after the other, each with its own ``ORDER BY``:
        after ``(v, id)`` in a column's order come the tasks whose value is ``v`` beyond ``id``, then
        those beyond ``v``. One test ``(value, id) < (v, id)`` would let SQLite narrow its index by the
        value alone and step through every task of value ``v`` before ``id`` on each page: most tasks
        share a priority, and an ingest's tasks their stage time."""
        column = self._order_column(order)
        where = ["t.is_gold = 0"]
        params: list[Any] = []
        for name, value in (("status", status), ("stage", stage)):
            if value is not None:
                where.append(f"t.{name} = ?")
                params.append(value)
        if queue is not None:
            if queue == "":
                where.append("t.queue IS NULL")
            else:
                where.append("t.queue = ?")
                params.append(queue)
        if worker is not None:
            where.append("t.id IN (SELECT task_id FROM assignments WHERE worker = ?)")
            params.append(worker)
        if text:
            search, search_params = self._text_search(text)
            where.append(f"({search})")
            params += search_params
        cmp = "<" if descending else ">"
        direction = "DESC" if descending else "ASC"
        if column is None:
            source = "tasks AS t NOT INDEXED" if queue is None and worker is None else "tasks AS t"
            # NOT INDEXED: walk the rowid; stop at `limit` matches
            keyset = ("1", []) if after is None else (f"t.id {cmp} ?", [after[1]])
            return source, " AND ".join(where), params, [(*keyset, f"t.id {direction}")]
        if column == "t.stage_at" and status == "open" and queue:
            source = "tasks AS t INDEXED BY tasks_open_age"
            where.append("t.status = 'open'")  # a literal: SQLite uses a partial index only if it can prove its WHERE
        elif worker is not None or self._few_listed(status, queue, stage):
            source = "tasks AS t"  # the planner sorts what the worker's slots or a narrow filter give
        else:
            source = f"tasks AS t INDEXED BY {self.LIST_INDEXES[column]}"
        sort = f"{column} {direction}, t.id {direction}"
        if after is None:
            parts = [("1", [], sort)]
        else:
            parts = [(f"{column} = ? AND t.id {cmp} ?", [after[0], after[1]], f"t.id {direction}"),
                     (f"{column} {cmp} ?", [after[0]], sort)]
        return source, " AND ".join(where), params, parts

    def _few_listed(self, status: str | None, queue: str | None, stage: str | None) -> bool:
        """Whether the kept counters say a filter on ``status``, ``queue`` and ``stage`` keeps so few of
        the non-gold tasks that sorting them all costs less than walking an order's index to a page's
        worth of them: fewer than sqrt(50 · all), the count where both read as many rows (7,000 of
        1,000,000). The cost of a page is then at most about that many rows, whatever the filter."""
        if status is None and queue is None and stage is None:
            return False
        kept = total = 0
        for r in self.task_count_rows():
            if r["is_gold"]:
                continue
            total += r["n"]
            if ((status is None or r["status"] == status) and (queue is None or r["queue"] == queue)
                    and (stage is None or r["stage"] == stage)):
                kept += r["n"]
        return kept * kept < 50 * total

    def active_by_queue(self) -> dict[str, int]:
        """Active assignments per queue, gold questions left out, read through the partial index of
        active slots."""
        rows = self.query("SELECT a.queue, count(*) AS n FROM assignments AS a INDEXED BY assignments_worker_active "
                          "JOIN tasks AS t ON t.id = a.task_id "
                          "WHERE a.status = 'active' AND a.queue IS NOT NULL AND t.is_gold = 0 GROUP BY a.queue")
        return {r["queue"]: r["n"] for r in rows}
