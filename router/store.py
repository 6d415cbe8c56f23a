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
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import LabelyardError, NotInitialised

BUSY_TIMEOUT_MS = 5000
BUSY_GIVE_UP_S = 120.0
SCHEMA_VERSION = 1  # keep equal to migrations.SCHEMA_VERSION (a test checks)

TASK_COLUMNS = (
    "id, external_id, source, category, tags, data, status, stage, queue, needed, free_slots, priority, "
    "attempts, round, workflow_version, pred_label, pred_confidence, pred_model, pred_scores, final_label, "
    "final_by, final_rule, final_at, reason, is_gold, created_at, updated_at, stage_at"
)


def default_db_path() -> str:
    """``LABELYARD_DB`` or ``./labelyard.db``."""
    return os.environ.get("LABELYARD_DB") or "labelyard.db"


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def dumps(value: Any) -> str:
    """Compact JSON for storage."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """JSON from storage; ``None`` stays ``None``."""
    return None if text is None else json.loads(text)


class Store:
    """A Labelyard database file."""

    def __init__(self, path: str, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn
        self._depth = 0

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def connect(cls, path: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @classmethod
    def open(cls, path: str | None = None) -> "Store":
        """Open an initialised database; raise :class:`NotInitialised` otherwise."""
        path = path or default_db_path()
        if not os.path.exists(path):
            raise NotInitialised(f"{path}: no Labelyard database here; run `labelyard init` first (or pass --db)")
        conn = cls.connect(path)
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise NotInitialised(f"{path}: not a Labelyard database ({exc}); run `labelyard init`") from None
        if row is None or row[0] < SCHEMA_VERSION:
            conn.close()
            raise NotInitialised(f"{path}: database schema is older than this Labelyard; run `labelyard init` to migrate")
        if row[0] > SCHEMA_VERSION:
            conn.close()
            raise LabelyardError(f"{path}: database schema {row[0]} is newer than this Labelyard ({SCHEMA_VERSION}); upgrade labelyard")
        return cls(path, conn)

    @classmethod
    def init(cls, path: str | None = None) -> tuple["Store", list[str]]:
        """Create or migrate the database file; returns the store and the migrations applied."""
        from .migrations import migrate

        path = path or default_db_path()
        existed = os.path.exists(path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise LabelyardError(f"{path}: folder {parent} does not exist")
        if not existed:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o660)
            os.close(fd)
            os.chmod(path, 0o660)  # owner and group only; a team shares a group
        conn = cls.connect(path)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            applied = migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LabelyardError(f"{path}: cannot initialise: {exc}") from None
        return cls(path, conn), applied

    def close(self) -> None:
        self.conn.close()

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

        Nested use joins the outer transaction. Busy waits beyond the
        connection's timeout are retried with jittered back-off.
        """
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
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
        self._commit()

    def _begin(self) -> None:
        deadline = time.monotonic() + BUSY_GIVE_UP_S
        delay = 0.001
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise LabelyardError(f"{self.path}: database stayed locked: {exc}") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.05)

    def _commit(self) -> None:
        deadline = time.monotonic() + BUSY_GIVE_UP_S
        while True:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
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

    def add_events(self, rows: Iterable[tuple]) -> None:
        """Insert many ``(task_id, kind, rule, action, actor, detail_json, at)`` rows."""
        self.conn.executemany(
            "INSERT INTO events (task_id, kind, rule, action, actor, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def events(self, task_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM events WHERE task_id = ? ORDER BY id", (task_id,))

    # -- workflows -------------------------------------------------------------------------
    def active_workflow(self) -> sqlite3.Row | None:
        return self.one("SELECT * FROM workflows WHERE active = 1")

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
        """A task by numeric id or external id."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            row = self.one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (int(ref),))
            if row is not None:
                return row
        return self.one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE external_id = ?", (str(ref),))

    def existing_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(external_ids), 500):
            chunk = external_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.conn.execute(f"SELECT external_id FROM tasks WHERE external_id IN ({marks})", chunk))
        return found

    def next_task_id(self) -> int:
        row = self.one("SELECT max(id) FROM tasks")
        return int(row[0] or 0) + 1

    def insert_tasks(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert fully routed new tasks (each with an explicit ``id``) in one statement batch."""
        self.conn.executemany(
            "INSERT INTO tasks (id, external_id, source, category, tags, data, status, stage, queue, needed, free_slots, "
            "priority, attempts, round, workflow_version, pred_label, pred_confidence, pred_model, pred_scores, "
            "final_label, final_by, final_rule, final_at, reason, is_gold, created_at, updated_at, stage_at) VALUES "
            "(:id, :external_id, :source, :category, :tags, :data, :status, :stage, :queue, :needed, :free_slots, "
            ":priority, :attempts, :round, :workflow_version, :pred_label, :pred_confidence, :pred_model, :pred_scores, "
            ":final_label, :final_by, :final_rule, :final_at, :reason, :is_gold, :created_at, :updated_at, :stage_at)",
            rows,
        )

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
    def claim_offered(self, worker: str, now: float) -> sqlite3.Row | None:
        """Activate the oldest slot offered to ``worker`` alone (work returned for correction)."""
        return self.returning(
            "UPDATE assignments SET status = 'active', updated_at = ? WHERE id = ("
            "SELECT id FROM assignments WHERE worker = ? AND status = 'offered' ORDER BY id LIMIT 1) "
            "RETURNING id, task_id, stage, queue, note",
            (now, worker),
        )

    def claim_slot(self, worker: str, queues: Sequence[str], now: float) -> sqlite3.Row | None:
        """Take one free slot: the highest priority, then oldest, task in ``queues`` that ``worker`` may work.

        One ``UPDATE … RETURNING`` inside the caller's ``BEGIN IMMEDIATE``
        transaction: no two workers can take the same slot. A worker never gets
        a task they annotated (for any stage) or one they already hold a slot
        of in the current round.
        """
        if not queues:
            return None
        branch = (
            "SELECT * FROM (SELECT t.id, t.priority FROM tasks AS t INDEXED BY tasks_claimable "
            "WHERE t.queue = ? AND t.status = 'open' AND t.free_slots > 0 AND NOT EXISTS ("
            "SELECT 1 FROM assignments AS a WHERE a.task_id = t.id AND a.worker = ? "
            "AND (a.stage IN ('annotate', 'correct') OR a.round = t.round)) "
            "ORDER BY t.priority DESC, t.id LIMIT 1)"
        )
        candidates = " UNION ALL ".join([branch] * len(queues))
        params: list[Any] = []
        for q in queues:
            params += [q, worker]
        return self.returning(
            f"UPDATE tasks SET free_slots = free_slots - 1, updated_at = ? WHERE id = ("
            f"SELECT id FROM ({candidates}) ORDER BY priority DESC, id LIMIT 1) "
            f"RETURNING id, external_id, stage, queue, round, data, category, pred_label, pred_confidence",
            [now, *params],
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
        cur = self.conn.execute(
            "INSERT INTO annotations (assignment_id, task_id, worker, stage, round, label, verdict, comment, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (assignment["id"], assignment["task_id"], assignment["worker"], assignment["stage"], assignment["round"],
             None if label is None else dumps(label), verdict, comment, now),
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
        """``{worker: (gold answered, gold correct)}`` for these workers."""
        if not workers:
            return {}
        marks = ",".join("?" * len(workers))
        rows = self.query(
            f"SELECT a.worker, count(*) AS n, sum(a.label = g.label) AS ok FROM annotations AS a "
            f"JOIN gold AS g ON g.task_id = a.task_id WHERE a.worker IN ({marks}) GROUP BY a.worker",
            list(workers),
        )
        return {r["worker"]: (r["n"], r["ok"] or 0) for r in rows}

    # -- rejects and cursors ---------------------------------------------------------------
    def add_rejects(self, rows: Iterable[tuple[str, int | None, str, str | None, float]]) -> None:
        """Quarantine bad input rows: ``(source, line, reason, raw, at)``; the same line twice is kept once."""
        self.conn.executemany(
            "INSERT INTO rejects (source, line, reason, raw, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (source, line) DO UPDATE SET reason = excluded.reason, raw = excluded.raw, at = excluded.at",
            rows,
        )

    def rejects(self, limit: int = 100) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM rejects ORDER BY id DESC LIMIT ?", (limit,))

    # -- reading for status and export -----------------------------------------------------
    def status_counts(self) -> dict[str, int]:
        rows = self.query("SELECT status, count(*) AS n FROM tasks GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    def queue_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.query(
            "SELECT queue, count(*) AS n, sum(free_slots > 0) AS claimable FROM tasks "
            "WHERE status = 'open' AND queue IS NOT NULL GROUP BY queue"
        ):
            out.setdefault(r["queue"], {})["waiting"] = r["claimable"] or 0
            out[r["queue"]]["open"] = r["n"]
        for r in self.query(
            "SELECT queue, count(*) AS n FROM assignments WHERE status = 'active' AND queue IS NOT NULL GROUP BY queue"
        ):
            out.setdefault(r["queue"], {})["active"] = r["n"]
        return out

    def queue_stats(self, queue: str, now: float) -> dict[str, Any]:
        row = self.one(
            "SELECT count(*) AS waiting, min(stage_at) AS oldest FROM tasks "
            "WHERE status = 'open' AND queue = ? AND free_slots > 0",
            (queue,),
        )
        active = self.one("SELECT count(*) FROM assignments WHERE status = 'active' AND queue = ?", (queue,))[0]
        oldest = None if row["oldest"] is None else now - row["oldest"]
        return {"name": queue, "waiting": row["waiting"], "active": active, "oldest_age": oldest}

    def final_tasks(self, include_gold: bool = False) -> Iterator[sqlite3.Row]:
        sql = f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'done'"
        if not include_gold:
            sql += " AND is_gold = 0"
        yield from self.conn.execute(sql + " ORDER BY id")

    def integrity_ok(self) -> bool:
        return self.one("PRAGMA integrity_check")[0] == "ok"
