"""Tasks that wait for ever, named one by one for ``status`` at a cost that does not grow with
the project.

Two kinds wait without a rule ever moving them:

- an open task whose remaining slots no worker may take (its own annotators, those who gave
  its slot up, paused workers, an ``overlap`` larger than the queue's crew): a per-queue count
  cannot see it (:func:`router.eligibility.queue_warning` covers a queue nobody may take at
  all). Each queue's tasks are looked at where such a task shows: the ones a claim hands out
  first, since nobody takes it, and the ones longest in their stage, since it only grows older
  (:meth:`router.store.Store.stall_candidates`, ``WINDOW`` of each, read through indexes);
  :func:`router.eligibility.stalled` says why, as ``explain`` does;
- a held task: ``on_timer`` looks at open tasks only, so a held task waits for a lead. The
  kept counters count them (``tasks.held``); the first few are named with their reason and what
  moves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import clock
from .eligibility import Crew, stalled
from .lead import corrections_owed, pending_corrections
from .store import loads

WINDOW = 50  # of each queue: the tasks a claim hands out first, and as many of the longest waiting
HELD_NAMED = 5


def open_stalls(store, specs: Mapping[str, Any], workflow: str, crews: Mapping[str, Crew],
                open_by_queue: Mapping[str, int]) -> dict[str, Any]:
    """``{"tasks": [...], "checked": {queue: n}}``: the open tasks found stalled, and how many
    were looked at in each queue (all its open tasks when that is its ``open`` count)."""
    found: list[dict[str, Any]] = []
    checked: dict[str, int] = {}
    for queue, spec in specs.items():
        crew = crews.get(queue)
        if not open_by_queue.get(queue) or crew is None or not crew.working:
            continue  # nothing waits, or nobody may take any of it: the queue's warning says so
        candidates = store.stall_candidates(queue, WINDOW)
        checked[queue] = len(candidates)
        for task in candidates:
            reason = stalled(store, specs, workflow, task, crew_of=crews)
            if reason is not None:
                found.append({**_named(task), "since": clock.iso(task["stage_at"]), "reason": reason})
    return {"tasks": found, "checked": checked}


def held_named(store, queues: Mapping[str, Any], held: int) -> dict[str, Any]:
    """``{"tasks": [...], "more": n}``: the first held tasks, each with why it was held and the
    lead action that moves it (``unhold`` reopens it in its stage; one with no work left there, or
    whose queue the workflow dropped, is for ``escalate``)."""
    if not held:
        return {"tasks": [], "more": 0}
    tasks = [{**_named(task), "since": clock.iso(task["updated_at"]), "reason": task["reason"],
              "moved_by": _moved_by(store, queues, task)} for task in store.first_held(HELD_NAMED)]
    return {"tasks": tasks, "more": max(0, held - len(tasks))}


def _named(task: Any) -> dict[str, Any]:
    return {"id": task["id"], "external_id": task["external_id"], "queue": task["queue"], "stage": task["stage"]}


def _moved_by(store, queues: Mapping[str, Any], task: Any) -> str:
    """``unhold`` or ``escalate``: which lead action takes this held task on, as
    :func:`router.lead.unhold_task` would refuse it."""
    if task["stage"] == "correct" and corrections_owed(store, task):
        return "unhold" if _correction_returnable(store, queues, task) else "escalate"
    if task["stage"] is None or task["needed"] < 1 or (task["queue"] is not None and task["queue"] not in queues):
        return "escalate"
    return "unhold"


def _correction_returnable(store, queues: Mapping[str, Any], task: Any) -> bool:
    """Whether ``unhold`` reopens a held correction round (:func:`router.lead._unhold_corrections`'s
    checks, on the queues of the active version): none of its corrections would wait in a queue the
    workflow no longer has, and at least one voter may still work the queue of their vote."""
    pending = pending_corrections(store, task)
    if any(q is not None and q not in queues for _, q in pending):
        return False
    for worker, queue in pending:
        row = store.worker(worker)
        if row is not None and queue in queues and queues[queue].admits(loads(row["roles"]), loads(row["skills"])):
            return True
    return False
