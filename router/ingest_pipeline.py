"""How an ingest moves routed batches to the database: a writer beside the router.

:class:`Engine.ingest <router.engine.Engine.ingest>` reads and routes rows in
batches; this module commits them, one short transaction per batch, in one
of two arrangements:

- **in a thread** (:class:`ThreadedWriter`): the caller routes, a thread on
  its own connection writes. Used for sources that live in this process
  (plugins, the demo).
- **in two processes** (:class:`RoutingChild`): a forked child reads and
  routes, the parent writes. Python's routing and SQLite's writing then run
  on two cores; in one process they share the GIL, and the measured pipeline
  of two threads was no faster than routing and writing in turn. Used by
  ``labelyard ingest FILE``. The parent is the process a user or a test
  sees and kills: the child only reads, and dies at its next send once the
  parent is gone.

The child must inherit no SQLite state for the database. SQLite's unix VFS
keeps its lock bookkeeping per process and per file (``unixInodeInfo``, and
the WAL index's ``unixShmNode`` with its lock counts), and a fork copies it,
but not the POSIX locks it counts: a connection the child opened while the
parent had one open believed the process held the database's shared lock and
the WAL index's "in use" lock already, and took neither (seen in
``/proc/locks``). Its reads were then unprotected: a last connection closing
elsewhere could checkpoint and remove the WAL under them, or a process rebuild
the index, once the parent let go (https://www.sqlite.org/howtocorrupt.html,
carrying an open database across a fork). So the parent closes every store of
the process on the file before it forks (:func:`router.store.connections_closed`:
the stores register themselves, and the writer's is opened only after the
fork) and connects them again after; the child opens its own connection
(``Store.reconnect``). On Linux the parent checks in ``/proc/locks`` that it
then holds no lock on the file or its ``-shm``; if it does (a connection
Labelyard does not know of, such as a plugin's own), or a store is in a
transaction, it forks nothing and routes in a thread instead: slower, never
wrong. A ``spawn``/``forkserver`` child would inherit nothing either, but
must import Labelyard again and be handed the rows' reader by pickling.

Each batch's transaction checks the external ids again under the lock, so
two ingests at once, or an ingest run again after a crash, never store a row
twice.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import LabelyardError
from .ingest import IgnoredKeys, RowProblem
from .store import TASK_INSERT_COLUMNS, Store, connections_closed, dumps, dumps_finite, loads

INGEST_CACHE_KIB = 64 * 1024
# Rows per transaction while other connections write. Alone, the writer commits
# each routed batch whole: every commit rewrites the index pages the batch touched
# (random external ids land all over their index), so fewer, larger commits write
# fewer pages per row.
INGEST_SHARED_ROWS = 500
INGEST_YIELD_FACTOR = 4.0  # while others write, ingest holds the lock at most a fifth of the time
INGEST_YIELD_MAX_S = 0.25

# What a row gives its task, as stored: a row whose id is known is a duplicate when these are the
# stored task's, else a changed row (counted apart; the stored task is kept).
INPUT_COLUMNS = ("data", "category", "tags", "pred_label", "pred_confidence", "pred_model", "pred_scores")
_JSON_INPUTS = tuple(n for n, name in enumerate(INPUT_COLUMNS) if name in ("data", "tags", "pred_label", "pred_scores"))
row_inputs = operator.itemgetter(*(TASK_INSERT_COLUMNS.index(name) for name in INPUT_COLUMNS))  # of a task tuple
CHANGED_LINES_SHOWN = 5  # the lines of changed rows an ingest names


def item_inputs(item) -> tuple | None:
    """The :data:`INPUT_COLUMNS` a new task from ``item`` (a ``TaskInput``) would be stored with;
    ``None`` when it could not be (NaN in it, say): then it is no copy of any stored task."""
    try:
        return (dumps_finite(item.data), item.category, dumps(item.tags) if item.tags else "[]",
                None if item.label is None else dumps_finite(item.label), item.confidence, item.model,
                None if item.scores is None else dumps_finite(item.scores))
    except (ValueError, TypeError, RecursionError):
        return None


def same_inputs(stored: tuple | None, given: tuple | None) -> bool:
    """Whether a row's inputs are a stored task's: equal as stored, or as JSON values (the same
    data with its keys in another order)."""
    if stored is None or given is None:
        return False
    if stored == given:
        return True
    for n, (old, new) in enumerate(zip(stored, given)):
        if old == new:
            continue
        if n not in _JSON_INPUTS or old is None or new is None:
            return False
        try:
            if loads(old) != loads(new):
                return False
        except ValueError:
            return False
    return True



@dataclass
class IngestReport:
    """What an ingest did."""

    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    routed: Counter = field(default_factory=Counter)
    ignored: IgnoredKeys = field(default_factory=IgnoredKeys)
    changed: int = 0  # rows whose id is stored with other content: the stored task was kept
    changed_lines: list[int] = field(default_factory=list)  # the first few of their lines

    def as_dict(self) -> dict[str, Any]:
        """The counts; ``changed`` (rows whose id is stored with other content) and ``ignored_keys``
        (rows per top-level key left out) only when there are some."""
        counts = {"ingested": self.ingested, "duplicates": self.duplicates, "rejected": self.rejected,
                  "routed": dict(self.routed)}
        if self.changed:
            counts["changed"] = self.changed
        if self.ignored:
            counts["ignored_keys"] = dict(self.ignored.rows)
        return counts

    def add_changed(self, lines: list[int]) -> None:
        self.changed += len(lines)
        if len(self.changed_lines) < CHANGED_LINES_SHOWN:
            self.changed_lines = sorted(self.changed_lines + lines)[:CHANGED_LINES_SHOWN]

    def changed_warning(self) -> str | None:
        """What to print on standard error about the changed rows, if there are some."""
        if not self.changed:
            return None
        shown = ", ".join(map(str, self.changed_lines))
        more = f" and {self.changed - len(self.changed_lines)} more" if self.changed > len(self.changed_lines) else ""
        rows = "1 row gives" if self.changed == 1 else f"{self.changed} rows give"
        return (f"warning: {rows} an id already stored with other content (line{'s' if self.changed > 1 else ''} "
                f"{shown}{more}): the stored task was kept, as ingest never changes a task; to add such a row as a "
                "task of its own, give it a new id")


@dataclass
class RoutedBatch:
    """Rows routed and ready to write, in input order: ``tasks`` are tuples in
    :data:`TASK_INSERT_COLUMNS` order, ``events`` their ``created`` events as
    ``(rule, action, actor, detail_json, at)`` (the task id is prepended under the lock).
    ``first_line``..``last_line`` are the input lines the batch read: the source's older
    rejects in that range are replaced by the batch's own (a row fixed since is no
    longer listed), but for lines an earlier batch of the same read replaced already
    (:class:`LineRejects`); with ``through_end``, the range runs to the end of the source
    (the last batch of a whole file: lines after its last row are gone or fixed)."""

    now: float
    problems: list[RowProblem]
    last_line: int = 0
    tasks: list[tuple] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    duplicates: int = 0
    first_line: int = 0  # 0: replaces no earlier rejects
    through_end: bool = False
    ignored: IgnoredKeys | None = None  # the rows' top-level keys left out, if any
    changed: list[int] = field(default_factory=list)  # lines of rows whose id is stored with other content

    def head(self, rows: int) -> tuple["RoutedBatch", "RoutedBatch | None"]:
        """The first ``rows`` tasks (with the batch's rejects, duplicates, changed rows and ignored keys)
        and the rest, if any."""
        if len(self.tasks) <= rows:
            return self, None
        first = RoutedBatch(self.now, self.problems, self.last_line, self.tasks[:rows], self.events[:rows],
                            self.rules[:rows], self.duplicates, self.first_line, self.through_end, self.ignored,
                            self.changed)
        rest = RoutedBatch(self.now, [], self.last_line, self.tasks[rows:], self.events[rows:], self.rules[rows:])
        return first, rest


@dataclass
class PartRejects:
    """How the rejects of one part a source plugin yields are kept (``labelyard run``, ``ingest NAME:ARG``).

    A file's rejects are one per line, and a file read again replaces them by line range.
    A plugin's lines are whatever it numbers its rows with, not unique in its origin (each
    page of an API numbered from 1, or 0 for every row), and a part holds only the rows read
    from the cursor: so no range is replaced. Each reject gets the row's own key instead: a
    digest of its external id (else its raw text, else its reason), and ``#n`` for the n-th
    row of that key on that line in one read of the source (``seen``, shared by the parts of
    that read). Two bad rows never share a reject, and a part read again (the run died
    before its cursor was stored) finds its own rejects and updates them.

    ``from_start``: the part begins a new read of its origin from the start (a file changed
    and read again); the origin's rejects of earlier reads are dropped with its first batch.
    """

    seen: Counter = field(default_factory=Counter)
    from_start: bool = False

    def key(self, source: str, problem: RowProblem) -> str:
        """The reject key of ``problem`` (see the class); counts it in :attr:`seen`."""
        if problem.external_id is not None:
            row = ["id", problem.external_id]
        elif problem.raw is not None:
            row = ["raw", problem.raw]
        else:
            row = ["reason", problem.reason]
        digest = hashlib.sha1(json.dumps(row).encode("ascii")).hexdigest()[:16]
        self.seen[(source, problem.line, digest)] += 1
        n = self.seen[(source, problem.line, digest)]
        return digest if n == 1 else f"{digest}#{n}"


@dataclass
class LineRejects:
    """How the rejects of one read of a file or stream are kept (``labelyard ingest``): each batch
    replaces the source's earlier rejects on the lines it read, but never on lines an earlier
    batch of the same read replaced already (a one-line ``.json`` array, or CSV records ended by
    lone CRs in a ``\\n`` file, put many rows on one line, and a batch may start on the line
    where the one before ended). Rows on one line are told apart by their place among that
    line's rejects: the first keeps the key ``''`` (as a file's rejects always had), the n-th
    is ``#n``. A read of the same file gives the same keys, and two reads at once update
    each other's rejects instead of doubling them."""

    replaced_through: int = 0  # the last line whose earlier rejects this read replaced
    line: int = 0  # the line of the last reject kept, and how many this read kept on it
    on_line: int = 0

    def lines_to_replace(self, batch: "RoutedBatch") -> tuple[int, int | None] | None:
        """The lines of ``batch`` whose earlier rejects are to go (``None``: none left to replace)."""
        if not batch.first_line:
            return None
        first = max(batch.first_line, self.replaced_through + 1)
        if batch.through_end:
            self.replaced_through = max(self.replaced_through, batch.last_line, first)
            return first, None
        if first > batch.last_line:
            return None
        self.replaced_through = batch.last_line
        return first, batch.last_line

    def key(self, line: int) -> str:
        """The key of the next reject on ``line`` (rows come in line order)."""
        if line != self.line:
            self.line, self.on_line = line, 0
        self.on_line += 1
        return "" if self.on_line == 1 else f"#{self.on_line}"


class BatchWriter:
    """Commits routed batches on its own connection, one transaction per batch.

    With ``part`` (a source plugin's part) rejects are kept as :class:`PartRejects` says;
    otherwise as :class:`LineRejects` says: each batch replaces the source's rejects on the
    lines it read."""

    def __init__(self, path: str, source: str, part: PartRejects | None = None, also: Sequence[str] = ()):
        self.source = source
        self.also = tuple(also)  # other names of the file, whose rejects on the lines read go too
        self.part = part
        self.lines = LineRejects()
        self._cleared = False  # with part.from_start: whether the origin's earlier rejects are gone
        self.report = IngestReport()
        self.store = Store.open(path)
        # Random external ids touch index pages all over the file: a larger page
        # cache keeps them in memory (the peers' probe: +27% at 1M rows).
        self.store.conn.execute(f"PRAGMA cache_size={-INGEST_CACHE_KIB}")
        self.store.checkpoint_in_thread = True
        self._seen_version = self.store.data_version()
        self._router: Any = None  # an engine on this connection, for a batch routed by a replaced version
        self._shared = True  # until a commit shows whether others write, use short transactions

    def write(self, batch: RoutedBatch) -> None:
        """Commit one routed batch: whole while nobody else writes; otherwise in
        transactions of :data:`INGEST_SHARED_ROWS` rows, each followed by a pause that
        gives annotators the lock for a while."""
        rest: RoutedBatch | None = batch
        while rest is not None:
            part, rest = rest.head(INGEST_SHARED_ROWS) if self._shared else (rest, None)
            started = time.monotonic()
            self._write(part)
            held = time.monotonic() - started
            # data_version moves only when another connection commits: annotators are working.
            version = self.store.data_version()
            self._shared = version != self._seen_version
            if self._shared:
                time.sleep(min(INGEST_YIELD_MAX_S, held * INGEST_YIELD_FACTOR))
            self._seen_version = version


    def _write(self, batch: RoutedBatch) -> None:
        store, report = self.store, self.report
        events: list[tuple] = []
        with store.transaction():
            self._route_again_if_replaced(batch)
            rows = batch.tasks
            next_id = store.next_task_id()
            tasks = [(next_id + i, *row[1:]) for i, row in enumerate(rows)]
            # The router skipped the ids it saw stored; another ingest may have stored some
            # since. Usually none: insert all at once, and only if one clashes, check each.
            if tasks and not store.insert_new_tasks(TASK_INSERT_COLUMNS, tasks):
                known = store.existing_external_ids([t[1] for t in rows])
                # a gold question added since the router looked is refused, as the router refuses one
                gold = store.gold_external_ids(known) if known and store.has_gold() else set()
                stored = store.stored_inputs(known, INPUT_COLUMNS)
                tasks, kept = [], []
                for row, event, rule in zip(rows, batch.events, batch.rules):
                    if row[1] in gold:
                        line = json.loads(event[3])["line"]
                        batch.problems.append(RowProblem(line, f"id {row[1]} is a gold question", None, row[1]))
                        continue
                    if row[1] in known:  # stored meanwhile (another ingest, or this file's earlier batch)
                        if same_inputs(stored.get(row[1]), row_inputs(row)):
                            report.duplicates += 1
                        else:
                            report.add_changed([json.loads(event[3])["line"]])
                        continue
                    tasks.append((next_id + len(tasks), *row[1:]))
                    kept.append((event, rule))
                if gold:
                    batch.problems.sort(key=lambda p: p.line)
                store.insert_task_tuples(TASK_INSERT_COLUMNS, tasks)
            else:
                kept = list(zip(batch.events, batch.rules))
            for task, (event, rule) in zip(tasks, kept):
                events.append((task[0], *event))
                report.routed[rule] += 1
            store.add_created_events(events)
            if self.part is not None:
                self._keep_part_rejects(batch)
            else:
                replaced = self.lines.lines_to_replace(batch)
                if replaced is not None:
                    for name in (self.source, *self.also):
                        store.delete_rejects(name, replaced)
                if batch.problems:
                    store.add_keyed_rejects((self.source, p.line, p.reason, p.raw, batch.now, self.lines.key(p.line))
                                            for p in batch.problems)
        report.ingested += len(tasks)
        report.duplicates += batch.duplicates
        if batch.changed:
            report.add_changed(batch.changed)
        report.rejected += len(batch.problems)
        if batch.ignored:
            report.ignored.merge(batch.ignored)

    def _route_again_if_replaced(self, batch: RoutedBatch) -> None:
        """Under the batch's lock: when a version other than the one that routed ``batch`` is active
        (a lead applied one meanwhile), route the batch again by it, in place
        (:meth:`Engine.route_again <router.engine.Engine.route_again>`). Usually none: one read."""
        active = self.store.active_workflow_id()
        if active is None or all(row[_VERSION] == active for row in batch.tasks):
            return
        if self._router is None:
            from .engine import Engine  # loaded already: this process routes or forked the router

            self._router = Engine(self.store)
        self._router.route_again(batch, active)

    def _keep_part_rejects(self, batch: RoutedBatch) -> None:
        """A plugin part's rejects, each under its own key (:class:`PartRejects`), in the batch's transaction."""
        part = self.part
        assert part is not None
        if part.from_start and not self._cleared:
            self.store.delete_rejects(self.source)
            self._cleared = True
        if batch.problems:
            self.store.add_keyed_rejects((self.source, p.line, p.reason, p.raw, batch.now, part.key(self.source, p))
                                         for p in batch.problems)

    def close(self) -> None:
        self.store.close()


_VERSION = TASK_INSERT_COLUMNS.index("workflow_version")


class ThreadedWriter:
    """A :class:`BatchWriter` in a thread: :meth:`put` hands it a batch, :meth:`close` waits for the rest."""

    _DONE = None

    def __init__(self, path: str, source: str, part: PartRejects | None = None, also: Sequence[str] = ()):
        import queue
        import threading

        self.path, self.source, self.part, self.also = path, source, part, also
        self.report = IngestReport()
        self.error: BaseException | None = None
        self._queue: "queue.Queue[RoutedBatch | None]" = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="labelyard-ingest-writer", daemon=True)
        self._thread.start()

    def put(self, batch: RoutedBatch) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(batch)

    def close(self) -> None:
        """Wait until every batch is written; re-raise the writer's error if it had one."""
        self._queue.put(self._DONE)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        writer = None
        try:
            writer = BatchWriter(self.path, self.source, self.part, self.also)
            self.report = writer.report
            while True:
                batch = self._queue.get()
                if batch is self._DONE:
                    return
                if self.error is None:
                    writer.write(batch)
        except BaseException as exc:  # handed to the routing thread, which re-raises it
            self.error = exc
            while self._queue.get() is not self._DONE:
                pass
        finally:
            if writer is not None:
                writer.close()


def held_sqlite_locks(path: str) -> bool | None:
    """Whether this process holds a POSIX lock on the database file at ``path`` or its ``-shm``
    (Linux's ``/proc/locks``: by inode, so a false alarm only costs the fork); ``None`` where
    that cannot be told. An open SQLite connection that has read the file holds some."""
    try:
        inodes = {str(os.stat(path).st_ino)}
        if os.path.exists(path + "-shm"):
            inodes.add(str(os.stat(path + "-shm").st_ino))
        with open("/proc/locks") as table:
            rows = [line.replace("->", "").split() for line in table]
    except OSError:
        return None
    pid = str(os.getpid())
    return any(len(r) > 5 and r[1] == "POSIX" and r[4] == pid and r[5].rsplit(":", 1)[-1] in inodes for r in rows)


class RoutingChild:
    """A forked child that runs ``produce`` (reads and routes) and sends its batches over a pipe.

    Made by :meth:`start`, which forks at once; iterate it for the batches, in order, and
    :meth:`close` it in any case. An error in the child is raised while iterating: a
    :class:`LabelyardError` with its own message, anything else named as an error of the
    reading process.
    """

    @classmethod
    def start(cls, produce: Callable[[], Iterator[RoutedBatch]], path: str) -> "RoutingChild | None":
        """Fork a child for ``produce`` with no SQLite state for the database at ``path``: every
        store of this process on it is closed across the fork (:func:`~router.store.connections_closed`),
        so ``produce`` must open its connection in the child (``Store.reconnect``). ``None``, having
        forked nothing, where this process cannot fork, a store is in a transaction, or the process
        still holds SQLite locks on the file (a connection Labelyard does not know of): the caller
        then routes in this process."""
        if not hasattr(os, "fork"):
            return None
        with connections_closed(path) as closed:
            if not closed or held_sqlite_locks(path):
                return None
            return cls(produce)

    def __init__(self, produce: Callable[[], Iterator[RoutedBatch]]):
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._receiving, sending = context.Pipe(duplex=False)
        self._child = context.Process(target=_child_main, args=(produce, sending, self._receiving),
                                      name="labelyard-ingest-router", daemon=True)
        self._child.start()
        sending.close()  # the parent keeps only its reading end, so EOF means the child is gone

    def __iter__(self) -> Iterator[RoutedBatch]:
        child = self._child
        while True:
            try:
                kind, payload = self._receiving.recv()
            except EOFError:
                raise LabelyardError("ingest: the reading process stopped without finishing "
                                     f"(exit code {child.exitcode if child.exitcode is not None else 'unknown'})") from None
            if kind == "batch":
                yield payload
            elif kind == "done":
                return
            elif kind == "user-error":
                raise LabelyardError(payload)
            else:
                raise LabelyardError(f"ingest: the reading process failed: {payload}")

    def close(self) -> None:
        """Stop listening (a child still sending dies at its next send) and reap the child."""
        self._receiving.close()
        self._child.join(timeout=5)
        if self._child.is_alive():
            self._child.kill()
            self._child.join()


def _child_main(produce: Callable[[], Iterator[RoutedBatch]], sending: Any, receiving: Any) -> None:
    # Only the parent may hold the reading end: once it is gone, a send here fails
    # (EPIPE) instead of blocking forever on a pipe nobody reads.
    receiving.close()
    _collect_seldom()
    try:
        for batch in produce():
            sending.send(("batch", batch))
        sending.send(("done", None))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent is gone (finished with an error, or killed): nothing left to tell
    except LabelyardError as exc:
        _send_quietly(sending, ("user-error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - told to the parent, which raises it for the user
        _send_quietly(sending, ("error", f"{type(exc).__name__}: {exc}"))
    finally:
        sending.close()


# The routing child's youngest generation is collected once this many more container objects
# are alive (700 by default).
CHILD_GC_THRESHOLD = 50_000


def _collect_seldom() -> None:
    """In the routing child: collect cyclic garbage seldom. A batch's rows (some six container
    objects a row) stay alive until it is sent, so at the default threshold the collector ran
    ~800 times for 100k rows, going through a whole batch each time, and through everything
    inherited from the parent in each full pass: ~0.27 of the child's 2.45 CPU seconds. The
    inherited objects are frozen (the child never frees them: they are its modules and the
    parent's state), and the young generation waits for about a batch's worth of new objects."""
    import gc

    gc.freeze()
    gc.set_threshold(CHILD_GC_THRESHOLD, *gc.get_threshold()[1:])


def _send_quietly(sending: Any, message: tuple) -> None:
    try:
        sending.send(message)
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass
