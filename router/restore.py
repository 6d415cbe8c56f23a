"""Putting a copy ``labelyard backup`` made back as a project's database (``labelyard restore``).

Copying the file back (``cp backup.db lab.db``) is not a restore: a ``lab.db-wal`` a killed
process left beside the database is replayed by SQLite over the copy at the next open, which
then holds the rows written after the backup, or damaged pages. ``restore`` checks the copy
(a Labelyard database, not newer than this Labelyard, ``quick_check`` sound), refuses while
another process has the database open, and writes the copy into the live file through
SQLite's backup API under the writer lock (:meth:`router.store.Store.restore_from`), so SQLite
itself deals with the ``-wal``. A copy an older Labelyard made is migrated as ``init`` would,
in the transaction that records the ``restored`` event.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from . import clock
from .errors import LabelyardError, NotInitialised
from .export import database_file
from .store import Store, check_problem, database_path, not_a_file_problem

SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's unix locks (os_unix.c): PENDING, RESERVED and SHARED bytes of the database file,
# which every connection that has read it holds a part of (in WAL mode for as long as it is open),
# and the WAL index's eight locks and its "in use" byte (DMS) in the -shm file.
_DB_LOCKS = (0x40000000, 512)
_SHM_LOCKS = (120, 9)
_FLOCK = "@hhqqi4x"  # struct flock with native alignment, as router.writer_lock packs it


class OpenElsewhere:
    """Tells whether another process has a database open, from the POSIX locks SQLite holds on the
    file and its ``-shm`` (``F_GETLK``: a lock of this process never counts). The descriptors stay
    open until :meth:`close`, which must come after this process's own connections to the file are
    closed: closing any descriptor of a file drops every POSIX lock the process holds on it."""

    def __init__(self, path: str):
        self.path = path
        self._fds: list[tuple[int, tuple[int, int]]] = []
        for name, span in ((path, _DB_LOCKS), (path + "-shm", _SHM_LOCKS)):
            try:
                self._fds.append((os.open(name, os.O_RDONLY | os.O_NONBLOCK), span))
            except OSError:
                continue  # not there (a database nobody has open has no -shm), or not ours to read

    def holder(self) -> int | None:
        """The id of a process that holds a lock on the database or its ``-shm``; ``None`` when no
        other process does, or where the locks cannot be seen."""
        try:
            import fcntl
            import struct
        except ImportError:  # not POSIX: nothing to see (the docs say to stop every process first)
            return None
        for fd, (start, length) in self._fds:
            try:
                found = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, start,
                                                                    length, 0))
            except OSError:
                continue
            kind, _whence, _start, _length, pid = struct.unpack(_FLOCK, found)
            if kind != fcntl.F_UNLCK:
                return pid or -1
        return None

    def refuse(self) -> None:
        """Raise when another process has the database open."""
        pid = self.holder()
        if pid is not None:
            shown = f" (process {pid})" if pid > 0 else ""
            raise LabelyardError(f"{self.path}: another process has the database open{shown}: stop every labelyard "
                                 "process that uses it (tui, work, claim loops, run and tick from cron), then "
                                 "restore again; nothing changed")

    def close(self) -> None:
        for fd, _span in self._fds:
            os.close(fd)
        self._fds = []


def restore(db: str | None, backup: str, actor: str) -> dict[str, Any]:
    """Put the copy at ``backup`` in place of the database ``db`` names (made if missing), as
    ``actor``, who must be a lead of the database (of the copy, when the database cannot be read).
    Returns ``{"restored": db, "from": backup, "schema": the copy's version, "migrations": [...]}``."""
    live = database_path(db)
    source = _open_copy(backup, live)
    try:
        version = source.conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        _require_lead(live, source, actor)
        migrated: list[str] = []
        holders = OpenElsewhere(live)
        try:
            holders.refuse()  # before the writer lock: a busy project is told at once, not queued behind
            store = _open_live(live)
            try:
                store.restore_from(source, alone=holders.refuse,
                                   record=lambda: migrated.extend(_record(store, backup, version, actor)))
            except sqlite3.DatabaseError as exc:
                raise LabelyardError(f"{live}: cannot restore into it ({exc}); nothing changed if it is not "
                                     "SQLite's doing: if the file is damaged beyond opening, stop every labelyard "
                                     f"process, move {live} and its -wal and -shm files aside, and restore again "
                                     "(restore makes a new file)") from None
            finally:
                store.close()
        finally:
            holders.close()
    finally:
        _close_copy(source)
    return {"restored": live, "from": backup, "schema": version, "migrations": migrated}


def _open_copy(backup: str, live: str) -> Store:
    """The copy to restore, opened read-only and checked: an SQLite file holding a Labelyard
    database (any version up to this one's) that ``quick_check`` finds sound."""
    if not backup.strip():
        raise LabelyardError("restore needs the copy to restore (a file `labelyard backup` wrote)")
    what = database_file(backup, live)
    if what is not None:
        raise LabelyardError(f"{backup} is {what} ({os.path.realpath(live)}): name a copy `labelyard backup` made")
    problem = not_a_file_problem(backup)
    if problem is not None:
        raise LabelyardError(f"{problem}; nothing changed")
    try:
        with open(backup, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise LabelyardError(f"{backup}: cannot read the copy: {exc.strerror}; nothing changed") from None
    if head != SQLITE_HEADER:
        raise LabelyardError(f"{backup}: not an SQLite database file (not a copy `labelyard backup` made); "
                             "nothing changed")
    try:
        source = Store.open_to_copy(backup, then="nothing to restore; nothing changed")
    except NotInitialised as exc:  # SQLite, but no Labelyard schema
        raise LabelyardError(str(exc)) from None
    try:
        problem = check_problem(source.conn)
    except sqlite3.DatabaseError as exc:  # too damaged to be checked: the copy's, not the database's
        problem = str(exc)
    if problem is not None:
        _close_copy(source)
        raise LabelyardError(f"{backup}: the copy is damaged ({problem}); nothing changed: restore an older copy")
    return source


def _close_copy(source: Store) -> None:
    """Close the copy, and remove the writer lock's file that opening it made beside it."""
    made = source.made_lock_file
    source.close()
    if made is not None:
        try:
            os.unlink(made)
        except OSError:
            pass


def _require_lead(live: str, source: Store, actor: str) -> None:
    """``actor`` must be a lead of the database to replace; when it holds no project to ask (missing,
    not yet a project, damaged), a lead of the copy that replaces it."""
    from .lead import require_lead_role
    from .store import loads

    roles = Store.worker_roles_at(live, actor, "check --db (a damaged project database that SQLite cannot open "
                                               "at all: move it aside and restore again); nothing changed")
    if roles is None:
        row = source.worker(actor)
        roles = None if row is None else loads(row["roles"])
    require_lead_role(actor, roles or None)  # [] is no such worker: the hint says `workers add`


def _open_live(live: str) -> Store:
    """A connection to the database to restore into; a missing file is made (``0660``, as ``init``
    makes one), into an existing folder."""
    folder = os.path.dirname(os.path.abspath(live))
    if not os.path.isdir(folder):
        raise LabelyardError(f"{live}: folder {folder} does not exist; nothing changed")
    try:
        fd = os.open(live, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o660)
    except FileExistsError:
        pass
    except OSError as exc:
        raise LabelyardError(f"{live}: cannot make the database file: {exc.strerror}; nothing changed") from None
    else:
        os.fchmod(fd, 0o660)
        os.close(fd)
    return Store(live, Store.connect(live))


def _record(store: Store, backup: str, version: int, actor: str) -> list[str]:
    """In the restore's transaction: migrate a copy an older Labelyard made, as ``init`` does, and
    record the ``restored`` event; returns the migrations applied."""
    from .migrations import migrate, pending

    done = migrate(store.conn) if pending(store.conn) else []
    store.add_event("restored", clock.now(), action="restore", actor=actor,
                    detail={"from": os.path.abspath(backup), "schema": version, "migrations": done})
    return done
