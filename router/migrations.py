"""Numbered migrations, applied in order, each with its record in one transaction.

Never edit a released migration: add a new one. Never rename one either: a
database records each migration by its name (``_sqlite_migrations``), so a
renamed one would run again there. Every name a migration was ever released
under is in :data:`RELEASED` (a test checks the set against it). The set is run
with sqlite-utils' ``Migrations``; ``schema_version`` mirrors the number of the
newest applied migration so that a cheap query tells a connection whether the
file is up to date without importing sqlite-utils (which is slow to import).
"""

from __future__ import annotations

import itertools
import json
import operator
import re
import sqlite3
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

SCHEMA_VERSION = 18

# Every name a migration was released under, with the migration it names now. A name renamed after it
# shipped (the number of two migrations swapped) counts as that migration applied: what it did is what
# the migration does. ``m013_vote_queue_index`` is an earlier form of ``m013_read_path_indexes`` that
# did less (not the ``workflow_applied`` index), so it is not counted: ``m013_read_path_indexes`` runs
# there, and does only what is missing. (``m009_final_vote_marks`` was never registered, so no database
# holds it; it is kept as the name it was released under.)
RELEASED: dict[str, str] = {
    "m001_initial": "m001_initial",
    "m002_worker_indexes": "m002_worker_indexes",
    "m003_plugins": "m003_plugins",
    "m004_counters": "m004_counters",
    "m005_worker_counters": "m005_worker_counters",
    "m006_rule_counts_without_json": "m006_rule_counts_without_json",
    "m007_new_tasks_counted_per_batch": "m007_new_tasks_counted_per_batch",
    "m008_plugin_reject_keys": "m008_plugin_reject_keys",
    "m010_rule_counts_by_identity": "m009_rule_counts_by_identity",  # 6493621, renamed in b5b370e
    "m009_rule_counts_by_identity": "m009_rule_counts_by_identity",
    "m009_final_vote_marks": "m010_final_vote_marks",  # 292dd05, renamed in d89f44d
    "m010_final_vote_marks": "m010_final_vote_marks",
    "m011_json_value_classes": "m011_json_value_classes",
    "m012_one_to_one_matching": "m012_one_to_one_matching",
    "m013_vote_queue_index": "m013_read_path_indexes",  # 51a781e, grew and renamed in 2090f84
    "m013_read_path_indexes": "m013_read_path_indexes",
    "m014_task_list_orders": "m014_task_list_orders",
    "m015_gold_scored_by_labels": "m015_gold_scored_by_labels",
    "m016_outbox_pending_index": "m016_outbox_pending_index",
    "m017_number_votes_within_tolerance": "m017_number_votes_within_tolerance",
    "m018_number_gold_within_tolerance": "m018_number_gold_within_tolerance",
}
EARLIER_FORMS = frozenset({"m013_vote_queue_index"})  # released names that do not count as their migration


def recorded_as(name: str) -> str:
    """The migration a name recorded in ``_sqlite_migrations`` counts as applied: its current name when
    it was renamed after it shipped, else the name itself (an earlier form counts as nothing)."""
    if name in EARLIER_FORMS:
        return name
    return RELEASED.get(name, name)


class _Migrations(Migrations):
    """sqlite-utils' ``Migrations``, where a migration recorded under a name it had before counts as
    applied (:func:`recorded_as`)."""

    def applied(self, db: Database) -> list[Migrations._AppliedMigration]:
        return [self._AppliedMigration(name=recorded_as(m.name), applied_at=m.applied_at)
                for m in super().applied(db)]


migrations = _Migrations("labelyard")


def _run_ddl(db: Database, script: str) -> None:
    # executescript() would COMMIT first and break the migration's transaction,
    # so statements run one by one (comments dropped: they may hold semicolons).
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            db.execute(statement)


def _run_ddl_with_triggers(db: Database, script: str) -> None:
    """Like :func:`_run_ddl`, for scripts whose triggers hold semicolons inside ``BEGIN … END``:
    pieces are joined until :func:`sqlite3.complete_statement` says a statement is whole."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    buffer = ""
    for piece in "\n".join(lines).split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                db.execute(buffer)
            buffer = ""
    assert not buffer.strip(" \n;"), f"incomplete statement: {buffer}"


def _set_version(db: Database, version: int) -> None:
    db.execute("DELETE FROM schema_version")
    db.execute("INSERT INTO schema_version (version) VALUES (?)", [version])


@migrations()
def m001_initial(db: Database) -> None:
    """The core tables: workflows, tasks, assignments, annotations, workers, events, gold, cursors, rejects."""
    _run_ddl(
        db,
        """
        CREATE TABLE schema_version (version INTEGER NOT NULL);

        CREATE TABLE workflows (
            id          INTEGER PRIMARY KEY,
            name        TEXT NOT NULL,
            version     INTEGER NOT NULL,
            hash        TEXT NOT NULL,
            yaml        TEXT NOT NULL,
            spec        TEXT NOT NULL,      -- the validated document as JSON, fast to reload
            filename    TEXT,
            applied_at  REAL NOT NULL,
            applied_by  TEXT,
            active      INTEGER NOT NULL DEFAULT 0,
            UNIQUE (name, version)
        );

        CREATE TABLE workers (
            id          TEXT PRIMARY KEY,
            roles       TEXT NOT NULL DEFAULT '[]',
            skills      TEXT NOT NULL DEFAULT '[]',
            capacity    INTEGER,            -- max active assignments; NULL = unlimited
            paused      INTEGER NOT NULL DEFAULT 0,
            pause_reason TEXT,
            flagged     INTEGER NOT NULL DEFAULT 0,
            created_at  REAL NOT NULL
        );

        CREATE TABLE tasks (
            id              INTEGER PRIMARY KEY,
            external_id     TEXT NOT NULL UNIQUE,
            source          TEXT,
            category        TEXT,
            tags            TEXT NOT NULL DEFAULT '[]',
            data            TEXT NOT NULL DEFAULT '{}',
            status          TEXT NOT NULL,          -- open | held | done | invalid
            stage           TEXT,                   -- annotate | review | correct | escalated
            queue           TEXT,
            needed          INTEGER NOT NULL DEFAULT 0,   -- submissions the stage still asks for
            free_slots      INTEGER NOT NULL DEFAULT 0,   -- needed minus active assignments
            priority        REAL NOT NULL DEFAULT 0,
            attempts        INTEGER NOT NULL DEFAULT 0,   -- stages entered so far
            round           INTEGER NOT NULL DEFAULT 0,   -- increments with every new stage
            workflow_version INTEGER,
            pred_label      TEXT,                   -- JSON
            pred_confidence REAL,
            pred_model      TEXT,
            pred_scores     TEXT,                   -- JSON object label -> score
            final_label     TEXT,                   -- JSON
            final_by        TEXT,                   -- model | consensus | reviewer | expert | lead
            final_rule      TEXT,
            final_at        REAL,
            reason          TEXT,                   -- why held / invalid / escalated
            is_gold         INTEGER NOT NULL DEFAULT 0,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL,
            stage_at        REAL NOT NULL           -- when the current stage began
        );
        -- The claim index: only tasks with a free slot are in it.
        CREATE INDEX tasks_claimable ON tasks (queue, priority DESC, id)
            WHERE status = 'open' AND free_slots > 0;
        CREATE INDEX tasks_status_queue ON tasks (status, queue);
        CREATE INDEX tasks_final ON tasks (final_at) WHERE final_at IS NOT NULL;

        CREATE TABLE assignments (
            id          INTEGER PRIMARY KEY,
            task_id     INTEGER NOT NULL REFERENCES tasks (id),
            worker      TEXT NOT NULL REFERENCES workers (id),
            stage       TEXT NOT NULL,
            queue       TEXT,
            round       INTEGER NOT NULL,
            status      TEXT NOT NULL,          -- active | submitted | released | expired
            note        TEXT,                   -- e.g. the reviewer's comment for a correct slot
            created_at  REAL NOT NULL,
            updated_at  REAL NOT NULL
        );
        CREATE INDEX assignments_task_worker ON assignments (task_id, worker);
        CREATE INDEX assignments_worker_active ON assignments (worker) WHERE status = 'active';

        CREATE TABLE annotations (
            id              INTEGER PRIMARY KEY,
            assignment_id   INTEGER NOT NULL UNIQUE REFERENCES assignments (id),
            task_id         INTEGER NOT NULL REFERENCES tasks (id),
            worker          TEXT NOT NULL,
            stage           TEXT NOT NULL,
            round           INTEGER NOT NULL,
            label           TEXT,                   -- JSON; NULL for a plain approve/reject
            verdict         TEXT,                   -- approve | reject for review slots
            comment         TEXT,
            created_at      REAL NOT NULL
        );
        CREATE INDEX annotations_task ON annotations (task_id);

        CREATE TABLE events (
            id          INTEGER PRIMARY KEY,
            task_id     INTEGER,
            kind        TEXT NOT NULL,
            rule        TEXT,
            action      TEXT,
            actor       TEXT,
            detail      TEXT,                   -- JSON
            at          REAL NOT NULL
        );
        CREATE INDEX events_task ON events (task_id) WHERE task_id IS NOT NULL;

        CREATE TABLE gold (
            task_id     INTEGER PRIMARY KEY REFERENCES tasks (id),
            label       TEXT NOT NULL            -- JSON
        );

        CREATE TABLE cursors (
            name        TEXT PRIMARY KEY,
            value       TEXT,
            updated_at  REAL NOT NULL
        );

        CREATE TABLE rejects (
            id          INTEGER PRIMARY KEY,
            source      TEXT NOT NULL,
            line        INTEGER,
            reason      TEXT NOT NULL,
            raw         TEXT,
            at          REAL NOT NULL,
            UNIQUE (source, line)
        );
        """
    )
    _set_version(db, 1)


@migrations()
def m002_worker_indexes(db: Database) -> None:
    """Per-worker indexes: worker facts (``worker.submitted``, ``fast_submits``, ``skips_in_row``,
    ``agreement``) and gold mixing read a worker's own annotations and assignments."""
    _run_ddl(
        db,
        """
        CREATE INDEX annotations_worker ON annotations (worker, id);
        CREATE INDEX assignments_worker ON assignments (worker, id);
        """
    )
    _set_version(db, 2)


@migrations()
def m003_plugins(db: Database) -> None:
    """Plugin bookkeeping: what each sink has received, automatic reviews, the notification outbox, runs."""
    _run_ddl(
        db,
        """
        -- One row per (sink, task): the task's final label as the sink received it.
        -- A task finalised again (final_at changed) is sent again.
        CREATE TABLE sink_deliveries (
            sink        TEXT NOT NULL,
            task_id     INTEGER NOT NULL REFERENCES tasks (id),
            final_at    REAL,
            delivered_at REAL NOT NULL,
            PRIMARY KEY (sink, task_id)
        ) WITHOUT ROWID;

        -- Each automatic reviewer judges a task once per round (abstentions included).
        CREATE TABLE auto_reviews (
            task_id     INTEGER NOT NULL REFERENCES tasks (id),
            round       INTEGER NOT NULL,
            reviewer    TEXT NOT NULL,
            verdict     TEXT NOT NULL,          -- approve | reject | abstain | error
            reason      TEXT,
            at          REAL NOT NULL,
            PRIMARY KEY (task_id, round, reviewer)
        ) WITHOUT ROWID;
        CREATE INDEX tasks_in_review ON tasks (id) WHERE status = 'open' AND stage = 'review';

        -- Notifications waiting for (or done with) delivery; the body is kept byte for byte.
        CREATE TABLE outbox (
            id          INTEGER PRIMARY KEY,
            target      TEXT NOT NULL,          -- the notify entry
            event_id    INTEGER NOT NULL,
            event       TEXT NOT NULL,          -- done, escalated, ...
            body        TEXT NOT NULL,
            status      TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered
            attempts    INTEGER NOT NULL DEFAULT 0,
            next_at     REAL NOT NULL,
            last_error  TEXT,
            created_at  REAL NOT NULL,
            delivered_at REAL,
            UNIQUE (target, event_id, event)
        );
        CREATE INDEX outbox_pending ON outbox (target, id) WHERE status = 'pending';

        -- One row per `labelyard run`; a row never finished is a run that was killed.
        CREATE TABLE plugin_runs (
            id          INTEGER PRIMARY KEY,
            pid         INTEGER,
            started_at  REAL NOT NULL,
            finished_at REAL,
            ok          INTEGER,
            summary     TEXT,                   -- JSON
            errors      TEXT                    -- JSON list of {plugin, step, error}
        );
        """
    )
    _set_version(db, 3)


@migrations()
def m004_counters(db: Database) -> None:
    """Counters kept by triggers, so the TUI's dashboard never counts a million rows.

    ``task_counts``: tasks per (status, queue, stage, claimable, is_gold), where
    ``claimable`` is ``status = 'open' AND free_slots > 0`` (queue and stage ``''``
    for none). ``rule_counts``: how often each rule decided (events with a rule,
    by the section in their detail). ``activity``: events per hour of kind
    ``created``, ``submitted`` and ``final`` (``actor`` kept for submissions, so
    per-worker throughput is a small range read). Existing rows are counted once here.
    The index ``tasks_open_age`` gives each queue's oldest open task and its SLA breaches.
    """
    _run_ddl_with_triggers(
        db,
        """
        CREATE TABLE task_counts (
            status      TEXT NOT NULL,
            queue       TEXT NOT NULL,          -- '' when the task has none
            stage       TEXT NOT NULL,          -- '' when the task has none
            claimable   INTEGER NOT NULL,       -- status = 'open' AND free_slots > 0
            is_gold     INTEGER NOT NULL,
            n           INTEGER NOT NULL,
            PRIMARY KEY (status, queue, stage, claimable, is_gold)
        ) WITHOUT ROWID;

        CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
            INSERT INTO task_counts (status, queue, stage, claimable, is_gold, n)
            VALUES (NEW.status, coalesce(NEW.queue, ''), coalesce(NEW.stage, ''),
                    NEW.status = 'open' AND NEW.free_slots > 0, NEW.is_gold, 1)
            ON CONFLICT (status, queue, stage, claimable, is_gold) DO UPDATE SET n = n + 1;
        END;

        CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
            UPDATE task_counts SET n = n - 1
            WHERE status = OLD.status AND queue = coalesce(OLD.queue, '') AND stage = coalesce(OLD.stage, '')
              AND claimable = (OLD.status = 'open' AND OLD.free_slots > 0) AND is_gold = OLD.is_gold;
        END;

        CREATE TRIGGER task_counts_update AFTER UPDATE OF status, queue, stage, free_slots, is_gold ON tasks
        WHEN OLD.status IS NOT NEW.status OR OLD.queue IS NOT NEW.queue OR OLD.stage IS NOT NEW.stage
          OR (OLD.status = 'open' AND OLD.free_slots > 0) IS NOT (NEW.status = 'open' AND NEW.free_slots > 0)
          OR OLD.is_gold IS NOT NEW.is_gold
        BEGIN
            UPDATE task_counts SET n = n - 1
            WHERE status = OLD.status AND queue = coalesce(OLD.queue, '') AND stage = coalesce(OLD.stage, '')
              AND claimable = (OLD.status = 'open' AND OLD.free_slots > 0) AND is_gold = OLD.is_gold;
            INSERT INTO task_counts (status, queue, stage, claimable, is_gold, n)
            VALUES (NEW.status, coalesce(NEW.queue, ''), coalesce(NEW.stage, ''),
                    NEW.status = 'open' AND NEW.free_slots > 0, NEW.is_gold, 1)
            ON CONFLICT (status, queue, stage, claimable, is_gold) DO UPDATE SET n = n + 1;
        END;

        INSERT INTO task_counts (status, queue, stage, claimable, is_gold, n)
        SELECT status, coalesce(queue, ''), coalesce(stage, ''), status = 'open' AND free_slots > 0, is_gold, count(*)
        FROM tasks GROUP BY 1, 2, 3, 4, 5;

        -- Oldest waiting work and SLA breaches per queue: a range read, not a scan of the queue.
        CREATE INDEX tasks_open_age ON tasks (queue, stage_at) WHERE status = 'open' AND is_gold = 0;

        CREATE TABLE rule_counts (
            section     TEXT NOT NULL,          -- on_create, on_quorum, ... ('' when unknown)
            rule        TEXT NOT NULL,
            n           INTEGER NOT NULL,
            last_at     REAL,
            PRIMARY KEY (section, rule)
        ) WITHOUT ROWID;

        CREATE TRIGGER rule_counts_insert AFTER INSERT ON events WHEN NEW.rule IS NOT NULL BEGIN
            INSERT INTO rule_counts (section, rule, n, last_at)
            VALUES (coalesce(CASE WHEN json_valid(NEW.detail) THEN json_extract(NEW.detail, '$.section') END, ''),
                    NEW.rule, 1, NEW.at)
            ON CONFLICT (section, rule) DO UPDATE SET n = n + 1, last_at = max(last_at, excluded.last_at);
        END;

        INSERT INTO rule_counts (section, rule, n, last_at)
        SELECT coalesce(CASE WHEN json_valid(detail) THEN json_extract(detail, '$.section') END, ''), rule,
               count(*), max(at)
        FROM events WHERE rule IS NOT NULL GROUP BY 1, 2;

        CREATE TABLE activity (
            hour        INTEGER NOT NULL,       -- epoch seconds // 3600
            kind        TEXT NOT NULL,          -- created | submitted | final
            actor       TEXT NOT NULL,          -- the worker for submitted, else ''
            n           INTEGER NOT NULL,
            PRIMARY KEY (hour, kind, actor)
        ) WITHOUT ROWID;

        CREATE TRIGGER activity_insert AFTER INSERT ON events
        WHEN NEW.kind IN ('created', 'submitted', 'final') BEGIN
            INSERT INTO activity (hour, kind, actor, n)
            VALUES (CAST(NEW.at / 3600 AS INTEGER), NEW.kind,
                    CASE WHEN NEW.kind = 'submitted' THEN coalesce(NEW.actor, '') ELSE '' END, 1)
            ON CONFLICT (hour, kind, actor) DO UPDATE SET n = n + 1;
        END;

        INSERT INTO activity (hour, kind, actor, n)
        SELECT CAST(at / 3600 AS INTEGER), kind, CASE WHEN kind = 'submitted' THEN coalesce(actor, '') ELSE '' END,
               count(*)
        FROM events WHERE kind IN ('created', 'submitted', 'final') GROUP BY 1, 2, 3;
        """
    )
    _set_version(db, 4)


@migrations()
def m005_worker_counters(db: Database) -> None:
    """Per-worker counters kept by submit (so quorum and on_worker read O(1) facts), and
    an index of slots offered back to a worker (so every claim checks them cheaply)."""
    _run_ddl(
        db,
        """
        ALTER TABLE workers ADD COLUMN submitted INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE workers ADD COLUMN gold_answered INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE workers ADD COLUMN gold_correct INTEGER NOT NULL DEFAULT 0;
        UPDATE workers SET
            submitted = (SELECT count(*) FROM annotations AS a WHERE a.worker = workers.id),
            gold_answered = (SELECT count(*) FROM annotations AS a JOIN gold AS g ON g.task_id = a.task_id
                             WHERE a.worker = workers.id),
            gold_correct = (SELECT count(*) FROM annotations AS a JOIN gold AS g ON g.task_id = a.task_id
                            WHERE a.worker = workers.id AND a.label = g.label);
        CREATE INDEX assignments_offered ON assignments (worker) WHERE status = 'offered';
        """
    )
    _set_version(db, 5)


@migrations()
def m006_rule_counts_without_json(db: Database) -> None:
    """``created`` events are always ``on_create`` decisions: count them by kind instead of
    parsing each one's detail JSON (the trigger runs once per ingested row)."""
    _run_ddl_with_triggers(
        db,
        """
        DROP TRIGGER rule_counts_insert;
        CREATE TRIGGER rule_counts_insert AFTER INSERT ON events WHEN NEW.rule IS NOT NULL BEGIN
            INSERT INTO rule_counts (section, rule, n, last_at)
            VALUES (CASE WHEN NEW.kind = 'created' THEN 'on_create'
                         ELSE coalesce(CASE WHEN json_valid(NEW.detail) THEN json_extract(NEW.detail, '$.section') END, '')
                    END,
                    NEW.rule, 1, NEW.at)
            ON CONFLICT (section, rule) DO UPDATE SET n = n + 1, last_at = max(last_at, excluded.last_at);
        END;
        """
    )
    _set_version(db, 6)


@migrations()
def m007_new_tasks_counted_per_batch(db: Database) -> None:
    """New tasks and their ``created`` events are counted once per inserted batch by the
    store (:meth:`Store.insert_task_tuples`, :meth:`Store.add_created_events`): one
    grouped upsert per batch instead of three trigger upserts per ingested row, which
    were a fifth of the ingest writer's time. Updates, deletes and every other event
    are still counted by their triggers."""
    _run_ddl_with_triggers(
        db,
        """
        DROP TRIGGER task_counts_insert;
        DROP TRIGGER rule_counts_insert;
        CREATE TRIGGER rule_counts_insert AFTER INSERT ON events
        WHEN NEW.rule IS NOT NULL AND NEW.kind != 'created' BEGIN
            INSERT INTO rule_counts (section, rule, n, last_at)
            VALUES (coalesce(CASE WHEN json_valid(NEW.detail) THEN json_extract(NEW.detail, '$.section') END, ''),
                    NEW.rule, 1, NEW.at)
            ON CONFLICT (section, rule) DO UPDATE SET n = n + 1, last_at = max(last_at, excluded.last_at);
        END;
        DROP TRIGGER activity_insert;
        CREATE TRIGGER activity_insert AFTER INSERT ON events
        WHEN NEW.kind IN ('submitted', 'final') BEGIN
            INSERT INTO activity (hour, kind, actor, n)
            VALUES (CAST(NEW.at / 3600 AS INTEGER), NEW.kind,
                    CASE WHEN NEW.kind = 'submitted' THEN coalesce(NEW.actor, '') ELSE '' END, 1)
            ON CONFLICT (hour, kind, actor) DO UPDATE SET n = n + 1;
        END;
        """
    )
    _set_version(db, 7)


@migrations()
def m008_plugin_reject_keys(db: Database) -> None:
    """Rejects keyed by ``(source, line, row_key)``. A file's rejects keep ``row_key`` empty, so
    they stay one per line and a file read again replaces them by line. A source plugin's lines
    need not be unique in its origin (each page of an API numbered from 1, no lines at all):
    its rejects get the row's own key (``router.ingest_pipeline.PartRejects``), so two bad rows
    on one line are two rejects. SQLite cannot change a table's ``UNIQUE``: the table is made
    again, ids kept."""
    _run_ddl(
        db,
        """
        CREATE TABLE rejects_keyed (
            id          INTEGER PRIMARY KEY,
            source      TEXT NOT NULL,
            line        INTEGER,
            reason      TEXT NOT NULL,
            raw         TEXT,
            at          REAL NOT NULL,
            row_key     TEXT NOT NULL DEFAULT '',   -- '' for a file's rows; a plugin row's own key
            UNIQUE (source, line, row_key)
        );
        INSERT INTO rejects_keyed (id, source, line, reason, raw, at)
            SELECT id, source, line, reason, raw, at FROM rejects;
        DROP TABLE rejects;
        ALTER TABLE rejects_keyed RENAME TO rejects;
        """
    )
    _set_version(db, 8)


@migrations()
def m009_rule_counts_by_identity(db: Database) -> None:
    """``rule_counts`` per rule identity, ``(section, rule_key)``, where ``rule_key`` is the key an
    event carries (an ``on_timer`` rule's: its name, or for an unnamed rule a fingerprint of its
    ``when`` and ``do``), else the rule's name; ``rule`` is the name it was last shown by.

    Counted by shown name, an unnamed timer rule took the count of whichever rule held its place
    before: a rule inserted before it in a new version showed the old rule's count, and the old
    rule, now one place down, showed none. The counts are made again from the events here: an
    ``on_timer`` event written before keys were recorded names an unnamed rule by its place alone,
    so its key is read from that place in the workflow version active when it was written (as
    ``router.timers.RuleIdentities`` does); one whose rule cannot be found there keeps its place.

    Only events that mention ``"rule_key"`` have their JSON read twice by the trigger (``instr``
    first): most decisions carry none.
    """
    _run_ddl_with_triggers(
        db,
        """
        DROP TRIGGER rule_counts_insert;
        DROP TABLE rule_counts;
        CREATE TABLE rule_counts (
            section     TEXT NOT NULL,          -- on_create, on_quorum, ... ('' when unknown)
            rule_key    TEXT NOT NULL,          -- the rule's identity: its events' rule_key, else its name
            rule        TEXT NOT NULL,          -- the name it was last shown by
            n           INTEGER NOT NULL,
            last_at     REAL,
            PRIMARY KEY (section, rule_key)
        ) WITHOUT ROWID;

        CREATE TRIGGER rule_counts_insert AFTER INSERT ON events
        WHEN NEW.rule IS NOT NULL AND NEW.kind != 'created' BEGIN
            INSERT INTO rule_counts (section, rule_key, rule, n, last_at)
            VALUES (coalesce(CASE WHEN json_valid(NEW.detail) THEN json_extract(NEW.detail, '$.section') END, ''),
                    coalesce(CASE WHEN instr(NEW.detail, '"rule_key"') AND json_valid(NEW.detail)
                                  THEN json_extract(NEW.detail, '$.rule_key') END, NEW.rule),
                    NEW.rule, 1, NEW.at)
            ON CONFLICT (section, rule_key) DO UPDATE SET
                n = n + 1, rule = excluded.rule, last_at = max(last_at, excluded.last_at);
        END;
        """
    )
    conn = db.conn
    section = "CASE WHEN kind = 'created' THEN 'on_create' ELSE coalesce(CASE WHEN json_valid(detail) " \
              "THEN json_extract(detail, '$.section') END, '') END"
    key = "coalesce(CASE WHEN kind != 'created' AND instr(detail, '\"rule_key\"') AND json_valid(detail) " \
          "THEN json_extract(detail, '$.rule_key') END, rule)"
    legacy = f"({section}) = 'on_timer' AND rule LIKE 'on\\_timer[%' ESCAPE '\\' AND ({key}) = rule"
    # the bare column ``rule`` is taken from the row with max(at): the name the rule was last shown by
    conn.execute(
        f"INSERT INTO rule_counts (section, rule_key, rule, n, last_at) "
        f"SELECT {section}, {key}, rule, count(*), max(at) FROM events "
        f"WHERE rule IS NOT NULL AND NOT ({legacy}) GROUP BY 1, 2")
    placed: Counter = Counter()
    last: dict[tuple[str, str], float] = {}
    keys = _LegacyTimerKeys(conn)
    for event_id, rule, at in conn.execute(f"SELECT id, rule, at FROM events WHERE rule IS NOT NULL AND {legacy}"):
        ident = (keys.key(event_id, rule), rule)
        placed[ident] += 1
        last[ident] = max(last.get(ident, at), at)
    for (rule_key, rule), n in placed.items():
        conn.execute(
            "INSERT INTO rule_counts (section, rule_key, rule, n, last_at) VALUES ('on_timer', ?, ?, ?, ?) "
            "ON CONFLICT (section, rule_key) DO UPDATE SET n = n + excluded.n, "
            "rule = CASE WHEN excluded.last_at > last_at THEN excluded.rule ELSE rule END, "
            "last_at = max(last_at, excluded.last_at)",
            (rule_key, rule, n, last[(rule_key, rule)]))
    _set_version(db, 9)


class _LegacyTimerKeys:
    """The key of the unnamed ``on_timer`` rule an older event names by its place (``on_timer[2]``): that
    place in the workflow version active when the event was written (the last ``workflow_applied`` before
    it), as ``router.timers.RuleIdentities`` reads it; written out here so that this migration keeps doing
    what it did when it was written (the fingerprint is :func:`rules.workflow.rule_key`, which events carry
    and which therefore never changes)."""

    PLACE = re.compile(r"on_timer\[([1-9][0-9]*)\]")

    def __init__(self, conn: sqlite3.Connection):
        specs = {(name, version): spec for name, version, spec in conn.execute(
            "SELECT name, version, spec FROM workflows")}
        self.applied: list[int] = []  # the workflow_applied events' ids, ascending
        self.entries: list[list | None] = []  # each one's on_timer entries
        for event_id, detail in conn.execute(
                "SELECT id, detail FROM events WHERE kind = 'workflow_applied' ORDER BY id"):
            try:
                d = json.loads(detail)
                spec = json.loads(specs[(d["workflow"], d["version"])])
            except (TypeError, ValueError, KeyError):
                continue
            entries = spec.get("on_timer") if isinstance(spec, dict) else None
            self.applied.append(event_id)
            self.entries.append(entries if isinstance(entries, list) else None)

    def key(self, event_id: int, place: str) -> str:
        from rules.workflow import rule_key

        match = self.PLACE.fullmatch(place)
        i = bisect_left(self.applied, event_id)  # applies strictly before the event
        entries = self.entries[i - 1] if i else None
        if match is None or entries is None:
            return place
        index = int(match.group(1)) - 1
        if index >= len(entries) or not isinstance(entries[index], dict) or isinstance(entries[index].get("name"), str):
            return place
        return rule_key("on_timer", entries[index])


@migrations()
def m010_final_vote_marks(db: Database) -> None:
    """Agreement with final labels kept as it happens (``router.vote_agreement``): each vote on a
    finished non-gold task marked in ``annotations.agrees`` (1 it gives the final label, 0 not;
    NULL for every other submission), the sums on the worker row, so ``worker.agreement`` reads
    O(1) instead of judging the worker's whole history at each submission. An existing database's
    votes are marked here, judged by the active workflow's ``labels``."""
    _run_ddl(
        db,
        """
        ALTER TABLE annotations ADD COLUMN agrees INTEGER;      -- NULL | 0 | 1
        ALTER TABLE workers ADD COLUMN final_votes INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE workers ADD COLUMN final_agreed INTEGER NOT NULL DEFAULT 0;
        """
    )
    from rules.workflow import LabelSpec  # only here: the label comparisons are not needed to migrate

    from .vote_agreement import task_marks

    active = db.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()
    spec = LabelSpec.from_spec(json.loads(active[0]).get("labels") if active else None)
    votes = db.execute(
        "SELECT a.id, a.task_id, a.worker, a.label, t.final_label FROM annotations AS a JOIN tasks AS t "
        "ON t.id = a.task_id WHERE a.stage IN ('annotate', 'correct') AND t.status = 'done' AND t.is_gold = 0 "
        "ORDER BY a.task_id, a.id")
    marks: list[tuple[int, int]] = []
    for _task, rows in itertools.groupby(votes, key=operator.itemgetter(1)):
        rows = list(rows)
        found = task_marks([(r[0], r[2], r[3], None) for r in rows], rows[0][4], spec, counted=True)
        marks.extend((new, vote) for vote, _worker, _old, new in found)
    db.conn.executemany("UPDATE annotations SET agrees = ? WHERE id = ?", marks)
    db.execute("UPDATE workers SET "
               "final_votes = (SELECT count(agrees) FROM annotations AS a WHERE a.worker = workers.id), "
               "final_agreed = (SELECT coalesce(sum(agrees), 0) FROM annotations AS a WHERE a.worker = workers.id)")
    _set_version(db, 10)


def _holds_structure(label, answer) -> bool:
    """Whether an older ``same_label`` may have judged ``label`` against ``answer`` otherwise (what
    m011 mends): a whole label that is a list or object against text (it equalled the text spelling
    it), or a box's or span's class that is a list or object (also equal to its spelling, and a
    class list to itself in another order)."""
    structured = (list, dict)
    if (isinstance(label, str) and isinstance(answer, structured)) or (
            isinstance(answer, str) and isinstance(label, structured)):
        return True
    return any(isinstance(obj, dict) and isinstance(obj.get("label"), structured)
               for side in (label, answer) if isinstance(side, list) for obj in side)


def _judge_labels_again(db: Database, migration: str, *, vote_changed: Callable[[Any, Any], bool] | None,
                        answer_changed: Callable[[Any, Any], bool] | None,
                        only_types: tuple[str, ...] = (), score: Callable[[Any, Any, Any], bool] | None = None) -> None:
    """Judge again, by the active workflow's labels as ``apply`` judges them, the vote marks
    (``annotations.agrees``) whose comparison ``vote_changed(label, final)`` says may have changed
    (none when it is ``None``), with the worker sums set from them; score again from scratch, as
    ``gold add`` scores a changed question's, the gold counters of a worker with an answer
    ``answer_changed(label, answer)`` says so (none when it is ``None``), with a ``gold_rescored``
    event naming ``migration`` when they change. With ``only_types``, nothing is done unless the
    labels are of one of those types. Gold answers are scored by ``score(label, answer, spec)``: by
    ``same_label`` unless given (as the migrations before ``m018`` were released)."""
    from rules.workflow import LabelSpec  # only here: the label comparisons are not needed to migrate

    from . import clock
    from .consensus import agrees_with_final, same_label
    from .store import dumps, loads

    active = db.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()
    spec = LabelSpec.from_spec(json.loads(active[0]).get("labels") if active else None)
    if only_types and spec.type not in only_types:
        return
    score = score or same_label
    votes = [] if vote_changed is None else db.execute(
        "SELECT a.id, a.worker, a.label, a.agrees, t.final_label FROM annotations AS a "
        "JOIN tasks AS t ON t.id = a.task_id WHERE a.agrees IS NOT NULL")
    marks = []
    for vote, worker, label, old, final in votes:
        label, final = loads(label), loads(final)
        if vote_changed(label, final) and (new := int(agrees_with_final(label, final, spec))) != old:
            marks.append((new, vote, worker))
    db.conn.executemany("UPDATE annotations SET agrees = ? WHERE id = ?", [(new, vote) for new, vote, _ in marks])
    moved: Counter[str] = Counter()
    for new, _vote, worker in marks:
        moved[worker] += 1 if new else -1
    db.conn.executemany("UPDATE workers SET final_agreed = final_agreed + ? WHERE id = ?",
                        [(by, worker) for worker, by in moved.items() if by])
    answers = [] if answer_changed is None else db.execute(
        "SELECT a.worker, a.label, g.label FROM gold AS g JOIN annotations AS a ON a.task_id = g.task_id "
        "JOIN tasks AS t ON t.id = g.task_id WHERE a.label IS NOT NULL AND t.status != 'invalid' "
        "ORDER BY a.worker, a.id").fetchall()  # a retired question's answers are not scored (`gold retire`)
    now = clock.now()
    for worker, rows in itertools.groupby(answers, key=operator.itemgetter(0)):
        judged = [(loads(label), loads(answer)) for _worker, label, answer in rows]
        if not any(answer_changed(label, answer) for label, answer in judged):
            continue  # judged alike before: scored at submission, as it stays
        counts = (len(judged), sum(score(label, answer, spec) for label, answer in judged))
        was = db.execute("SELECT gold_answered, gold_correct FROM workers WHERE id = ?", [worker]).fetchone()
        if was is None or tuple(was) == counts:
            continue
        db.execute("UPDATE workers SET gold_answered = ?, gold_correct = ? WHERE id = ?", [*counts, worker])
        detail = {"worker": worker, "gold_answered": counts[0], "gold_correct": counts[1],
                  "was": {"gold_answered": was[0], "gold_correct": was[1]}, "migration": migration}
        db.execute("INSERT INTO events (kind, actor, detail, at) VALUES ('gold_rescored', 'labelyard', ?, ?)",
                   [dumps(detail), now])


@migrations()
def m011_json_value_classes(db: Database) -> None:
    """Classes and labels compared as JSON values (``router.consensus.JsonStructure``): a list or object
    was equal to the text spelling it (``["car"]`` and ``"[\\"car\\"]"``), a class list to itself in
    another order, in ``same_label``. Every vote mark is judged again, and the gold counters of a
    worker with an answer such a comparison judged (``_judge_labels_again``)."""
    _judge_labels_again(db, "m011_json_value_classes", vote_changed=lambda _label, _final: True,
                        answer_changed=_holds_structure)
    _set_version(db, 11)


def _several_objects(label, answer) -> bool:
    """Whether the best-pair-first pairing before m012 may have judged ``label`` against ``answer``
    otherwise than a maximum matching: both lists of at least two objects of the same number."""
    return (isinstance(label, list) and isinstance(answer, list) and len(label) == len(answer) >= 2
            and all(isinstance(obj, dict) for obj in label + answer))


@migrations()
def m012_one_to_one_matching(db: Database) -> None:
    """Boxes and spans match one to one by a maximum matching (``router.matching``), not best pair
    first, which could use up an object another pair needed and judge a right label wrong. When the
    active workflow's labels are boxes or spans, vote marks of labels of two or more objects are
    judged again, and the gold counters of a worker with such an answer (``_judge_labels_again``)."""
    _judge_labels_again(db, "m012_one_to_one_matching", vote_changed=_several_objects,
                        answer_changed=_several_objects, only_types=("boxes", "spans"))
    _set_version(db, 12)


@migrations()
def m013_read_path_indexes(db: Database) -> None:
    """Two reads that grew with the project, found by index:

    - Each annotation keeps its slot's queue (``annotations.queue``), indexed for annotate/correct
      submissions, so a queue's latest votes (``queue.kappa``, ``queue.alpha``, Dawid-Skene's history,
      ``agreement --queue Q --latest N``) are read from the end of that queue's range, however many
      votes the project's other queues hold. Paid once per annotate/correct submission, never by a claim.
    - The ``workflow_applied`` events (which version was active when: ``explain``, ``replay``, ``run``)
      by a partial index that holds only them, so no other event's insert pays for it.

    Its earlier form (``m013_vote_queue_index``, released without the second index) may have run: what
    it did is skipped here, so only the missing index is made."""
    if "queue" not in {row[1] for row in db.execute("PRAGMA table_info(annotations)")}:
        _run_ddl(
            db,
            """
            ALTER TABLE annotations ADD COLUMN queue TEXT;      -- the slot's queue, as assignments.queue
            UPDATE annotations SET queue = (SELECT s.queue FROM assignments AS s
                                            WHERE s.id = annotations.assignment_id);
            """
        )
    _run_ddl(
        db,
        """
        CREATE INDEX IF NOT EXISTS annotations_queue_votes ON annotations (queue)
            WHERE stage IN ('annotate', 'correct');
        CREATE INDEX IF NOT EXISTS events_workflow_applied ON events (kind) WHERE kind = 'workflow_applied';
        """
    )
    _set_version(db, 13)


@migrations()
def m014_task_list_orders(db: Database) -> None:
    """The TUI's task list sorted by priority, by age or by last change read a page by sorting every
    task the filter lists (~0.3 s a page at 1,000,000 tasks). One index per order gives its pages by
    keyset, as the id order's are given by the rowid. Each holds every task (a partial index on
    ``is_gold = 0`` would tempt the planner into reading whole scans through it, in random order).
    A claim moves ``tasks_list_updated`` (it writes ``updated_at``); the other two move when a task's
    priority or stage changes."""
    _run_ddl(
        db,
        """
        CREATE INDEX tasks_list_priority ON tasks (priority);
        CREATE INDEX tasks_list_age ON tasks (stage_at);
        CREATE INDEX tasks_list_updated ON tasks (updated_at);
        """
    )
    _set_version(db, 14)


@migrations()
def m015_gold_scored_by_labels(db: Database) -> None:
    """Gold counters scored by the label type's comparison (``same_label``), from scratch. Up to
    schema 7 an answer was right when its JSON text equalled the gold answer's (``m005`` counted
    existing answers so too, and so did ``submit`` before ``same_label``): ``["a", "b"]`` against
    ``["b", "a"]``, ``1.0`` against ``1``, a box a pixel off were wrong for a worker who answered then
    and right for one who answered later. ``m011`` and ``m012`` scored again only the answers their own
    comparisons changed; here every worker's gold answers are scored as ``gold add`` scores them (one
    pass over the gold answers), with a ``gold_rescored`` event when the counters change. Vote marks
    were judged by ``same_label`` from the start (``m010``): they are left as they are."""
    _judge_labels_again(db, "m015_gold_scored_by_labels", vote_changed=None,
                        answer_changed=lambda _label, _answer: True)
    _set_version(db, 15)


@migrations()
def m016_outbox_pending_index(db: Database) -> None:
    """The outbox's index as ``m003`` makes it now, ``outbox_pending`` on ``(target, id)`` for the
    pending rows (a target's notifications are delivered in order). ``m003`` as released at
    4e95bb0 made ``outbox_due`` on ``(target, next_at)`` instead, which no query uses: a database
    made then kept it, and read its pending notifications without an index. It is dropped, and
    ``outbox_pending`` made where it is missing."""
    _run_ddl(
        db,
        """
        DROP INDEX IF EXISTS outbox_due;
        CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (target, id) WHERE status = 'pending';
        """
    )
    _set_version(db, 16)


@migrations()
def m017_number_votes_within_tolerance(db: Database) -> None:
    """A ``number`` vote agrees with its task's final label when it is within the tolerance consensus
    counts in ``top_count`` (``router.consensus.agrees_with_final``), no longer only when equal to it:
    votes of 3 and 3.1 that made the final 3.05 were marked as disagreeing, and ``worker.agreement``
    (the sums on the worker row) kept those marks. When the active workflow's labels are numbers, every
    vote mark is judged again by them, as ``apply`` judges the marks (``_judge_labels_again``); the
    workers' ``final_agreed`` move with the marks. Gold answers are scored by value as before: untouched."""
    _judge_labels_again(db, "m017_number_votes_within_tolerance", vote_changed=lambda _label, _final: True,
                        answer_changed=None, only_types=("number",))
    _set_version(db, 17)


def _numbers_apart(label, answer) -> bool:
    """Whether a gold answer scored by value before ``m018`` may be scored otherwise within the
    tolerance: two numbers (not booleans) of different value."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return number(label) and number(answer) and label != answer


@migrations()
def m018_number_gold_within_tolerance(db: Database) -> None:
    """A gold answer to a ``number`` question is right within the tolerance a vote agrees with a final
    label (``router.consensus.gold_answer_right``), no longer only when equal to the answer: 3.1 to a
    gold 3.0 on a 0..10 scale was scored wrong while the same vote agreed with a final 3.0. When the
    active workflow's labels are numbers, the gold counters of each worker with an answer of another
    value than the gold one are scored again from scratch (``_judge_labels_again``), with a
    ``gold_rescored`` event naming this migration where they change. Vote marks are left as ``m017``
    judged them."""
    from .consensus import gold_answer_right

    _judge_labels_again(db, "m018_number_gold_within_tolerance", vote_changed=None,
                        answer_changed=_numbers_apart, only_types=("number",), score=gold_answer_right)
    _set_version(db, 18)


def pending(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations ``conn``'s database has yet to apply (a read)."""
    return [m.name for m in migrations.pending(Database(conn))]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations to ``conn``; returns the names applied."""
    db = Database(conn)
    pending = [m.name for m in migrations.pending(db)]
    migrations.apply(db)
    if pending:  # every migration is applied now: the newest one's number, even if an older one ran last
        _set_version(db, SCHEMA_VERSION)
    return pending
