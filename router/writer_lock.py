"""The lock Labelyard's writers queue on before SQLite's own write lock.

SQLite lets one writer in at a time and makes the others sleep and retry,
so a freed lock sits idle until some waiter wakes, and the longest waiters
retry least often. Labelyard's writers therefore queue on a lock file beside
the database (``DB.lock``, named from the database's real path, symlinks
resolved) first, so the SQLite lock is rarely contended.

On Linux the queue is first come, first served (:class:`_QueueLock`): each
writer waits on its predecessor alone, and a release wakes exactly one
process. An ``flock`` (the fallback elsewhere) wakes every waiter at each
release; they race, one wins, the rest sleep again, and the woken crowd
preempts the new holder. With 8 and 64 writers on 2 cores that herd made the
99th-percentile wait 8-10x the FIFO queue's (``bench/README.md``).

The kernel drops a process's locks when it dies, even by ``kill -9``, so a
dead writer never blocks the queue; a live one that makes no progress holds
up each waiter for ``LABELYARD_QUEUE_WAIT_S`` at most, on either lock. The
lock only orders Labelyard's writers; SQLite's lock still guarantees that
one writes at a time.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import sys
import weakref

# struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;}
# with native alignment, padded to its 32-byte size on 64-bit Linux.
_FLOCK = "@hhqqi4x"
_TAIL = 0  # bytes 0-7: the number of the latest writer to join the queue
_NODES = 4096  # writer n holds one byte at _NODES + n while it waits and writes
# More turns than any database lives through (one a write); a larger tail is not ours (the file
# was overwritten) and would put the node bytes past the largest offset: the queue starts over.
_MAX_TAIL = 1 << 62


class _QueueLock:
    """A FIFO lock from open-file-description byte-range locks (Linux ``F_OFD_SETLKW``).

    Joining: lock the tail bytes, read the latest number ``p``, write
    ``p + 1`` and lock its node byte, unlock the tail; then wait for a shared
    lock on node ``p`` (free once ``p`` releases, or dies). Releasing unlocks
    one's own node (and the predecessor's, held shared since), which wakes
    only the successor. Every number is used
    once, so a slow successor can never find a node locked again by a later
    turn of the same writer.
    """

    def __init__(self, fd: int):
        import fcntl

        self._fd = fd
        self._fcntl = fcntl.fcntl
        self._wait, self._try = fcntl.F_OFD_SETLKW, fcntl.F_OFD_SETLK
        self._wr, self._rd, self._un = fcntl.F_WRLCK, fcntl.F_RDLCK, fcntl.F_UNLCK
        self._mine: int | None = None

        # The tail's lock and unlock requests never change: packed once.
        self._tail_lock = struct.pack(_FLOCK, self._wr, os.SEEK_SET, _TAIL, 8, 0)
        self._tail_unlock = struct.pack(_FLOCK, self._un, os.SEEK_SET, _TAIL, 8, 0)

    def _lock(self, cmd: int, kind: int, start: int, length: int) -> None:
        self._fcntl(self._fd, cmd, struct.pack(_FLOCK, kind, os.SEEK_SET, start, length, 0))

    def acquire(self, patience: float) -> bool:
        """Join the queue and wait for one's turn; ``False`` when the wait outlasted ``patience``
        seconds (a stopped or hung writer ahead): then this writer has left the queue, its
        successor goes on, and it writes unqueued, under SQLite's lock alone."""
        if not self._bounded(self._tail_lock, patience):
            return False
        try:
            raw = os.pread(self._fd, 8, _TAIL)
            previous = int.from_bytes(raw, "little") if len(raw) == 8 else 0
            if previous >= _MAX_TAIL:
                previous = 0  # nobody waits behind such a number: the queue starts over at 1
            mine = previous + 1
            os.pwrite(self._fd, mine.to_bytes(8, "little"), _TAIL)
            self._lock(self._try, self._wr, _NODES + mine, 1)  # nobody waits on it yet
        finally:
            self._fcntl(self._fd, self._try, self._tail_unlock)
        self._mine = mine
        if previous:
            # Kept until release: nobody else ever locks a predecessor's node (numbers are
            # used once), and then one unlock frees both adjacent bytes.
            request = struct.pack(_FLOCK, self._rd, os.SEEK_SET, _NODES + previous, 1, 0)
            if not self._bounded(request, patience):
                self._lock(self._try, self._un, _NODES + mine, 1)  # let the successor go on
                self._mine = None
                return False
        return True

    def _bounded(self, request: bytes, patience: float) -> bool:
        """Take the lock ``request`` describes, waiting at most ``patience`` seconds."""
        try:
            self._fcntl(self._fd, self._try, request)  # free already: the common case, no timer
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        return _wait_for(lambda: self._fcntl(self._fd, self._wait, request),
                         lambda: self._fcntl(self._fd, self._try, request), patience)

    def release(self) -> None:
        if self._mine is not None:
            self._lock(self._try, self._un, _NODES + self._mine - 1, 2)
            self._mine = None


class _Patience(Exception):
    """Raised by the alarm that bounds a wait for the queue."""


def _wait_for(block, attempt, patience: float) -> bool:
    """Run ``block`` (a blocking lock request) for at most ``patience`` seconds; ``False`` on time out.

    In the main thread an interval timer interrupts the wait (unless the program already
    handles ``SIGALRM``); elsewhere (the TUI's workers) ``attempt``, the same request without
    waiting, is polled with a growing pause, which costs little for such rare writers.
    """
    import signal
    import threading
    import time

    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None):
        waiting = [True]

        def on_alarm(signum, frame) -> None:
            if waiting[0]:
                raise _Patience

        previous = signal.signal(signal.SIGALRM, on_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, patience)
            try:
                block()
                return True
            except _Patience:
                return False
            finally:
                waiting[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)
    deadline, pause = time.monotonic() + patience, 0.0005
    while True:
        try:
            attempt()
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _flock_within(fd: int, patience: float) -> bool:
    """An exclusive ``flock`` on ``fd``, waited for at most ``patience`` seconds (the lock where the
    queue's OFD locks are missing); ``False`` when it stayed held that long."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free already: the common case, no timer
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
    return _wait_for(lambda: fcntl.flock(fd, fcntl.LOCK_EX), lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB),
                     patience)


def queue_patience() -> float:
    """``LABELYARD_QUEUE_WAIT_S``: how long a writer waits for its turn in the queue (or for the
    ``flock`` in its place) before it leaves it and writes under SQLite's lock alone (default 10 s;
    that wait is bounded too). Seconds in ASCII digits (``2.5``), above 0 and at most a day; an
    empty value is unset, anything else a user error naming the variable (a huge value overflowed
    the interval timer, and a bad one was silently 10 s)."""
    raw = os.environ.get("LABELYARD_QUEUE_WAIT_S", "").strip()
    if not raw:
        return QUEUE_WAIT_S
    if _SECONDS.fullmatch(raw) and 0 < float(raw) <= QUEUE_WAIT_MAX_S:
        return float(raw)
    from .errors import LabelyardError

    raise LabelyardError(f"LABELYARD_QUEUE_WAIT_S={raw!r}: give the seconds a writer waits for its turn, a number "
                         f"above 0 and at most {QUEUE_WAIT_MAX_S:g} (a day), such as 10 (the default when unset)")


_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")  # ASCII digits only: no `_`, sign, exponent or inf
QUEUE_WAIT_MAX_S = 86400.0
QUEUE_WAIT_S = 10.0
KINDS = ("queue", "flock", "none")
LOCK_MODE = 0o660  # owner and group, as `init` makes the database: a team shares a group


def lock_path(db_path: str, suffix: str) -> str:
    """The lock file ``suffix`` (``.lock``, ``.run-lock``) of the database at ``db_path``, named from
    its real path: a database reached through a symlink (or ``..``) has the same locks as through
    its own name, as SQLite names its ``-wal`` and ``-shm`` files after the real file."""
    return os.path.realpath(db_path) + suffix


def open_lock_file(path: str) -> int:
    """Open the lock file ``path`` beside a database for reading and writing.

    A new one is made ``LOCK_MODE`` whatever the umask, as ``init`` makes the
    database, so that everyone who may write the database may also open its
    locks (a 0640 lock made a teammate's ``labelyard run`` fail, and their
    claims go unqueued).
    """
    for _ in range(3):  # removed by someone between our two opens: try again
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, LOCK_MODE)
        except FileExistsError:
            try:
                return os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
        try:
            os.fchmod(fd, LOCK_MODE)  # the umask narrowed it
        except OSError:  # a file system without modes: the lock works for us anyway
            pass
        return fd
    return os.open(path, os.O_RDWR | os.O_CREAT, LOCK_MODE)


def lock_file_hint(exc: OSError, path: str) -> str:
    """How to mend a lock file that could not be opened for lack of permission (else nothing)."""
    if exc.errno not in (errno.EACCES, errno.EPERM):
        return ""
    if not os.path.exists(path):
        return (". This user cannot create it beside the database: make the database's folder writable by "
                "its group (chmod g+w), as SQLite's -wal and -shm files need too")
    import shlex

    return (f". Everyone who writes the database must be able to open it: chmod 660 {shlex.quote(path)} (and chgrp it "
            "to the database's group)")


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Say ``message`` on stderr, once per process."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    try:
        print(f"labelyard: warning: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


def chosen_kind() -> str:
    """``LABELYARD_WRITER_LOCK``: ``queue`` (the default), ``flock`` or ``none``.

    ``flock`` trades the queue's bounded waits for more throughput with many
    writers (any running writer may take a freed lock); ``none`` leaves
    writers to SQLite's busy handler. ``LABELYARD_NO_WRITER_LOCK=1`` means
    ``none``. An unknown value is an error, not a silent default.
    """
    if os.environ.get("LABELYARD_NO_WRITER_LOCK"):
        return "none"
    kind = os.environ.get("LABELYARD_WRITER_LOCK", "queue").strip().lower() or "queue"
    if kind not in KINDS:
        from .errors import LabelyardError

        raise LabelyardError(f"LABELYARD_WRITER_LOCK={kind!r}: use one of {', '.join(KINDS)}")
    return kind


class WriterLock:
    """Held around each write transaction; see the module docstring and :func:`chosen_kind`.

    Where ``DB.lock`` cannot be opened it is off: silently on a read-only
    file system (nobody writes there), else with a warning on stderr at the
    first write (once per process), since writers then go unqueued. Where
    open-file-description locks are missing (not Linux) a ``queue`` is an
    ``flock``.
    """

    def __init__(self, db_path: str):
        self._fd: int | None = None
        self._queue: _QueueLock | None = None
        self._problem: str | None = None
        self._flocked = False  # an flock taken (where the queue's OFD locks are missing)
        self._entered = 0  # how deep this lock is entered: a nested ``with`` (restore's transaction) waits for nothing
        self.made_file: str | None = None  # the lock file's path when this lock made it (``init`` undoes it)
        kind = chosen_kind()
        if kind == "none":
            return
        try:
            import fcntl  # noqa: F401 - both kinds need it
        except ImportError:  # not POSIX: SQLite's locking alone
            return
        path = lock_path(db_path, ".lock")
        made = not os.path.lexists(path)
        try:
            self._fd = open_lock_file(path)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                self._problem = (f"{path}: cannot open the writer lock ({exc.strerror}); writing without it, so "
                                 "writers are not queued (SQLite still keeps each write whole)"
                                 + lock_file_hint(exc, path))
            return
        self.made_file = path if made else None
        self._db, self._path, self._patience = db_path, path, queue_patience()
        if kind == "queue" and supports_queue(self._fd):
            self._queue = _QueueLock(self._fd)
        _OPEN.add(self)

    def _forget(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking (the locks
        belong to the parent's open file description, which stays open there)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._queue = None, None

    def __enter__(self) -> None:
        self._entered += 1
        if self._entered > 1:
            return
        if self._problem is not None:
            _warn_once(self._problem)
        if self._queue is not None:
            if not self._queue.acquire(self._patience):
                _warn_once(self._no_progress())
        elif self._fd is not None:
            self._flocked = _flock_within(self._fd, self._patience)
            if not self._flocked:
                _warn_once(self._no_progress())

    def _no_progress(self) -> str:
        """What a writer that waited its whole patience says, on either lock."""
        return (f"{self._db}: waited {self._patience:g} s for a turn behind a writer that makes no progress (a "
                f"stopped or hung labelyard process holding {self._path}, or one waiting for another program's "
                "lock on the database?); writing without the queue")

    def __exit__(self, *exc: object) -> None:
        self._entered -= 1
        if self._entered:
            return
        if self._queue is not None:
            self._queue.release()
        elif self._flocked:
            import fcntl

            self._flocked = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @property
    def fifo(self) -> bool:
        """Whether writers are served in arrival order (the Linux queue)."""
        return self._queue is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._queue = None


# Every open lock, so a forked child (ingest's routing process) closes its inherited copies:
# locks of an open file description last while any process holds a descriptor of it, so a
# child outliving its killed parent (blocked reading a quiet pipe) would hold the queue.
_OPEN: "weakref.WeakSet[WriterLock]" = weakref.WeakSet()


def _forget_inherited() -> None:
    for lock in list(_OPEN):
        lock._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited)


def supports_queue(fd: int) -> bool:
    """Whether this system has open-file-description locks (Linux 3.15+) that work on ``fd``."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return False
    if not hasattr(fcntl, "F_OFD_SETLK") or struct.calcsize(_FLOCK) != 32:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, fcntl.F_RDLCK, os.SEEK_SET, 1, 1, 0))
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, fcntl.F_UNLCK, os.SEEK_SET, 1, 1, 0))
    except OSError:
        return False
    return True
