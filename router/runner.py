"""``labelyard run``: the headless cron job over the workflow's plugins.

One run, in order: the workflow's ``sources`` are read and ingested; its
``reviewers`` judge tasks waiting in review stages; ``on_timer`` rules fire
(``router.timers``); newly final tasks go to its ``sinks``; events go to its
``notify`` entries through the outbox. Every step is safe to repeat:

- a source's cursor is stored after each part it yields has been ingested,
  and ingest skips known ids, so a part read twice creates nothing twice;
- each sink records, in one transaction with its new state, which tasks it
  received; a task is offered again only if that record is missing;
- each automatic reviewer judges a task once per round;
- notifications are queued in the outbox in the same transaction that moves
  the entry's event cursor, and marked delivered when the notifier returns.

A plugin that raises is recorded (with the entry it served) and the run goes
on with the next entry and step; what the failed call was doing is not kept
(its part is not ingested, its batch not recorded, its notification stays
queued). An entry whose settings are wrong, or a sink whose path is one of
the database's own files, fails alone; a reviewer that raises on one task
fails that task alone. A file lock beside the database keeps two runs from
overlapping.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rules.visible_text import quoted

from . import clock
from .consensus import final_agreement
from .context import review_facts, votes_facts
from .errors import LabelyardError
from .event_tasks import states_at
from .ingest import JSON_RESERVED, IgnoredKeys, RowError, RowProblem, TaskInput, check_row
from .plugin_api import (FinalTask, Notification, PluginError, PluginRun, ReviewItem, SourcePart, Verdict,
                         checked_setting, worker_name_problem)
from .plugin_time import DEFAULT_LIMIT_S, PluginTimeout, time_limit
from .plugin_values import json_value_problem, plugin_text, short, storable, without_password
from .plugins import (Plugins, declared_problems, describe_error, duplicate_entries, duplicate_message, entry_key,
                      entry_problems, entry_setting, same_file_message, same_file_sinks, sink_database_problem,
                      trace, workflow_queues)
from .render import one_line, visible
from .source_cursor import SourceCursor, cursor_problem
from .store import loads, text_problem
from .writer_lock import lock_file_hint, lock_path, open_lock_file

SINK_BATCH = 500
REVIEW_PAGE = 200
EVENT_PAGE = 1000
RETRY_FIRST_S = 60.0
RETRY_MAX_S = 3600.0
RETRY_MAX_DOUBLINGS = 6  # 60 s * 2**6 is past the hour
CLOCK_SLACK_S = 1.0  # a wait this much past its back-off is the float rounding of `now + delay - now`, not a clock step
DEFAULT_EVENTS = ("done",)


@dataclass
class Failure:
    """A plugin (or step) that failed in a run."""

    step: str
    plugin: str
    entry: str
    error: str

    def __post_init__(self) -> None:
        # A plugin's words and names may hold bytes that are not UTF-8 (a file name from os.listdir()):
        # written out here, so the run's record, its failure lines and --json can hold them.
        # A URL's password (a plugin's `POST http://bob:pw@host/` error) is hidden: the line is printed and stored.
        for name in ("step", "plugin", "entry", "error"):
            setattr(self, name, without_password(plugin_text(getattr(self, name))))

    def line(self) -> str:
        where = self.plugin if self.entry in (self.plugin, "") else f"{self.plugin} ({self.entry})"
        return f"{where}: {self.step} failed: {self.error}"

    def as_dict(self) -> dict[str, str]:
        return {"step": self.step, "plugin": self.plugin, "entry": self.entry, "error": self.error}


@dataclass
class RunReport:
    """What a run did, step by step, and what failed."""

    run_id: int | None = None
    steps: dict[str, Any] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "ok": self.ok, **self.steps, "failures": [f.as_dict() for f in self.failures]}


# -- the lock ----------------------------------------------------------------------------
@contextmanager
def run_lock(db_path: str) -> Iterator[str | None]:
    """Hold ``DB.run-lock`` for the run; yields ``None`` when held, else who holds it.

    An OS file lock: it goes away with its process, even one killed with -9.
    A new lock file is made 0660, as the database is. It is named from the
    database's real path, so a run through a symlink to the database and a run
    through its own name exclude each other.
    """
    path = lock_path(db_path, ".run-lock")
    try:
        fd = open_lock_file(path)
    except OSError as exc:
        raise LabelyardError(f"{path}: cannot open the run lock ({exc.strerror}); nothing done"
                             + lock_file_hint(exc, path)) from None
    try:
        if not _try_lock(fd):
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            yield f"pid {holder}" if holder else "another process"
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield None
    finally:
        os.close(fd)  # closing releases the lock


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


# -- shared pieces -----------------------------------------------------------------------
def entry_time_limit(entry: dict[str, Any]) -> float:
    """The seconds each call of the entry's plugin may take: its ``time_limit:`` (checked with its
    other settings before it runs), else :data:`~router.plugin_time.DEFAULT_LIMIT_S`."""
    value = entry.get("time_limit")
    return DEFAULT_LIMIT_S if value is None else float(value)


def make_run(engine, entry: dict[str, Any], key: str, state: Any, base_dir: str) -> PluginRun:
    labels = engine.workflow.labels
    return PluginRun(plugin=str(entry.get("plugin")), key=key,
                     config={k: v for k, v in entry.items() if k != "plugin"}, state=state, base_dir=base_dir,
                     label_type=labels.type, choices=tuple(labels.choices),
                     known_ids=engine.store.existing_external_ids, label_checker=labels.problem,
                     label_spec=labels)


def ingest_parts(engine, parts: Iterator[SourcePart], on_cursor: Callable[[Any, int], None] | None = None,
                 progress: Callable[[int], None] | None = None,
                 counts: dict[str, Any] | None = None, ignored: IgnoredKeys | None = None) -> dict[str, Any]:
    """Ingest each part a source yields (read in full first, so a failure mid-part keeps nothing of it).

    Returns the counts (``ingested``, ``duplicates``, ``rejected``, ``routed``, and ``changed``, ``prior_votes``,
    ``prior_votes_left_out`` and ``ignored_keys`` when there are any). They are kept in ``counts``
    as each part goes in, so when the source raises, what its earlier parts ingested is still
    there to tell; the top-level keys the rows left out are gathered in ``ignored`` too, with
    where each was first, for a warning. ``on_cursor(cursor, rows)`` gets each part's cursor and
    its number of rows once they went in.
    """
    from .ingest_pipeline import PartRejects

    ignored = ignored if ignored is not None else IgnoredKeys()

    result = counts if counts is not None else {}
    result.update(ingested=0, duplicates=0, rejected=0, routed={})
    routed: Counter = Counter()
    left_out: Counter = Counter()
    seen: Counter = Counter()  # the rejects of this read, by line and row: two bad rows never share one
    for part in parts:
        part = checked_part(part)  # before anything of it goes in: a cursor that cannot be stored fails it whole
        rows = [checked_row(row, part.origin) for row in part.rows]
        if rows or part.from_start:  # a part with no rows from the start still drops the origin's old rejects
            report = engine.ingest(rows, part.origin, progress=progress,
                                   part=PartRejects(seen, from_start=bool(part.from_start)))
            result["ingested"] += report.ingested
            result["duplicates"] += report.duplicates
            result["rejected"] += report.rejected
            if report.changed:  # ids stored with other content: the stored tasks were kept
                result["changed"] = result.get("changed", 0) + report.changed
            routed.update(report.routed)
            result["routed"] = dict(routed)
            if report.ignored:
                ignored.merge(report.ignored)
                result["ignored_keys"] = dict(ignored.rows)
        if part.votes:
            added = add_prior_votes(engine, part.votes, part.origin, left_out)
            if added:
                result["prior_votes"] = result.get("prior_votes", 0) + added
            if left_out:
                result["prior_votes_left_out"] = dict(left_out)
        if on_cursor is not None:
            on_cursor(part.cursor, len(rows))
    return result


def checked_part(part: Any) -> SourcePart:
    """``part`` when it is a :class:`SourcePart` whose ``origin`` is text and whose ``cursor`` can be
    stored; else a :class:`PluginError` saying what is wrong, raised before anything of the part
    is ingested (once its rows went in, a cursor that cannot be stored would have every later run
    read the part again, and fail again)."""
    if not isinstance(part, SourcePart):
        raise PluginError(f"yielded {type(part).__name__} {short(part)}; expected SourcePart(origin, rows, cursor)")
    if not isinstance(part.origin, str) or not part.origin:
        raise PluginError(f"a part's origin must be text (a file's path, a URL), not {short(part.origin)}")
    if text_problem(part.origin):  # a file name from os.listdir(): kept with its bad bytes written out
        part = dataclasses.replace(part, origin=plugin_text(part.origin))
    problem = cursor_problem(part.cursor)
    if problem is not None:
        raise PluginError(f"part of {part.origin}: {problem}; nothing of it was ingested")
    return part


def checked_verdict(verdict: Verdict, labels: Any) -> Verdict:
    """A reviewer's verdict as it can be recorded: its reason text (bytes that are not UTF-8 written
    out), its corrected label a JSON value the workflow takes; else a :class:`PluginError` saying why."""
    reason = verdict.reason
    if reason is not None and not isinstance(reason, str):
        raise PluginError(f"a verdict's reason must be text, not {short(reason)}")
    if verdict.label is not None:
        problem = json_value_problem(verdict.label, "the corrected label") or labels.problem(verdict.label)
        if problem:
            raise PluginError(f"corrected label is invalid: {problem}")
    if reason is not None and text_problem(reason):
        verdict = dataclasses.replace(verdict, reason=plugin_text(reason))
    return verdict


def checked_state(state: Any, what: str = "state") -> Any:
    """A sink's ``state`` when it can be stored, else a :class:`PluginError` saying why."""
    problem = json_value_problem(state, what)
    if problem is not None:
        raise PluginError(problem)
    return state


def prior_votes_said(counts: dict[str, Any]) -> str:
    """``, prior votes N, left out M (reason n; …)`` for a source's summary line ('' when none)."""
    text = f", prior votes {counts['prior_votes']}" if counts.get("prior_votes") else ""
    left = counts.get("prior_votes_left_out") or {}
    if left:
        reasons = "; ".join(f"{why} {n}" for why, n in sorted(left.items(), key=lambda kv: -kv[1]))
        text += f", prior votes left out {sum(left.values())} ({visible(reasons)})"
    return text


def checked_row(row: Any, origin: str) -> TaskInput | RowProblem:
    """A source's row given the checks of ``labelyard ingest`` (a ``TaskInput`` built by hand skipped them).

    The label itself is checked against the workflow's labels at routing.
    """
    if isinstance(row, RowProblem):
        return checked_problem(row)
    if not isinstance(row, TaskInput):
        raise PluginError(f"a part of {origin} holds {type(row).__name__} {row!r:.60}; "
                          "rows are TaskInput or RowProblem values")
    item: dict[str, Any] = {"id": row.external_id, "data": row.data, "category": row.category, "tags": row.tags}
    prediction = {k: v for k, v in (("label", row.label), ("confidence", row.confidence), ("model", row.model),
                                    ("scores", row.scores)) if v is not None}
    if prediction:
        item["prediction"] = prediction
    try:
        checked = check_row(item, row.line, (), JSON_RESERVED)
    except RowError as exc:
        return checked_problem(RowProblem(row.line, str(exc), json.dumps(item, ensure_ascii=False, default=repr)[:2000],
                                          row.external_id))
    # the row as its reader read it (for a reject found later), and the keys it left out (told)
    checked.raw, checked.col, checked.ignored, checked.label_field = row.raw, row.col, row.ignored, row.label_field
    return checked


def checked_problem(problem: RowProblem) -> RowProblem:
    """A bad row as a reject can keep it: its line a whole number (else none), its reason and its
    id text, its raw row text (JSON of what the plugin gave, cut to 2,000 characters), each with
    bytes that are not UTF-8 written out (a lone surrogate in an id from a file name)."""
    line = problem.line if isinstance(problem.line, int) and not isinstance(problem.line, bool) else None
    raw = problem.raw
    if raw is not None and not isinstance(raw, str):
        try:
            raw = json.dumps(raw, ensure_ascii=False, default=repr)
        except (ValueError, TypeError, RecursionError):
            raw = short(raw)
    ident = problem.external_id
    return RowProblem(line, plugin_text(problem.reason), None if raw is None else plugin_text(raw[:2000]),
                      None if ident is None else plugin_text(ident)[:512])


def add_prior_votes(engine, votes: Any, origin: str,
                    left_out: Counter | None = None) -> int:
    """Record votes another tool collected as annotate submissions (see :class:`SourcePart`); returns how many.

    One transaction per task. Only open, non-gold tasks take them; a vote whose
    label the workflow refuses, whose worker's name ``workers add`` would refuse
    (or past 512 characters), by a worker who already voted on the task, or
    beyond what completes its annotate stage, is left out and counted in
    ``left_out`` by reason. So is a vote badly shaped by the source (a task's
    votes given as one object instead of a list, a vote that is not an object),
    its reason naming the first task so shaped: it never stops the part's
    cursor. When the votes complete an annotate stage, ``on_quorum`` decides.
    """
    store = engine.store
    engine.load_workflow()  # compiled before the lock
    skipped: Counter = left_out if left_out is not None else Counter()
    added = 0
    if not isinstance(votes, dict):  # not {external_id: [votes]}: no vote can be told to its task
        skipped[_shape_reason(skipped, f"`votes` must map task ids to lists of votes, not {_kind(votes)}",
                              None)] += len(votes) if isinstance(votes, (list, tuple)) else 1
        return 0
    for external_id, items in votes.items():
        if not isinstance(items, (list, tuple)):  # one vote given alone, as an object: left out, said why
            reason = f"votes of a task must be a list of {{worker, label}} objects, not {_kind(items)}"
            skipped[_shape_reason(skipped, reason, external_id)] += 1
            continue
        shaped = [vote for vote in items if isinstance(vote, dict)]
        for vote in items:
            if not isinstance(vote, dict):
                reason = f"a vote must be a {{worker, label}} object, not {_kind(vote)}"
                skipped[_shape_reason(skipped, reason, external_id)] += 1
        items = shaped
        if not items:
            continue
        if text_problem(str(external_id)):  # no task has an id that is not text (a lone surrogate)
            skipped["no such task"] += len(items)
            continue
        with engine.transaction():  # checked and decided by the version active in it
            labels = engine.workflow.labels
            task = store.task_by_external_id(str(external_id))
            if task is None or task["status"] != "open" or task["is_gold"]:
                why = "no such task" if task is None else "gold question" if task["is_gold"] else f"task {task['status']}"
                skipped[why] += len(items)
                continue
            now = clock.now()
            for index, vote in enumerate(items):
                # an imported name is printed in listings (`show`, `workers list`): refused as `workers add`
                # refuses one, not written out, so a line break in it cannot print a forged line
                worker, label = str(vote.get("worker") or "imported"), vote.get("label")
                problem = worker_name_problem(worker)
                if problem:
                    skipped[_shape_reason(skipped, f"`worker` refused as a worker's name: {problem}",
                                          external_id)] += 1
                    continue
                # the text first: the workflow's reason quotes the label, which must be storable text
                problem = "no label" if label is None else \
                    json_value_problem(label, "it", strict=False) or text_problem(label) or labels.problem(label)
                if problem:
                    skipped[f"label refused: {problem}"] += 1
                    continue
                if store.annotated(task["id"], worker):
                    skipped["worker already voted on the task"] += 1
                    continue
                label = labels.stored(label)  # a multi_choice vote as a set, as `submit` stores one
                store.ensure_worker(worker, ["imported"], now)
                assignment_id = store.insert_assignment(task["id"], worker, "annotate", task["queue"], task["round"],
                                                        "submitted", now)
                store.insert_annotation({"id": assignment_id, "task_id": task["id"], "worker": worker,
                                         "stage": "annotate", "round": task["round"]}, label, None, None, now)
                store.count_submission(worker, None)  # `worker.submitted` counts annotations, imported ones too
                store.add_event("submitted", now, task_id=task["id"], actor=worker,
                                detail={"assignment": assignment_id, "stage": "annotate", "label": label,
                                        "prior": True, "source": origin})
                added += 1
                # A prior vote takes a free slot; when people hold every slot it is an extra vote, so
                # `free_slots = needed - active slots` holds and a released slot is not one too many.
                if task["stage"] == "annotate" and task["free_slots"] > 0:
                    needed = max(0, task["needed"] - 1)
                    store.update_task(task["id"], needed=needed, free_slots=task["free_slots"] - 1, updated_at=now)
                    task = store.task(task["id"])
                    if needed == 0:
                        engine._decide_quorum(task, now, worker)
                        if len(items) > index + 1:
                            skipped["more votes than the task needed"] += len(items) - index - 1
                        break
    return added


def _kind(value: Any) -> str:
    """What a badly shaped value is, in JSON's words: ``an object``, ``text``, ``a number``."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__


def _shape_reason(skipped: Counter, reason: str, external_id: Any) -> str:
    """The reason a badly shaped vote is counted under: ``reason`` with the first task it was seen
    on in this read (the same reason on later tasks is counted under it, so a source that shapes
    every task's votes so gives one reason, not one per task)."""
    start = f"{reason} (first: task "
    known = next((key for key in skipped if key == reason or key.startswith(start)), None)
    if known is not None:
        return known
    return reason if external_id is None else f"{start}{visible(plugin_text(external_id))})"


def final_task(store, row, spec=None) -> FinalTask:
    votes = store.votes(row["id"])
    label = loads(row["final_label"])
    # the share of the votes that agree with the final label, as worker.agreement judges a vote
    agreement = final_agreement([loads(v["label"]) for v in votes], label, spec)
    return FinalTask(
        task_id=row["id"], id=row["external_id"], label=label, final_by=row["final_by"],
        rule=row["final_rule"], final_at=clock.iso(row["final_at"]), category=row["category"],
        tags=loads(row["tags"]) or [], data=loads(row["data"]) or {},
        prediction={"label": loads(row["pred_label"]), "confidence": row["pred_confidence"], "model": row["pred_model"]},
        votes=[{"worker": v["worker"], "label": loads(v["label"])} for v in votes], agreement=agreement,
    )


def review_item(store, row, engine=None) -> ReviewItem:
    votes = store.votes(row["id"])
    # with the engine: the same consensus `accept` would take (label type and quality.consensus)
    facts = engine._votes(row["id"]) if engine is not None else votes_facts(votes, {})
    return ReviewItem(
        task_id=row["id"], id=row["external_id"], queue=row["queue"], data=loads(row["data"]) or {},
        category=row["category"], tags=loads(row["tags"]) or [],
        prediction={"label": loads(row["pred_label"]), "confidence": row["pred_confidence"], "model": row["pred_model"]},
        votes=[{"worker": v["worker"], "label": loads(v["label"])} for v in votes],
        consensus=facts["top"], agreement=facts["agreement"], gold=store.gold_label(row["id"]),
    )


def apply_verdict(engine, task_id: int, round_: int, reviewer: str, verdict: Verdict | None,
                  now: float) -> dict[str, Any] | None:
    """Record an automatic reviewer's verdict (or abstention) and let ``on_review`` decide, in one transaction.

    Returns the decision, or ``None`` for an abstention or a task that moved on
    (another stage or round, or a human took its review slot) meanwhile.
    """
    store = engine.store
    worker = f"auto:{reviewer}"
    with engine.transaction():  # on_review of the version active in it
        task = store.task(task_id)
        if (task is None or task["status"] != "open" or task["stage"] != "review" or task["round"] != round_
                or task["free_slots"] < task["needed"]):
            return None
        store.add_auto_review(task_id, round_, reviewer, verdict.verdict if verdict else "abstain",
                              verdict.reason if verdict else None, now)
        if verdict is None:
            return None
        store.ensure_worker(worker, ["automatic"], now)
        label = engine.workflow.labels.stored(verdict.label)  # as a person's review label is stored
        assignment_id = store.insert_assignment(task_id, worker, "review", task["queue"], round_, "submitted", now)
        store.insert_annotation({"id": assignment_id, "task_id": task_id, "worker": worker, "stage": "review",
                                 "round": round_}, label, verdict.verdict, verdict.reason, now)
        store.count_submission(worker, None)
        store.add_event("submitted", now, task_id=task_id, actor=worker,
                        detail={"assignment": assignment_id, "stage": "review", "label": label,
                                "verdict": verdict.verdict, "comment": verdict.reason, "automatic": True,
                                "reviewer": reviewer})
        store.update_task(task_id, needed=max(0, task["needed"] - 1), updated_at=now)
        task = store.task(task_id)
        review = review_facts({"verdict": verdict.verdict, "label": label, "comment": verdict.reason},
                              worker, automatic=True)
        return engine._decide_review(task, review, "review", now, worker)


def event_names(row) -> list[str]:
    """The names a notify entry's ``events:`` can choose an event by, the most specific first."""
    kind, action = row["kind"], row["action"]
    names: list[str] = []
    if kind == "final" or (kind == "created" and action == "accept"):
        names.append("done")
    if action == "escalate":
        names.append("escalated")
    if action == "return":
        names.append("returned")
    if kind == "held" or (kind == "created" and action == "hold"):
        names.append("held")
    if kind == "invalid" or (kind == "created" and action == "reject"):
        names.append("invalid")
    names.append(kind)
    return list(dict.fromkeys(names))


def event_payload(row, name: str, workflow: str, state: tuple[Any, Any, Any] | None = None) -> dict[str, Any]:
    """A notification's payload: the event, and its task as the event left it (``state``: its
    status, stage and queue then, :func:`router.event_tasks.states_at`; without it, as it is now)."""
    detail = loads(row["detail"]) or {}
    if isinstance(detail, dict):
        detail.pop("facts", None)  # the replay snapshot: large and internal
    task = None
    if row["task_id"] is not None:
        status, stage, queue = state if state is not None else (row["t_status"], row["t_stage"], row["t_queue"])
        final = status == "done" and row["t_status"] == "done"  # a done task is never decided again
        task = {"task_id": row["task_id"], "id": row["t_external_id"], "status": status,
                "stage": stage, "queue": queue, "category": row["t_category"],
                "label": loads(row["t_final_label"]) if final else None,
                "final_by": row["t_final_by"] if final else None}
    return {"event": name, "event_id": row["id"], "kind": row["kind"], "at": clock.iso(row["at"]),
            "workflow": workflow, "task": task, "rule": row["rule"], "action": row["action"],
            "actor": row["actor"], "detail": detail}


def retry_delay(attempts: int) -> float:
    """Seconds before retrying a notification that failed ``attempts`` times: 1 min, doubling, at most 1 h.

    The exponent stops growing once the hour is reached: ``60.0 * 2 ** 1024`` overflows a float,
    which a receiver down for six weeks of five-minute runs would reach.
    """
    doublings = min(max(0, attempts - 1), RETRY_MAX_DOUBLINGS)
    return min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** doublings)


# -- the run -----------------------------------------------------------------------------
class Runner:
    """One ``labelyard run`` over an engine whose plugins are loaded."""

    def __init__(self, engine, plugins: Plugins, base_dir: str, echo: Callable[[str], None] | None = None):
        self.engine = engine
        self.store = engine.store
        self.plugins = plugins
        self.base_dir = base_dir
        self.echo = self._quiet_on_closed_output(echo)
        self.report = RunReport()

    @staticmethod
    def _quiet_on_closed_output(echo: Callable[[str], None] | None) -> Callable[[str], None]:
        """Progress lines must never fail a step (``labelyard run | head`` closes the pipe), and are
        one line each: an entry's identity (its `name:` or `path:`) is the workflow's text."""
        def safe(message: str) -> None:
            if echo is None:
                return
            try:
                echo(one_line(message))
            except OSError:
                pass

        return safe

    def fail(self, step: str, entry: dict[str, Any] | None, error: str) -> None:
        plugin = str(entry.get("plugin")) if entry else step
        self.report.failures.append(Failure(step, plugin, entry_key(entry) if entry else "", error))

    def _entries(self, section: str, kind: str) -> Iterator[tuple[dict[str, Any], Any, str]]:
        """The section's usable entries as ``(entry, registered, key)``; any other is a failure of its own.

        The section's name is the step's name in failures.
        """
        step = section
        entries = self.engine.workflow.spec.get(section) or []
        duplicates = duplicate_entries(entries)
        same_file = same_file_sinks(entries, self.base_dir) if section == "sinks" else {}
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not entry.get("plugin"):
                self.fail(step, None, f"an entry without `plugin:`: {entry!r}")
                continue
            problems = entry_problems(section, entry, workflow_queues(self.engine.workflow.spec))
            if problems:
                self.fail(step, entry, "; ".join(message for _, message in problems))
                continue
            if index in same_file:  # an older version stored it: it would cut the earlier sink's file
                self.fail(step, entry, same_file_message(entries, index, same_file[index]))
                continue
            if index in duplicates:
                self.fail(step, entry, duplicate_message(section, entries, index, duplicates[index]))
                continue
            clash = sink_database_problem(entry, self.store.path) if section == "sinks" else None
            if clash is not None:  # before the plugin is called: it would write into the database
                self.fail(step, entry, clash)
                continue
            found = self.plugins.get(kind, str(entry["plugin"]))
            if found is None:
                self.fail(step, entry,
                          f"no {kind[:-1]} plugin {quoted(entry['plugin'])} is loaded (see `labelyard plugins`)")
                continue
            errors = [message for _, message, severity in declared_problems(section, entry, found) if severity == "error"]
            if errors:
                self.fail(step, entry, "; ".join(errors))
                continue
            self._at(step, entry_key(entry))
            # each call of its plugin while the step works on the entry is stopped at the entry's limit
            with time_limit(entry_time_limit(entry), str(entry["plugin"])):
                yield entry, found, entry_key(entry)

    def _at(self, step: str, entry: str | None) -> None:
        """Record in the run's record which step and entry it is at (``status`` and a run that
        finds this one still going name them)."""
        if self.report.run_id is None:
            return
        with self.store.transaction():
            self.store.plugin_run_at(self.report.run_id, step, entry, clock.now())

    def run(self) -> RunReport:
        for info in self.plugins.errors:
            self.report.failures.append(Failure("load", info.name, "", info.error or "failed"))
        with self.store.transaction():
            self.report.run_id = self.store.start_plugin_run(os.getpid(), clock.now())
        for step in (self.sources, self.reviewers, self.timers, self.sinks, self.notify):
            name = step.__name__
            try:
                self.engine.follow_active()  # each step by the version active when it starts
                step()
            except Exception as exc:  # noqa: BLE001 - a step's own failure is recorded; the next step runs
                self.fail(name, None, describe_error(exc))
        self.report.steps = storable(self.report.steps)  # what a plugin handed back, as JSON can keep it
        self._finish()
        return self.report

    def _finish(self) -> None:
        """Record the run as finished, with its summary and failures. Should their text still not be
        storable, the failure is recorded with it, so a run never stays "running" in ``status``."""
        try:
            with self.store.transaction():
                self.store.finish_plugin_run(self.report.run_id, clock.now(), self.report.ok, self.report.steps,
                                             [f.as_dict() for f in self.report.failures])
        except (ValueError, TypeError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
            self.fail("run", None, f"the run's summary could not be stored ({describe_error(exc)})")
            with self.store.transaction():
                self.store.finish_plugin_run(self.report.run_id, clock.now(), False, {},
                                             [f.as_dict() for f in self.report.failures])

    # -- sources -------------------------------------------------------------------------
    def sources(self) -> None:
        done: dict[str, Any] = {}
        for entry, source, key in self._entries("sources", "sources"):
            cursor = SourceCursor(self.store, f"source:{key}", self.store.cursor(f"source:{key}"))
            run = make_run(self.engine, entry, key, cursor.value, self.base_dir)

            def save(part_cursor: Any, rows: int, _cursor: SourceCursor = cursor, _run: PluginRun = run) -> None:
                _cursor.take(part_cursor, rows)
                _run.state = _cursor.value

            trace(f"source {key}")
            counts = done[key] = {}  # filled part by part: a source that fails later keeps what went in
            failure = None
            try:
                try:
                    ingest_parts(self.engine, iter(source.func(run)), on_cursor=save, counts=counts)
                finally:  # what the parts that went in changed (CursorEntries), however the read ended
                    cursor.flush()
            except Exception as exc:  # noqa: BLE001
                failure = describe_error(exc)
            if counts["ingested"] or counts["duplicates"] or counts["rejected"] or counts.get("changed") \
                    or counts.get("prior_votes") or counts.get("prior_votes_left_out"):
                changed = f", changed {counts['changed']} (ids stored with other content: kept as stored)" \
                    if counts.get("changed") else ""
                self.echo(f"source {key}: ingested {counts['ingested']}, duplicates {counts['duplicates']}{changed}, "
                          f"rejected {counts['rejected']}" + prior_votes_said(counts))
            if failure is not None:
                self.fail("sources", entry, failure)
        self.report.steps["sources"] = done

    # -- automatic reviewers -------------------------------------------------------------
    def reviewers(self) -> None:
        done: dict[str, Any] = {}
        for entry, reviewer, key in self._entries("reviewers", "reviewers"):
            run = make_run(self.engine, entry, key, None, self.base_dir)
            queues = checked_setting("queues", entry["queues"], list) if entry.get("queues") else None
            counts: Counter = Counter()
            failed: list[tuple[str, str]] = []
            after = 0
            try:
                while rows := self.store.review_candidates(key, queues, after, REVIEW_PAGE):
                    for row in rows:
                        after = row["id"]
                        try:
                            decision, verdict = self._review(reviewer, run, key, row)
                        except PluginTimeout as exc:  # hung on one, it would hang on the next: asked next run
                            raise PluginTimeout(f"task {row['external_id']}: {describe_error(exc)}; the tasks "
                                                "after it wait for the next run") from None
                        except Exception as exc:  # noqa: BLE001 - this task fails; the others are still judged
                            failed.append((row["external_id"], describe_error(exc)))
                            counts["failed"] += 1
                            continue
                        counts[verdict.verdict if verdict else "abstain"] += 1
                        if decision:
                            counts[f"→ {decision['action']}"] += 1
            except Exception as exc:  # noqa: BLE001
                self.fail("reviewers", entry, describe_error(exc))
            if failed:
                self.fail("reviewers", entry, failed_tasks_message(failed))
            done[key] = dict(counts)
            if counts:
                self.echo(f"reviewer {key}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        self.report.steps["reviewers"] = done

    def _review(self, reviewer, run: PluginRun, key: str, row) -> tuple[dict[str, Any] | None, Verdict | None]:
        """Ask one reviewer about one task and record its answer; raises when the plugin fails on it."""
        trace(f"reviewer {key}: task {row['external_id']}")
        verdict = reviewer.func(run, review_item(self.store, row, self.engine))
        if verdict is not None and not isinstance(verdict, Verdict):
            raise PluginError(f"returned {short(verdict)}; expected approve(...), reject(...) or None")
        if verdict is not None:
            verdict = checked_verdict(verdict, self.engine.workflow.labels)
        return apply_verdict(self.engine, row["id"], row["round"], key, verdict, clock.now()), verdict

    # -- timers --------------------------------------------------------------------------
    def timers(self) -> None:
        import importlib.util

        self._at("timers", None)
        if importlib.util.find_spec("router.timers") is None:
            self.report.steps["timers"] = None
            return
        from . import timers

        result = timers.tick(self.engine, actor="labelyard run")
        data = result.as_dict() if hasattr(result, "as_dict") else result
        self.report.steps["timers"] = data
        if isinstance(data, dict):
            actions = data.get("actions") or {}
            released = data.get("released") or 0
            if actions or released:
                self.echo(f"timers: released {released}" + "".join(f", {k} {v}" for k, v in actions.items()))

    # -- sinks ---------------------------------------------------------------------------
    def sinks(self) -> None:
        done: dict[str, Any] = {}
        for entry, sink, key in self._entries("sinks", "sinks"):
            cursor_name = f"sink:{key}"
            batch = int(entry.get("batch") or SINK_BATCH)
            run = make_run(self.engine, entry, key, self.store.cursor(cursor_name), self.base_dir)
            delivered = 0
            try:
                if not self.store.has_cursor(cursor_name):
                    trace(f"sink {key}: start")
                    state = checked_state(sink.func(run, []))
                    with self.store.transaction():
                        self.store.set_cursor(cursor_name, state, clock.now())
                    run.state = state
                after = 0
                while rows := self.store.undelivered_final_tasks(key, after, batch):
                    tasks = [final_task(self.store, row, self.engine.workflow.labels) for row in rows]
                    trace(f"sink {key}: {len(tasks)} task(s)")
                    state = checked_state(sink.func(run, tasks))
                    with self.store.transaction():
                        self.store.record_deliveries(key, [(r["id"], r["final_at"]) for r in rows], clock.now())
                        self.store.set_cursor(cursor_name, state, clock.now())
                    run.state = state
                    delivered += len(rows)
                    after = rows[-1]["id"]
                if sink.finish is not None:  # a sink that gathers its batches writes them out once per run
                    trace(f"sink {key}: finish")
                    state = checked_state(sink.finish(run), "the state `finish` returned")
                    with self.store.transaction():
                        self.store.set_cursor(cursor_name, state, clock.now())
                    run.state = state
            except Exception as exc:  # noqa: BLE001
                self.fail("sinks", entry, describe_error(exc))
            done[key] = {"delivered": delivered}
            if delivered:
                self.echo(f"sink {key}: delivered {delivered}")
        self.report.steps["sinks"] = done

    # -- notifications -------------------------------------------------------------------
    def notify(self) -> None:
        done: dict[str, Any] = {}
        workflow = self.engine.workflow.name
        history = EntryHistory(self.store, "notify")
        for entry, notifier, key in self._entries("notify", "notifiers"):
            counts = done[key] = {"queued": 0, "delivered": 0, "pending": 0}
            try:
                wanted = list(DEFAULT_EVENTS) if entry.get("events") is None \
                    else checked_setting("events", entry["events"], entry_setting("events", list))
                counts["queued"] = self._enqueue(key, wanted, workflow, history)
                run = make_run(self.engine, entry, key, None, self.base_dir)
                self._deliver(entry, key, run, notifier, counts)
            except Exception as exc:  # noqa: BLE001 - this entry's bookkeeping failed: the other entries still run
                self.fail("notify", entry, describe_error(exc))
            if any(counts.values()):
                self.echo(f"notify {key}: queued {counts['queued']}, delivered {counts['delivered']}, "
                          f"waiting {counts['pending']}")
        self._drop_orphans(done)
        self.report.steps["notify"] = done

    def _enqueue(self, key: str, wanted: list[str], workflow: str, history: "EntryHistory") -> int:
        """Queue the entry's new events; the cursor moves in the same transaction.

        An entry hears the events of the times it was in the active workflow:
        a new one starts at the version that added it, and while a later
        version leaves it out, it hears nothing.
        """
        cursor_name = f"notify:{key}"
        after = self.store.cursor(cursor_name)
        present = True  # a stored cursor was moved while the entry was in the workflow
        if after is None:
            after = history.added(key)
        queued = 0
        while rows := self.store.events_after(int(after), EVENT_PAGE):
            now = clock.now()
            chosen = []
            for row in rows:
                if row["kind"] == "workflow_applied":
                    present = history.present_in(row, key, present)
                if not present:
                    continue
                names = event_names(row)
                name = next((n for n in names if n in wanted), "*" if "*" in wanted else None)
                if name is None:
                    continue
                chosen.append((row, names[0] if name == "*" else name))
            states = states_at(self.store, [row for row, _ in chosen])  # each task as its event left it
            batch = []
            for row, name in chosen:
                payload = event_payload(row, name, workflow, states.get(row["id"]))
                body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
                batch.append((key, row["id"], name, body, now))
            after = rows[-1]["id"]
            with self.store.transaction():
                self.store.enqueue_outbox(batch)
                self.store.set_cursor(cursor_name, after, now)
            queued += len(batch)
        return queued

    def _drop_orphans(self, done: dict[str, Any]) -> None:
        """Notifications still waiting for an entry no longer in the workflow are dropped, with an event."""
        active = {entry_key(e) for e in self.engine.workflow.spec.get("notify") or [] if isinstance(e, dict)}
        for target in sorted(self.store.outbox_pending()):
            if target in active:
                continue
            now = clock.now()
            shown = without_password(target)  # stored by a version that kept a URL's password in it
            with self.store.transaction():
                dropped = self.store.drop_outbox(target)
                self.store.add_event("outbox_dropped", now, actor="labelyard",
                                     detail={"target": shown, "dropped": dropped,
                                             "reason": "the notify entry is no longer in the workflow"})
            target = shown
            done[target] = {"dropped": dropped}
            self.echo(f"notify {target}: dropped {dropped} waiting notification(s): the entry is no longer "
                      "in the workflow")

    @staticmethod
    def _waits(row: Any) -> bool:
        """Whether the notification ``row`` waits for its retry time.

        Not when that time is further off than its back-off could have set it (:func:`longest_wait`):
        it was set before the clock went back, and is due now. Else a step back of the clock delayed
        the retries by as much, beyond "at most hourly", and every notification behind them.
        """
        wait = row["next_at"] - clock.now()
        return 0 < wait <= longest_wait(row["attempts"]) + CLOCK_SLACK_S

    def _deliver(self, entry: dict[str, Any], key: str, run: PluginRun, notifier, counts: dict[str, int]) -> None:
        """Send the entry's waiting notifications, oldest first, until one fails or waits for its retry time.

        ``counts`` gets ``delivered`` as each one is acknowledged and ``pending`` at the end, so
        what was sent is told even when the entry's bookkeeping raises midway.
        """
        try:
            while rows := self.store.outbox_next(key, 100):
                for row in rows:
                    if self._waits(row):  # backing off: it, and everything after it, waits
                        return
                    note = Notification(delivery=row["id"], event=row["event"], payload=json.loads(row["body"]),
                                        body=row["body"].encode("utf-8"), attempt=row["attempts"] + 1)
                    trace(f"notify {key}: delivery {row['id']} ({row['event']})")
                    try:
                        notifier.func(run, note)
                    except Exception as exc:  # noqa: BLE001
                        error = describe_error(exc)
                        now = clock.now()
                        with self.store.transaction():
                            self.store.outbox_failed(row["id"], error, now + retry_delay(row["attempts"] + 1))
                        pending = self.store.outbox_pending().get(key, 0)
                        self.fail("notify", entry,
                                  f"{error}; {pending} notification(s) kept in the outbox for the next run")
                        return
                    with self.store.transaction():
                        self.store.outbox_delivered(row["id"], clock.now())
                    counts["delivered"] += 1
        finally:
            counts["pending"] = self.store.outbox_pending().get(key, 0)


def longest_wait(attempts: int) -> float:
    """The longest a notification that failed ``attempts`` times waits from the failure on: its
    back-off (:func:`retry_delay`); one never tried does not wait."""
    return retry_delay(attempts) if attempts > 0 else 0.0


def failed_tasks_message(failed: list[tuple[str, str]], shown: int = 5) -> str:
    """One line for the tasks a reviewer failed on: the first error, and which other tasks failed."""
    (first, error), rest = failed[0], failed[1:]
    text = f"task {first}: {error}"
    if rest:
        names = ", ".join(task for task, _ in rest[:shown]) + (", …" if len(rest) > shown else "")
        text += f"; also failed on {len(rest)} more task(s): {names}"
    return text + " (asked again next run)"


class EntryHistory:
    """Which applied workflow versions held an entry of one section (read once per run, when needed)."""

    def __init__(self, store, section: str):
        self.store = store
        self.section = section
        self._keys: dict[tuple[str, int], set[str]] | None = None

    def keys(self) -> dict[tuple[str, int], set[str]]:
        """``{(workflow, version): identities of the section's entries}`` for every applied version."""
        if self._keys is None:
            self._keys = {}
            for row in self.store.workflow_versions():
                entries = (loads(row["spec"]) or {}).get(self.section) or []
                self._keys[(row["name"], row["version"])] = {entry_key(e) for e in entries if isinstance(e, dict)}
        return self._keys

    def present_in(self, applied_event, key: str, default: bool) -> bool:
        """Whether the version a ``workflow_applied`` event made active holds the entry ``key``."""
        detail = loads(applied_event["detail"]) or {}
        found = self.keys().get((detail.get("workflow"), detail.get("version")))
        return default if found is None else key in found

    def added(self, key: str) -> int:
        """The event id to start after for a new entry: just before the version that added it was applied
        (the oldest of the unbroken run of versions, up to the active one, that hold it)."""
        start = None
        for (name, version), keys in reversed(list(self.keys().items())):
            if key not in keys:
                break
            start = (name, version)
        events = self.store.applied_events()
        for row in events:
            detail = loads(row["detail"]) or {}
            if (detail.get("workflow"), detail.get("version")) == start:
                return row["id"] - 1
        return max(0, events[-1]["id"] - 1) if events else 0


def in_progress_text(summary: Any) -> str:
    """``, at source `scanner` since 2025-03-01T09:00:00+00:00``: where an unfinished run is (what
    :meth:`Runner._at` recorded in its summary), ``""`` when unknown (a run of an older version)."""
    at = summary.get("in_progress") if isinstance(summary, dict) else None
    if not isinstance(at, dict) or not isinstance(at.get("step"), str):
        return ""
    step = {"sources": "source", "reviewers": "reviewer", "sinks": "sink"}.get(at["step"], at["step"])
    entry = f" `{visible(str(at['entry']))}`" if at.get("entry") else ""
    since = f" since {clock.iso(at['since'])}" if isinstance(at.get("since"), (int, float)) else ""
    return f", at {step}{entry}{since}"


def open_for_run(db: str | None, plugins_dir: str | None):
    """The engine and plugins for a database: its workflow's ``plugins:`` loaded, their functions in
    the engine, and the workflow compiled. A workflow that calls functions of a ``plugins:`` module
    that does not load here fails the command at once (:class:`~router.errors.PluginModuleMissing`,
    exit 1, as ``tick`` does), before any step: each would fail on it."""
    from rules.diagnostics import WorkflowInvalid

    from .engine import Engine, module_missing
    from .errors import NoWorkflow
    from .plugins import load_plugins
    from .store import Store

    store = Store.open(db)
    row = store.active_workflow()
    if row is None:
        store.close()
        raise NoWorkflow("no workflow applied yet; run `labelyard apply FILE.workflow.yaml`")
    spec = loads(row["spec"])
    plugins = load_plugins(spec.get("plugins") or [], plugins_dir)
    engine = Engine(store, functions=plugins.functions or None)
    try:
        engine.workflow  # noqa: B018 - compiled now, so a module that does not load is one message
    except WorkflowInvalid:
        missing = module_missing(spec, plugins.errors)
        store.close()
        if missing is None:
            raise
        raise missing from None
    except LabelyardError:
        store.close()
        raise
    return engine, plugins


def base_dir_of(store) -> str:
    """Where a workflow's relative paths start: the database's folder."""
    return os.path.dirname(os.path.abspath(store.path))
