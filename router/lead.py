"""Lead actions: reassign, escalate, hold, unhold, release, priority — one task or many.

Each action on one task is one transaction that also writes its event, with
the acting lead as the event's actor. The ``*_task`` functions do the work
inside the caller's transaction and check nothing about who acts, so the
timer (``router.timers``) uses them too; :class:`Lead` checks the ``lead``
role and runs them for task ids or for a ``--where`` filter.

A ``--where`` filter is a rule expression over ``task.*``, ``prediction.*``
and ``now`` (``task.queue == "triage" and task.age > 2h``), compiled by
``rules.expr`` and evaluated in Python on candidate rows read page by page;
the user's text never becomes SQL. What the expression requires of
``task.queue`` and ``task.status`` (``rules.requires``: an ``and`` holding
``task.queue == "triage"``) narrows which rows are read: that queue's range of
the ``(status, queue)`` index, not every open task; the same tasks match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import clock
from .context import lazy_prediction, lazy_task_facts
from .eligibility import at_capacity, needs
from .errors import AssignmentError, LabelyardError, UnknownTask, UnknownWorker
from .returns import listed

LEAD_ROLE = "lead"
PAGE = 200  # tasks read, and acted on in one transaction, per page of a --where filter
WHERE_ROOTS = frozenset({"task", "prediction", "now"})
CLAIMABLE_STAGES = ("annotate", "review", "escalated")

# Which task statuses each action can apply to (the candidates of a --where filter).
STATUSES: dict[str, tuple[str, ...]] = {
    "reassign": ("open",),
    "escalate": ("open", "held"),
    "hold": ("open",),
    "unhold": ("held",),
    "release": ("open",),
    "priority": ("open", "held"),
}


class Unchanged(LabelyardError):
    """The action would leave the task as it is: the task is skipped with this reason and no event,
    also among task ids (whose actions are otherwise all or nothing)."""


# -- the actions, inside the caller's transaction ------------------------------------------

def release_assignment(engine, a, now: float, actor: str, *, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """End one active slot. Its place goes back to the queue (``free_slots + 1``); a ``correct``
    slot goes back to the annotator it was offered to, or, when they no longer work its queue,
    is dropped (``expired``, :meth:`Engine._drop_corrections`)."""
    if a["status"] != "active":
        raise AssignmentError(f"assignment {a['id']} is {a['status']}, not active")
    store = engine.store
    task = store.task(a["task_id"])
    if a["stage"] == "correct":
        status = "offered"
    else:
        status = "released"
        if task["status"] == "open" and task["round"] == a["round"] and not task["is_gold"]:
            store.update_task(task["id"], free_slots=task["free_slots"] + 1, updated_at=now)
    store.set_assignment_status(a["id"], status, now)
    store.add_event("released", now, task_id=task["id"], action="release", actor=actor,
                    rule=(detail or {}).get("rule"),
                    detail={"assignment": a["id"], "worker": a["worker"], "stage": a["stage"], "now": status,
                            **{k: v for k, v in (detail or {}).items() if k != "rule"}})
    if status == "offered" and engine._drop_corrections(a["worker"], now, actor, assignment=a["id"]):
        status = "expired"
    return {"task": task["id"], "assignment": a["id"], "worker": a["worker"], "status": status}


def release_task(engine, task, now: float, actor: str) -> dict[str, Any]:
    """End every active slot of a task."""
    slots = engine.store.task_slots(task["id"], ("active",))
    if not slots:
        raise LabelyardError(f"task {task['external_id']} has no active assignment to release")
    released = [release_assignment(engine, a, now, actor)["assignment"] for a in slots]
    return {"task": task["id"], "released": released}


def reassign_task(engine, task, to: str, now: float, actor: str, *, force: bool = False,
                  from_worker: str | None = None) -> dict[str, Any]:
    """End the task's active slot(s) (only ``from_worker``'s if given) and give ``to`` an active slot.

    Never gives a worker a second slot of the same round. Refuses, unless
    ``force``, a worker the task's queue does not admit, who is paused or at
    their capacity, who annotated the task when it waits for review or
    adjudication, or whose vote already counts when it waits for more votes.
    """
    store = engine.store
    ext = task["external_id"]
    refused = reassign_refusal(store, task)
    if refused:
        raise LabelyardError(refused)
    w = store.worker(to)
    if w is None:
        raise UnknownWorker(f"no worker `{to}`")
    refused = reassign_refusal(store, task, to)
    if refused:
        raise LabelyardError(refused)
    active = store.task_slots(task["id"], ("active",))
    problem = ineligible(engine, task, w)
    if problem and not force:
        raise LabelyardError(f"cannot reassign task {ext} to {to}: {problem} (--force to do it anyway)")
    if from_worker is not None:
        active = [a for a in active if a["worker"] == from_worker]
        if not active:
            raise LabelyardError(f"{from_worker} holds no active slot of task {ext}")
    free = task["free_slots"] + len(active)
    if free < 1:
        raise LabelyardError(f"task {ext} has no slot to give: every slot is submitted")
    for a in active:
        store.set_assignment_status(a["id"], "released", now)
    new_id = store.insert_assignment(task["id"], to, task["stage"], task["queue"], task["round"], "active", now)
    store.update_task(task["id"], free_slots=free - 1, updated_at=now)
    detail = {"to": to, "assignment": new_id, "from": [a["worker"] for a in active],
              "released": [a["id"] for a in active], "stage": task["stage"], "queue": task["queue"]}
    if problem:
        detail["forced"] = problem
    store.add_event("reassigned", now, task_id=task["id"], action="reassign", actor=actor, detail=detail)
    return {"task": task["id"], **detail}


def reassign_refusal(store, task, worker: str | None = None) -> str | None:
    """Why ``task`` cannot be reassigned at all (``worker`` given: to that worker), not even with
    ``--force``; ``None`` when it can, and :func:`ineligible` then says whether ``--force`` is needed.
    :func:`reassign_task` and the TUI's candidate list (``Queries.reassign_candidates``) both ask it."""
    ext = task["external_id"]
    if task["status"] != "open" or task["stage"] is None:
        return f"task {ext} is {task['status']}: only open tasks can be reassigned"
    if task["stage"] not in CLAIMABLE_STAGES:
        return (f"task {ext} waits for its annotators' corrections{_corrections_waiting(store, task)}; "
                "a correction goes only to its own annotator: `escalate` the task instead")
    if worker is None:
        return None
    if any(a["worker"] == worker for a in store.task_slots(task["id"], ("active",))):
        return f"{worker} already holds a slot of task {ext}"
    if store.holds_slot(task["id"], worker, task["round"]) and _submitted_this_round(store, task, worker):
        return f"{worker} already submitted for task {ext} in this stage"
    return None


def ineligible(engine, task, worker_row) -> str | None:
    """Why a worker may not take this task's slot (``None`` when they may)."""
    from .store import loads

    spec = engine.workflow.queues.get(task["queue"])
    name = worker_row["id"]
    if spec is not None and not spec.admits(loads(worker_row["roles"]), loads(worker_row["skills"])):
        return f"queue `{spec.name}` needs {needs(spec)}"  # worded as `status` and `stalled` word it
    # Own work is a label they submitted, as the claim's check keeps it from them too: a slot they only
    # held and gave up (or had taken back) is no work of theirs, and a lead may give them the task.
    if task["stage"] in ("review", "escalated") and engine.store.voted(task["id"], name):
        return f"{name} annotated this task; an annotator's own work never comes back to them for review"
    if task["stage"] == "annotate" and engine.store.voted(task["id"], name):
        return (f"{name} already voted on this task; a new vote would replace theirs, so the stage would "
                "decide on fewer different votes than it asks for")
    if worker_row["paused"]:
        return f"{name} is paused"
    capacity = worker_row["capacity"]
    held = engine.store.active_count(name) if capacity is not None else 0
    if capacity is not None and held >= capacity:
        return at_capacity(name, held, capacity)
    return None


def _submitted_this_round(store, task, worker: str) -> bool:
    return any(a["worker"] == worker and a["round"] == task["round"] for a in store.task_slots(task["id"], ("submitted",)))


def _corrections_waiting(store, task) -> str:
    """" (offered to a1, a2 — a2 is paused; held by a3)": who the round's corrections wait for."""
    slots = [a for a in store.task_slots(task["id"], ("offered", "active"))
             if a["stage"] == "correct" and a["round"] == task["round"]]
    offered = [a["worker"] for a in slots if a["status"] == "offered"]
    held = [a["worker"] for a in slots if a["status"] == "active"]
    paused = [w for w in offered if (row := store.worker(w)) is not None and row["paused"]]
    parts = []
    if offered:
        text = "offered to " + ", ".join(offered)
        if paused:
            text += f" — {', '.join(paused)} {'is' if len(paused) == 1 else 'are'} paused (`workers resume`)"
        parts.append(text)
    if held:
        parts.append("held by " + ", ".join(held) + " (`release` gives a held one back to its annotator)")
    return f" ({'; '.join(parts)})" if parts else ""


def escalate_task(engine, task, queue: str, now: float, actor: str, reason: str | None = None) -> dict[str, Any]:
    """Open an ``escalated`` stage in ``queue`` for an open or held task."""
    from rules.workflow import Decision

    ext = task["external_id"]
    if queue not in engine.workflow.queues:
        raise LabelyardError(f"no queue `{queue}`; queues: {', '.join(engine.workflow.queues)}")
    if task["status"] not in ("open", "held"):
        raise LabelyardError(f"task {ext} is {task['status']}: only open or held tasks can be escalated")
    if task["status"] == "open" and task["stage"] == "escalated" and task["queue"] == queue:
        raise Unchanged(f"task {ext} is already escalated to {queue}")
    decision = Decision("lead", None, "escalate", target=queue, values={"reason": reason or f"escalated by {actor}"},
                        reason=reason)
    result = engine._apply(task, decision, now, actor, votes=engine._votes(task["id"]), final_by="lead")
    return {"task": task["id"], **result}


def hold_task(engine, task, now: float, actor: str, reason: str | None = None, *,
              rule: str | None = None, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hold an open task, keeping its stage, queue and remaining submissions so ``unhold`` can reopen it.

    Active and offered slots are released (their holders' late submissions
    are kept as ``late_submission`` events but decide nothing: ``Engine.submit``).
    """
    store = engine.store
    if task["status"] == "held":
        raise Unchanged(f"task {task['external_id']} is already held")
    if task["status"] != "open":
        raise LabelyardError(f"task {task['external_id']} is {task['status']}: only open tasks can be held")
    slots = store.task_slots(task["id"], ("active", "offered"))
    for a in slots:
        store.set_assignment_status(a["id"], "released", now)
    reason = reason or f"held by {actor}"
    store.update_task(task["id"], status="held", free_slots=0, reason=reason, updated_at=now)
    store.add_event("held", now, task_id=task["id"], rule=rule, action="hold", actor=actor,
                    detail={"reason": reason, "released": [a["id"] for a in slots], "stage": task["stage"],
                            "queue": task["queue"], **(detail or {})})
    return {"task": task["id"], "status": "held", "reason": reason, "released": [a["id"] for a in slots]}


def unhold_task(engine, task, now: float, actor: str) -> dict[str, Any]:
    """Reopen a held task in its stage with its remaining slots (``correct`` slots offered again)."""
    store = engine.store
    ext = task["external_id"]
    if task["status"] == "open":
        raise Unchanged(f"task {ext} is already open")
    if task["status"] != "held":
        raise LabelyardError(f"task {ext} is {task['status']}, not held")
    if task["stage"] == "correct" and corrections_owed(store, task):
        return _unhold_corrections(engine, task, now, actor)
    if task["stage"] is None or task["needed"] < 1:
        why = f" ({task['reason']})" if task["reason"] else ""
        raise LabelyardError(f"task {ext} was held with no work left in its stage{why}; "
                             f"route it with `labelyard escalate id:{task['id']} --to QUEUE`")
    if task["queue"] is not None and task["queue"] not in engine.workflow.queues:
        raise LabelyardError(f"task {ext} waits in queue `{task['queue']}`, which the workflow no longer has; "
                             f"route it with `labelyard escalate id:{task['id']} --to QUEUE`")
    free = task["needed"]
    store.update_task(task["id"], status="open", free_slots=free, reason=None, updated_at=now)
    store.add_event("unheld", now, task_id=task["id"], action="unhold", actor=actor,
                    detail={"stage": task["stage"], "queue": task["queue"], "free_slots": free, "offered": []})
    return {"task": task["id"], "status": "open", "stage": task["stage"], "queue": task["queue"], "free_slots": free}


def _unhold_corrections(engine, task, now: float, actor: str) -> dict[str, Any]:
    """:func:`unhold_task` for a correction round: each voter who has not corrected yet is offered a
    correction again in the queue of their own vote, as the ``return`` offered it; those who no longer
    work it are left out (named in the event). A correction that would wait in a queue the workflow
    no longer has is refused, as an ``unhold`` into a dropped queue is: a lead escalates it."""
    store = engine.store
    ext, where = task["external_id"], f"route it with `labelyard escalate id:{task['id']} --to QUEUE`"
    pending = pending_corrections(store, task)
    gone = sorted({q for _, q in pending if q is not None and q not in engine.workflow.queues})
    if gone:
        raise LabelyardError(f"task {ext} waits for corrections in queue{'s' if len(gone) > 1 else ''} "
                             f"{listed(gone, quote=True)}, which the workflow no longer has; {where}")
    offered, left_out = engine._returnable([w for w, _ in pending], [q for _, q in pending])
    if not offered:
        queues = listed(sorted({q for _, q in pending if q is not None}) or [task["queue"]], quote=True, last="or")
        raise LabelyardError(f"task {ext} waits for corrections nobody can take back (its annotators no longer "
                             f"work {queues}); {where}")
    comment = _return_comment(store, task)
    for c in offered:
        store.insert_assignment(task["id"], c["worker"], "correct", c["queue"], task["round"], "offered", now,
                                note=comment)
    queue = offered[-1]["queue"]  # as a return sets it: the newest returned vote's queue
    store.update_task(task["id"], status="open", queue=queue, needed=len(offered), free_slots=0, reason=None,
                      updated_at=now)
    store.add_event("unheld", now, task_id=task["id"], action="unhold", actor=actor,
                    detail={"stage": "correct", "queue": queue, "free_slots": 0,
                            "offered": [c["worker"] for c in offered], "corrections": offered,
                            **({"left_out": left_out} if left_out else {})})
    return {"task": task["id"], "status": "open", "stage": "correct", "queue": queue, "free_slots": 0}


def pending_corrections(store, task) -> list[tuple[str, str | None]]:
    """Each voter of a correction round who has not corrected in it yet, with the queue where their
    vote was cast (where their correction waits), in vote order: whom an ``unhold`` offers one again."""
    done = {a["worker"] for a in store.task_slots(task["id"], ("submitted",)) if a["round"] == task["round"]}
    return [(v["worker"], v["queue"]) for v in store.votes(task["id"]) if v["worker"] not in done]


def corrections_owed(store, task) -> bool:
    """Whether a held correction round still waits for corrections: a lead, a timer or ``apply`` held it
    (``needed`` kept), or its last correction was dropped before any came in (``needed`` 0, nothing
    submitted: :meth:`Engine._drop_corrections`) — not once ``on_quorum`` decided on its corrections."""
    return task["needed"] > 0 or not any(a["stage"] == "correct" and a["round"] == task["round"]
                                         for a in store.task_slots(task["id"], ("submitted",)))


def _return_comment(store, task) -> str | None:
    """The reviewer's comment of the task's current round: the note its ``return`` gave each correction
    (whatever became of them since: released by a hold, dropped, submitted), never an older round's."""
    notes = [a["note"] for a in store.assignments(task["id"])
             if a["stage"] == "correct" and a["round"] == task["round"]]
    return notes[0] if notes else None


def priority_problem(value: float) -> str | None:
    """Why ``value`` cannot be a priority (the rule language's bounds), or ``None``."""
    from rules.workflow import PRIORITY_LIMIT

    if not -PRIORITY_LIMIT <= value <= PRIORITY_LIMIT:  # also false for NaN
        return f"the priority must be a number from -1e15 to 1e15, not {value:g}"
    return None


def priority_task(engine, task, value: float, now: float, actor: str) -> dict[str, Any]:
    """Set a task's priority (higher is claimed first)."""
    if task["status"] not in ("open", "held"):
        raise LabelyardError(f"task {task['external_id']} is {task['status']}: its priority no longer matters")
    if task["priority"] == float(value):  # a second run (or one after a killed --where) writes no "7 → 7"
        from .render import number_text

        raise Unchanged(f"its priority is {number_text(float(value))} already")
    engine.store.update_task(task["id"], priority=float(value), updated_at=now)
    engine.store.add_event("priority", now, task_id=task["id"], action="priority", actor=actor,
                           detail={"from": task["priority"], "to": float(value)})
    return {"task": task["id"], "priority": float(value), "was": task["priority"]}


# -- who may act, and on which tasks ---------------------------------------------------------

def require_lead(engine, actor: str) -> None:
    """Raise unless ``actor`` is a registered worker with the ``lead`` role."""
    from .store import loads

    row = engine.store.worker(actor)
    require_lead_role(actor, None if row is None else loads(row["roles"]))


def require_lead_role(actor: str, roles: list[str] | None) -> None:
    """Raise unless ``roles`` (``actor``'s, ``None`` for no such worker) hold the ``lead`` role."""
    if roles is None or LEAD_ROLE not in roles:
        raise LabelyardError(f"{actor} needs the lead role for this ({lead_role_command(actor, roles)} by a lead)")


def lead_role_command(name: str, roles: list[str] | None) -> str:
    """The command that makes worker ``name`` (with ``roles``, ``None`` if not a worker) a lead, keeping
    the roles they have: ``workers add``/``set`` replace the roles, so a hint of ``--role lead`` alone
    made an annotator a lead who could no longer claim."""
    import shlex

    if roles is None:
        return f"`labelyard workers add {shlex.quote(name)} --role lead`"
    kept = [r for r in roles if r != LEAD_ROLE] + [LEAD_ROLE]
    return f"`labelyard workers set {shlex.quote(name)} {' '.join(f'--role {shlex.quote(r)}' for r in kept)}`"


def require_lead_for_workers(engine, actor: str) -> None:
    """Adding or changing workers (roles, skills, capacity, pause) is a lead's action once the
    project has a lead; before that anyone may, which is how the first lead is registered."""
    leads = engine.store.leads()
    if leads and actor not in leads:
        shown = ", ".join(leads[:5]) + (", …" if len(leads) > 5 else "")
        raise LabelyardError(f"{actor} needs the lead role to add or change workers; "
                             f"run it --as a lead ({shown})")


def compile_where(text: str):
    """Compile a ``--where`` filter (a rule expression over ``task``, ``prediction`` and ``now``)."""
    from rules.expr import ExpressionError, compile_expression

    try:
        return compile_expression(text, roots=WHERE_ROOTS)
    except ExpressionError as exc:
        hint = f"; {exc.suggestion}" if exc.suggestion and exc.suggestion not in exc.message else ""
        raise LabelyardError(f"--where: {exc.message}{hint}\n  {text}\n  {' ' * exc.offset}^") from None


SearchProgress = Callable[[int, int | None, int], None]
"""``progress(read, total, matched)`` after each page a ``--where`` search reads: tasks read so far,
how many it will read (``None``: not counted), and how many matched."""


def where_ranges(predicate, statuses: tuple[str, ...]) -> tuple[tuple[str, ...], list[str | None] | None]:
    """The statuses and queues a ``--where`` walk reads: of ``statuses``, those the predicate allows,
    and the queues it requires (sorted as the index is, no queue last; ``None``: every queue).
    ``task.queue == "triage"`` and ``task.queue in ["a", "b"]`` require queues; a queue is text, so
    a required value of another kind (``task.queue == 1``) matches no task."""
    required = predicate.requires
    if "task.status" in required:
        statuses = tuple(s for s in statuses if s in required["task.status"])
    if "task.queue" not in required:
        return statuses, None
    values = required["task.queue"]
    queues: list[str | None] = sorted(v for v in values if isinstance(v, str))
    if None in values:
        queues.append(None)
    return statuses, queues


class BulkOutput(Protocol):
    """Where a bulk action's items go as they come (the CLI prints them page by page)."""

    def matched(self, report: BulkReport) -> None:
        """Every match is found (``report.matched``); nothing is acted on yet."""

    def item(self, kind: str, item: dict[str, Any]) -> None:
        """One task ``done`` or ``skipped``, once its transaction ended (committed, or rolled back by a dry run)."""


@dataclass
class BulkReport:
    """What a bulk action did: how many tasks matched, were done and skipped, and those tasks, kept in
    ``done`` and ``skipped`` or, with ``out``, handed to it as each page ends and not kept (a
    ``--where`` matching a million tasks holds no list of them)."""

    action: str
    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    matched: int = 0
    dry_run: bool = False
    out: BulkOutput | None = None
    done_count: int = 0
    skipped_count: int = 0

    def found(self, matched: int) -> None:
        self.matched = matched
        if self.out is not None:
            self.out.matched(self)

    def add(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Record the ``(kind, item)`` of a transaction that ended; ``kind`` is ``done`` or ``skipped``."""
        for kind, item in items:
            if kind == "done":
                self.done_count += 1
            else:
                self.skipped_count += 1
            if self.out is not None:
                self.out.item(kind, item)
            else:
                (self.done if kind == "done" else self.skipped).append(item)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "matched": self.matched, "done": self.done, "skipped": self.skipped,
                "dry_run": self.dry_run}


def _refuse_gold(task) -> None:
    """Lead actions leave gold questions alone (a stale gold slot is the timers' to release)."""
    if task["is_gold"]:
        raise LabelyardError(f"task {task['external_id']} is a gold question; lead actions do not apply to it")


class Lead:
    """A lead acting on tasks through an :class:`~router.engine.Engine`."""

    def __init__(self, engine, actor: str):
        require_lead(engine, actor)
        self.engine = engine
        self.store = engine.store
        self.actor = actor

    def clear_rejects(self, source: str | None = None) -> int:
        """Forget quarantined input rows (of one ``source``, or all) that the lead has
        dealt with; one transaction with its ``rejects_cleared`` event. Returns how many."""
        now = clock.now()
        with self.store.transaction():
            cleared = self.store.delete_rejects(source)
            if cleared:
                self.store.add_event("rejects_cleared", now, action="clear", actor=self.actor,
                                     detail={"source": source, "rows": cleared})
        return cleared

    def _task(self, ref: str):
        task = self.store.task(ref)
        if task is None:
            raise UnknownTask(f"no task `{ref}` (by id or external id)")
        _refuse_gold(task)
        return task

    def run(self, action: str, refs: Sequence[str], where: str | None = None, *,
            dry_run: bool = False, out: BulkOutput | None = None, progress: SearchProgress | None = None,
            **options: Any) -> BulkReport:
        """Apply ``action`` to the tasks ``refs`` (all or nothing, one transaction) or to every task
        matching ``where`` (page by page, one transaction per page; tasks it cannot apply to are skipped).

        A ``dry_run`` runs the very same code and rolls each transaction back, so it
        reports what the real run would do, skip or refuse, and changes nothing.
        With ``out``, each task done or skipped goes to it when its transaction ends
        instead of into the report's lists; with ``progress``, a ``--where`` search says how
        far it is after each page read.
        """
        op = self._operation(action, options)
        report = BulkReport(action, dry_run=dry_run, out=out)
        if refs and where:
            raise LabelyardError("give task ids or --where, not both")
        if not refs and not where:
            raise LabelyardError("give one or more task ids, or --where FILTER")
        if refs:
            self._run_on_refs(op, refs, report)
        else:
            self._run_on_matches(op, action, where, report, progress, holder=options.get("from_worker"))
        return report

    def _run_on_refs(self, op: Callable[[Any, float], dict[str, Any]], refs: Sequence[str],
                     report: BulkReport) -> None:
        """Every task of ``refs`` (each once, however often it is named) in one transaction."""
        now = clock.now()
        done = []
        with self.engine.transaction(rollback=report.dry_run):
            tasks = list({t["id"]: t for t in map(self._task, refs)}.values())
            for task in tasks:
                task = self.store.task(task["id"])  # an earlier action in this list may have changed it
                try:
                    done.append(("done", {"external_id": task["external_id"], **op(task, now)}))
                except Unchanged as exc:  # nothing to do for it; the others are done
                    done.append(("skipped", {"task": task["id"], "external_id": task["external_id"],
                                             "reason": str(exc)}))
        report.found(len(tasks))
        report.add(done)

    def _run_on_matches(self, op: Callable[[Any, float], dict[str, Any]], action: str, where: str,
                        report: BulkReport, progress: SearchProgress | None = None, holder: str | None = None) -> None:
        """Every task matching ``where`` (``holder``: among those they hold a slot of), found first, then
        acted on a page per transaction.

        The matches are kept as ids (with the status and round they were found in) in a temporary
        table, not in memory, and each page's tasks go to the report when its transaction ends."""
        predicate = compile_where(where)
        found_at = clock.now()
        # Find every match first, then act: an action may move a task further along the walk.
        # A task that changed status during the walk may be read twice: it counts once.
        self.store.clear_matches()
        try:
            for page in self._matching_pages(predicate, action, found_at, progress, holder):
                self.store.add_matches([(t["id"], t["status"], t["round"]) for t in page])
            report.found(self.store.match_count())
            seq = 0
            while matches := self.store.matches_after(seq, PAGE):
                seq = matches[-1]["seq"]
                report.add(self._act_on_page(op, predicate, matches, found_at, report.dry_run))
        finally:
            self.store.drop_matches()

    def _act_on_page(self, op: Callable[[Any, float], dict[str, Any]], predicate, matches: Sequence[Any],
                     found_at: float, dry_run: bool) -> list[tuple[str, dict[str, Any]]]:
        """One transaction over a page of matches: ``("done" | "skipped", item)`` for each."""
        now = clock.now()
        items: list[tuple[str, dict[str, Any]]] = []
        with self.engine.transaction(rollback=dry_run):
            for match in matches:
                task = self.store.task(match["task_id"])
                # read again under the lock: another lead or a timer may have changed what matched
                # (a priority keeps the round); the clock stays the walk's, so only the task counts
                if task["status"] != match["status"] or task["round"] != match["round"]:
                    reason = "changed meanwhile"
                else:
                    try:
                        still = self._matches(predicate, task, found_at)
                    except LabelyardError:  # a fact it read changed type meanwhile
                        still = False
                    reason = None if still else "changed meanwhile: no longer matches --where"
                if reason is not None:
                    items.append(("skipped", {"task": task["id"], "external_id": task["external_id"],
                                              "reason": reason}))
                    continue
                try:
                    items.append(("done", {"external_id": task["external_id"], **op(task, now)}))
                except LabelyardError as exc:
                    items.append(("skipped", {"task": task["id"], "external_id": task["external_id"],
                                              "reason": str(exc)}))
        return items

    def _operation(self, action: str, options: dict[str, Any]) -> Callable[[Any, float], dict[str, Any]]:
        engine, actor = self.engine, self.actor
        if action == "reassign":
            to = options["to"]
            if self.store.worker(to) is None:
                raise UnknownWorker(f"no worker `{to}`; add one with `labelyard workers add {to} --role annotator`")
            return lambda t, now: reassign_task(engine, t, to, now, actor, force=options.get("force", False),
                                                from_worker=options.get("from_worker"))
        if action == "escalate":
            queue = options["queue"]
            if queue not in engine.workflow.queues:
                raise LabelyardError(f"no queue `{queue}`; queues: {', '.join(engine.workflow.queues)}")
            return lambda t, now: escalate_task(engine, t, queue, now, actor, options.get("reason"))
        if action == "hold":
            return lambda t, now: hold_task(engine, t, now, actor, options.get("reason"))
        if action == "unhold":
            return lambda t, now: unhold_task(engine, t, now, actor)
        if action == "release":
            engine.load_workflow()  # before the lock: a correction released may be dropped (its queue's rules)
            return lambda t, now: release_task(engine, t, now, actor)
        if action == "priority":
            value = options["value"]
            problem = priority_problem(value)
            if problem:
                raise LabelyardError(problem)
            return lambda t, now: priority_task(engine, t, value, now, actor)
        raise ValueError(f"unknown lead action {action!r}")

    def release_assignment(self, assignment_id: int, *, dry_run: bool = False) -> dict[str, Any]:
        """Release one active assignment by its id (not a gold question's: lead actions leave those
        alone); a ``dry_run`` does it and rolls it back."""
        now = clock.now()
        self.engine.load_workflow()  # before the lock: a correction released may be dropped (its queue's rules)
        with self.engine.transaction(rollback=dry_run):
            a = self.store.assignment(assignment_id)
            if a is None:
                raise AssignmentError(f"no assignment {assignment_id}")
            _refuse_gold(self.store.task(a["task_id"]))
            return release_assignment(self.engine, a, now, self.actor)

    def _matching_pages(self, predicate, action: str, now: float, progress: SearchProgress | None = None,
                        holder: str | None = None) -> Iterator[list[Any]]:
        """Pages of candidate tasks of ``action`` for which ``predicate`` holds at ``now``: the tasks with the
        statuses it applies to (walked by index); for ``release``, the open tasks holding an active slot
        (walked by the index of active slots), not every open task, most of which it cannot release;
        with a ``holder`` (``reassign --from W``), the open tasks W holds a slot of, by the same index.
        Only the statuses and queues the predicate requires are read (:mod:`rules.requires`), for
        ``release`` too: the slots of tasks in other queues are passed over in SQL."""
        statuses, queues = where_ranges(predicate, STATUSES[action])
        if holder is not None:  # the others would each be skipped: "W holds no active slot"
            candidates = self._held_pages(holder) if statuses else iter(())
            total = None
        elif action == "release":
            candidates = self._slot_pages(queues) if statuses else iter(())
            total = None
        else:
            candidates = (rows for status in statuses for rows in self._pages(status, queues))
            total = sum(self.store.count_tasks_in(s, queues) for s in statuses) if progress else None
        read = matched = 0
        for rows in candidates:
            page = [row for row in rows if self._matches(predicate, row, now)]
            read, matched = read + len(rows), matched + len(page)
            if progress is not None:
                progress(read, total, matched)
            if page:
                yield page

    def _held_pages(self, worker: str) -> Iterator[list[Any]]:
        after = 0
        while rows := self.store.tasks_held_by_after(worker, after, PAGE):
            yield rows
            after = rows[-1]["slot"]

    def _slot_pages(self, queues: Sequence[str | None] | None = None) -> Iterator[list[Any]]:
        """Pages of the open tasks holding an active slot, of ``queues`` alone when given (as :meth:`_pages`)."""
        after = 0
        while rows := self.store.tasks_holding_slots_after(after, PAGE, queues):
            yield rows
            after = rows[-1]["slot"]

    @staticmethod
    def _matches(predicate, row, now: float) -> bool:
        """Whether a ``--where`` predicate holds for a task row at ``now``."""
        from rules.expr import EvaluationError
        from rules.workflow import holds

        # the row's JSON (task.data, task.tags, prediction.*) decoded only if the filter reads it
        ctx = {"task": lazy_task_facts(row, now), "prediction": lazy_prediction(row), "now": now}
        try:
            ok = predicate.evaluate(ctx)
        except EvaluationError as exc:
            raise LabelyardError(f"--where failed on task {row['external_id']}: {exc}") from None
        return holds(ok)  # as a rule's `when` holds: `{}` and NaN do not

    def _pages(self, status: str, queues: Sequence[str | None] | None = None) -> Iterator[list[Any]]:
        """Pages of the non-gold tasks of ``status``: of every queue (``queues`` ``None``), queue by
        queue then those without one, or of ``queues`` alone (``None`` among them: without one)."""
        if queues is None:
            yield from self._every_queue_pages(status)
        else:
            for queue in queues:
                if queue is not None:
                    yield from self._queue_pages(status, queue)
        if queues is None or None in queues:
            after = 0
            while rows := self.store.queueless_tasks(status, after, PAGE):
                yield rows
                after = rows[-1]["id"]

    def _every_queue_pages(self, status: str) -> Iterator[list[Any]]:
        queue, after = "", 0
        while rows := self.store.tasks_after(status, queue, after, PAGE):
            yield rows
            queue, after = rows[-1]["queue"], rows[-1]["id"]

    def _queue_pages(self, status: str, queue: str) -> Iterator[list[Any]]:
        after = 0
        while rows := self.store.queue_tasks_after(status, queue, after, PAGE):
            yield rows
            after = rows[-1]["id"]

