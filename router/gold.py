"""Gold questions: tasks with a known answer, mixed into annotators' claims to measure them.

``labelyard gold add FILE`` reads rows like ``ingest`` plus ``"answer":
LABEL`` (and optionally ``"queue": NAME``; default: the first queue open to
the ``annotator`` role, else the first queue) from a file, a pipe or ``-``
(standard input): JSON Lines, or one JSON array as ``ingest`` reads a ``.json``
file (a ``.jsonl`` file is always JSON Lines). A gold task is stored with
``is_gold = 1``, its answer in the ``gold`` table, and stays ``open`` in an
``annotate`` stage with no free slots: ``on_create`` never sees it, the claim
index never offers it, consensus never runs on it and export leaves it out.

When a worker claims, :func:`pick_gold` decides whether this claim is a gold
one: a SHA-256 of the worker's name and the id of their latest slot (0 before
their first), read as a fraction in [0, 1), below ``quality.gold.rate``. The choice is
deterministic (a replay gives the same claims) and, over many claims, close
to the rate. The worker then gets the oldest gold task of a queue they may
work that they never had a slot of and did not add or change (a lead who also
annotates knows the answers they wrote); when none is left, a normal slot.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import clock
from .consensus import canonical, gold_answer_right
from .errors import LabelyardError
from .os_text import source_name
from .store import dumps_finite, loads, text_problem

if TYPE_CHECKING:
    from .ingest import IgnoredKeys


def gold_fraction(worker: str, latest: int) -> float:
    """A stable number in [0, 1) for a worker's claim after their slot ``latest`` (0: their first claim)."""
    digest = hashlib.sha256(f"gold:{worker}:{latest}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_gold(store, worker: str, queues, rate: float):
    """A gold task for this claim (as a claimed slot row), or ``None``."""
    if not queues or not store.has_gold():
        return None
    if gold_fraction(worker, store.worker_latest_slot(worker)) >= rate:
        return None
    return store.gold_for(worker, list(queues))


GOLD_RESERVED = ("id", "data", "category", "tags", "prediction", "answer", "queue")  # the keys a gold row uses


@dataclass
class GoldReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # gold questions the file gives again as they are: no event
    rejected: int = 0
    source: str | None = None  # what the rejects are kept under (`rejects --source` takes it)
    ignored: IgnoredKeys | None = None  # top-level keys rows with `data` had that go nowhere

    def as_dict(self) -> dict[str, Any]:
        """The counts; ``ignored_keys`` (rows per top-level key left out) only when there are some, as
        ``ingest --json`` gives it."""
        counts = {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                  "rejected": self.rejected, "source": self.source}
        if self.ignored:
            counts["ignored_keys"] = dict(self.ignored.rows)
        return counts

    def warnings(self) -> list[str]:
        """What to print on standard error about the keys rows left out (as ``ingest`` prints it)."""
        return self.ignored.warnings(GOLD_RESERVED) if self.ignored else []


def _check_storable(item, answer: Any, workflow, line: bytes | str, col: int) -> None:
    """Refuse a gold row (``line`` as read, from column ``col`` for an array's element) that could
    not be stored or shown, as ingest refuses such a row."""
    from .ingest import RowError, not_finite_problem  # imported with the rest of gold add's reading (not by claims)

    try:
        dumps_finite([item.data, item.label, item.scores, answer])
    except ValueError:
        item.raw, item.col = line, col
        raise RowError(not_finite_problem(item).reason) from None
    problem = text_problem([item.data, item.label, item.scores, answer])
    if problem is None and item.label is not None:
        problem = workflow.labels.problem(item.label)
        problem = problem and f"`prediction.label`: {problem}"
    if problem:
        raise RowError(problem)


def default_queue(workflow) -> str:
    for name, spec in workflow.queues.items():
        if "annotator" in spec.roles:
            return name
    return next(iter(workflow.queues))


def rescore(engine, task_ids: list[int] | None, now: float, actor: str,
            why: dict[str, Any] | None = None) -> dict[str, tuple[int, int]]:
    """Score again every gold answer of the workers who answered these gold tasks (``None``: of
    every worker), by the engine's workflow's labels, inside the caller's transaction; counters
    that change get a ``gold_rescored`` event (with ``why`` in its detail). Returns the changes.

    From scratch, not by difference, so re-adding a gold file also mends counters that an
    older comparison (raw JSON text) got wrong, and ``apply`` of labels that compare otherwise
    (another ``iou``) scores everyone's answers by them.
    """
    store = engine.store
    spec = engine.workflow.labels
    counts: dict[str, list[int]] = {worker: [0, 0] for worker in store.gold_answerers(task_ids)}
    for row in store.gold_answer_rows(task_ids):
        tally = counts.setdefault(row["worker"], [0, 0])
        tally[0] += 1
        tally[1] += gold_answer_right(loads(row["label"]), loads(row["answer"]), spec)
    before = store.gold_accuracy(list(counts))
    changed = {w: (n, ok) for w, (n, ok) in counts.items() if before.get(w, (0, 0)) != (n, ok)}
    store.set_gold_counters(changed)
    for worker, (answered, correct) in sorted(changed.items()):
        was = before.get(worker, (0, 0))
        store.add_event("gold_rescored", now, actor=actor,
                        detail={"worker": worker, "gold_answered": answered, "gold_correct": correct,
                                "was": {"gold_answered": was[0], "gold_correct": was[1]}, **(why or {})})
    return changed


def _gold_values(path: str) -> Iterator[Any]:
    """The rows of ``path`` (a file, a pipe or fifo read once, or ``-``, standard input) as
    ``ingest`` reads a ``.json`` file (:func:`router.ingest.json_values`): one JSON array, or JSON
    Lines when it does not open with ``[``; a ``.jsonl`` file is JSON Lines."""
    from .ingest import json_values

    if path == "-":
        from .output_text import standard_input

        yield from json_values(standard_input())
        return
    if os.path.isdir(path):
        raise LabelyardError(f"{path}: is a directory, not a file of gold rows")
    if not os.path.exists(path):
        raise LabelyardError(f"{path}: no such file")
    if path.lower().endswith((".csv", ".tsv")):  # each line would be one "invalid JSON" reject, the header too
        raise LabelyardError(f"{path}: `gold add` reads JSON Lines or one JSON array, not CSV; give each row as "
                             'a JSON object with its "answer" (nothing was added)')
    try:
        with open(path, "rb") as handle:
            yield from json_values(handle, array=not path.lower().endswith((".jsonl", ".ndjson")))
    except OSError as exc:  # unreadable (permissions, a disk error): said as the system says it
        raise LabelyardError(f"{path}: {exc.strerror or exc}") from None


def _ignored_keys(rows: list[tuple[Any, Any, str]], source: str) -> IgnoredKeys:
    """The top-level keys the good rows with ``data`` had beside :data:`GOLD_RESERVED` (a typo
    ``qeue`` that would leave the question in the default queue), counted as ``ingest`` counts them."""
    from .ingest import IgnoredKeys

    ignored = IgnoredKeys()
    for item, _answer, _queue in rows:
        for key in item.ignored:
            ignored.add(key, 1, source, item.line)
    return ignored


def _checked_rows(found_rows: list[tuple[int, int, Any, bytes | str]], workflow, source: str,
                  now: float) -> tuple[list[tuple[Any, Any, str]], list[tuple[str, int, str, str, float]]]:
    """The rows read (``(line, col, value, text)``) checked by ``workflow``: ``(item, answer, queue)``
    of the good ones, and the reject of each bad one. An id given again is a reject: the first
    good row with an id counts, as ``ingest`` counts it, and a file that says two things about one
    question is never taken as "updated" by its own second row."""
    from .ingest import RowError, check_row, raw_line

    fallback = default_queue(workflow)
    rows: list[tuple[Any, Any, str]] = []
    problems: list[tuple[str, int, str, str, float]] = []
    first_line: dict[str, int] = {}  # the line of each id's first good row
    for number, col, raw, line in found_rows:
        try:
            if not isinstance(raw, dict):
                raise RowError("a row must be a JSON object")
            if "answer" not in raw:
                raise RowError("a gold row needs `answer`")
            problem = workflow.labels.problem(raw["answer"])
            if problem:
                raise RowError(f"`answer`: {problem}")
            answer = workflow.labels.stored(raw["answer"])  # a multi_choice set in choice order, as votes are
            queue = raw.get("queue") or fallback
            if not isinstance(queue, str):  # a list or an object cannot name a queue (nor be looked up)
                raise RowError("`queue` must be text, the name of a queue")
            if queue not in workflow.queues:
                raise RowError(f"`queue` {json.dumps(queue)} is not a queue of workflow {workflow.name}")
            item = check_row(raw, number, workflow.labels.choices, set(GOLD_RESERVED))
            _check_storable(item, answer, workflow, line, col)
            if item.external_id in first_line:
                raise RowError(f"id {item.external_id} is given again: the row at line "
                               f"{first_line[item.external_id]} counts")
            first_line[item.external_id] = number
        except RowError as exc:
            problems.append((source, number, str(exc), raw_line(line) if isinstance(line, bytes) else line, now))
            continue
        rows.append((item, answer, queue))
    return rows, problems


QUESTION_FIELDS: dict[str, tuple[str, ...]] = {
    "data": ("data",), "category": ("category",), "tags": ("tags",),
    "prediction": ("pred_label", "pred_confidence", "pred_model", "pred_scores"),
}
"""What a worker is shown of a gold question, by the row's field and the task columns that hold it."""


def _question_field(task, name: str) -> Any:
    """A gold question's field as its row gives it (for the ``gold_updated`` event's ``was_question``)."""
    if name == "prediction":
        return {"label": loads(task["pred_label"]), "confidence": task["pred_confidence"],
                "model": task["pred_model"], "scores": loads(task["pred_scores"])}
    return task[name] if name == "category" else loads(task[name])


def _update_question(store, existing, fresh: dict[str, Any], answer: Any, queue: str, now: float,
                     actor: str) -> bool:
    """Bring an existing gold question (``existing``, its task row) to its row as read (``fresh``, the
    task row it would make): its answer, its queue (reopened where ``apply`` held it or a version
    dropped its queue), and what workers see of it (data, category, tags, prediction), with one
    ``gold_updated`` event saying what changed and what it was. ``False`` when nothing changed."""
    was = store.gold_label(existing["id"])
    same_answer = canonical(was) == canonical(answer)
    if same_answer:  # the same answer written another way (`4.0` is `4`, a set in another order): kept as it is
        answer = was
    changed = [name for name, columns in QUESTION_FIELDS.items()
               if any(fresh[c] != existing[c] for c in columns)]
    moved = existing["queue"] != queue or existing["status"] != "open"
    if same_answer and not moved and not changed:
        return False
    store.set_gold(existing["id"], answer)
    columns = {c: fresh[c] for name in changed for c in QUESTION_FIELDS[name]}
    detail: dict[str, Any] = {"answer": answer, "was": was}
    if moved:  # a gold question moves with its row (out of a queue a version dropped, too)
        columns.update(queue=queue, status="open", reason=None)
        detail.update(queue=queue, was_queue=existing["queue"], was_status=existing["status"])
    if changed:
        detail.update(changed=changed, was_question={name: _question_field(existing, name) for name in changed})
    if columns:
        store.update_task(existing["id"], **columns, updated_at=now)
    store.add_event("gold_updated", now, task_id=existing["id"], actor=actor, detail=detail)
    return True


def add_gold(engine, path: str, actor: str, source: str | None = None) -> GoldReport:
    """Add gold tasks from JSON rows, or update those the project has (answer, queue, data, category,
    tags, prediction: :func:`_update_question`); bad rows are quarantined.

    ``path`` is a file, a pipe or fifo (``<(cmd)``), or ``-`` for standard input. Its rejects
    are kept under ``source``, by default the file's absolute path as ``ingest`` keeps a file's
    (``gold add`` names a stream's after this one read, ``<stdin 2026-11-28T06:01:02Z>``, as
    ``ingest`` does); the source's earlier rejects are replaced, as the whole input was read.

    The rows are checked (answers, queues, predictions) by the version active in the write
    transaction, as every decision is (:meth:`router.engine.Engine.transaction`): checked before
    it by the engine's, and again in it when another process applied a version meanwhile.

    Checks nothing about who acts (tests and benches build projects with it); ``gold add``
    requires the lead role first, as the other lead commands do (:class:`router.lead.Lead`)."""
    from .ingest import RowProblem

    if source is None:
        source = "<stdin>" if path == "-" else source_name(path)
    found_rows: list[tuple[int, int, Any, bytes | str]] = []
    unread: list[tuple[str, int, str, str, float]] = []
    now = clock.now()
    for found in _gold_values(path):
        if isinstance(found, RowProblem):
            unread.append((source, found.line, found.reason, found.raw, now))
        else:
            found_rows.append(found)
    checked_by = engine.workflow_id  # checked before the lock; again in it if a version was applied since
    rows, problems = _checked_rows(found_rows, engine.workflow, source, now)
    report = GoldReport(source=source)
    store = engine.store
    updated: list[int] = []
    with engine.transaction():  # the version active in it decides (another process may have applied one)
        version = engine.workflow_id
        if version != checked_by:
            rows, problems = _checked_rows(found_rows, engine.workflow, source, now)
        problems = sorted(unread + problems, key=lambda p: p[1])  # kept in the file's order
        report.rejected = len(problems)
        next_id = store.next_task_id()
        for item, answer, queue in rows:
            existing = store.task_by_external_id(item.external_id)
            if existing is not None:
                if not existing["is_gold"]:
                    problems.append((source, item.line, f"id {item.external_id} is already an ordinary task", None, now))
                    report.rejected += 1
                    continue
                if existing["status"] == "invalid":  # retired: its answers stay unscored (router.gold_retire)
                    problems.append((source, item.line, f"id {item.external_id} is a retired gold question; "
                                     "add the question under a new id", None, now))
                    report.rejected += 1
                    continue
                updated.append(existing["id"])  # scored again all the same: that mends older counters
                fresh = engine._new_task_row(item, existing["id"], source, version, now)
                if _update_question(store, existing, fresh, answer, queue, now, actor):
                    report.updated += 1
                else:
                    report.unchanged += 1  # given again as it is: nothing to write
                continue
            row = engine._new_task_row(item, next_id, source, version, now)
            row.update(is_gold=1, status="open", stage="annotate", queue=queue, needed=0, free_slots=0)
            store.insert_tasks([row])
            store.set_gold(next_id, answer)
            store.add_event("gold_added", now, task_id=next_id, actor=actor,
                            detail={"source": source, "line": item.line, "queue": queue, "answer": answer})
            next_id += 1
            report.added += 1
        rescore(engine, updated, now, actor)
        store.delete_rejects(source)  # the whole input was read: a line fixed, deleted or cut off is no reject
        if problems:
            store.add_rejects(problems)
    report.ignored = _ignored_keys(rows, source)
    return report
